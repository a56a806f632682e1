"""A stored run's draft diversity, computed once and kept in run.meta["diversity"].

The metrics themselves are `analysis.diversity.run_diversity`; this is where they meet the
store: read back when current for the run's generations, else computed and (once the run
has ended) written, so the History view, the challenge and the Analysis page all read the
same numbers. The Streamlit view (`ui.diversity_view`) only shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from moa_core.analysis.diversity import run_diversity, stored_diversity
from moa_core.store.db import StoreError
from moa_core.store.recorder import annotate_run
from moa_core.vocab import RunStatus

log = logging.getLogger(__name__)

# (run id, generations) -> run_diversity's dict; the UI passes a cached one.
Compute = Callable[[str, Sequence[dict[str, Any]]], dict[str, Any]]


def _compute(run_id: str, gens: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return run_diversity(gens)


def ensure_run_diversity(engine: Engine | None, data: dict[str, Any], compute: Compute = _compute) -> dict[str, Any]:
    """The run's diversity (`store.get_run`'s dict): stored if current, else computed, and
    stored when `engine` is given and the run has ended (a running run's drafts still change)."""
    run, gens = data["run"], data["generations"]
    found = stored_diversity(run, gens)
    if found is not None:
        return found
    computed = compute(run["id"], gens)
    if engine is not None and run.get("status") != RunStatus.RUNNING:
        try:
            annotate_run(engine, run["id"], meta={"diversity": computed})
        except (StoreError, ValueError):
            log.exception("could not store the diversity of run %s", run["id"])
    return computed


__all__ = ["Compute", "ensure_run_diversity"]
