"""Every bundled preset loads, validates, round-trips, and has the pipeline its name promises."""

from __future__ import annotations

import pytest
import yaml

from moa_core.config import PRESETS_DIR, config_from_dict, list_presets, load_preset, parse_config_text
from moa_core.providers import catalog
from moa_core.vocab import StageKind

PRESETS = list_presets()
LOCAL = [n for n in PRESETS if n.endswith("-local") or n == "local-moa" or n == "same-model-varied"]


def test_the_pipeline_presets_are_bundled():
    assert {"council-local", "ranker-local", "quorum-local"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_validates_and_round_trips(name):
    config = load_preset(name)
    assert config.name == name
    # The file is exactly the config (no field the model would silently drop or add).
    raw = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text())
    assert config_from_dict(raw).model_dump(mode="json") == config.model_dump(mode="json")
    again = parse_config_text(config.to_yaml())
    assert again.stable_hash() == config.stable_hash()
    assert again.pipeline() == config.pipeline()
    last = config.pipeline()[-1]
    assert last.kind in (StageKind.SYNTHESIZE, StageKind.SELECT) and len(last.agents) == 1


@pytest.mark.parametrize("name", LOCAL)
def test_local_presets_keep_max_tokens_small(name):
    # They run on CPU: a long answer per call makes a run take minutes.
    assert all(a.max_tokens <= 200 for a in load_preset(name).all_agents()), name
    assert all(a.model.startswith("local/") for a in load_preset(name).all_agents()), name


def test_council_local_is_llm_councils_shape():
    stages = load_preset("council-local").pipeline()
    assert [s.kind for s in stages] == [StageKind.PROPOSE, StageKind.REVIEW, StageKind.SYNTHESIZE]
    proposers, reviewers = ([a.model for a in s.agents] for s in stages[:2])
    assert proposers == reviewers and len(set(proposers)) == 3
    assert stages[2].with_reviews and not stages[1].include_own


def test_ranker_local_selects():
    stages = load_preset("ranker-local").pipeline()
    assert [s.kind for s in stages] == [StageKind.PROPOSE, StageKind.SELECT]


def test_quorum_local_waits_for_two_of_three():
    first = load_preset("quorum-local").pipeline()[0]
    assert first.kind == StageKind.PROPOSE and len(first.agents) == 3
    assert first.quorum is not None and first.quorum.k == 2


@pytest.mark.parametrize("name", LOCAL)
def test_local_presets_run_here(name):
    if not catalog.local.available_local_models():
        pytest.skip("local models not installed")
    assert catalog.config_problems(load_preset(name)) == []
