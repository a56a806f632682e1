"""The shared vocabulary: stored digests keep their values, the DB constraints keep their words.

The digest pins below were computed by running the code at main d2ed5e6 (before the seven
hand-written `sha256(...)[:16]` moved onto `vocab.digest`) on exactly these inputs. Stored
fingerprints (evaluation resume, question hashes, judge identity, diversity cache) must not
change when the hashing moves, or every stored evaluation would stop resuming.
"""

from __future__ import annotations

import pytest

from moa_core import vocab
from moa_core.analysis.diversity import fingerprint as diversity_fingerprint
from moa_core.config import AgentSpec, DeploymentSpec, LayerSpec, MoAConfig
from moa_core.evaluation.contenders import Contender
from moa_core.evaluation.judge_call import judge_fingerprint
from moa_core.evaluation.plan import default_eval_name, question_hash
from moa_core.evaluation.questions import Question, QuestionSet
from moa_core.providers.router import _fingerprint as router_fingerprint
from moa_core.providers.router import model_list
from moa_core.store import models

# Non-ASCII on purpose: one site hashes with ensure_ascii=False, the others escape.
AGENT = AgentSpec(model="ollama/qwen2.5:0.5b", label="Qwen ✓", temperature=0.3)
QSET = QuestionSet(
    name="x",
    format="plain",
    questions=[
        Question(id="q1", turns=["Wie viel ist 2 + 2 — ungefähr?"], reference="4 €"),
        Question(id="q2", category="facts", turns=["Capital of France?", "And Italy?"]),
    ],
)
GENS = [
    {"role": "proposer", "layer": 0, "slot": 1, "status": "done", "text": "héllo"},
    {"role": "proposer", "layer": 0, "slot": 0, "status": "error", "text": None},
    {"role": "aggregator", "layer": 1, "slot": 0, "status": "done", "text": "fin"},
    {"role": "baseline", "layer": -1, "slot": 0, "status": "done", "text": "x"},
]


def test_contender_fingerprint_pinned():
    assert Contender(name="Qwen ✓", agent=AGENT).fingerprint() == "single-ff9d850e469129c1"


def test_question_set_fingerprint_pinned():
    assert QSET.fingerprint() == "635bc0d053984f44"


def test_question_hash_pinned():
    assert question_hash(QSET.questions[0]) == "610735c9600d70c3"
    assert question_hash(QSET.questions[1]) == "67317210305ff208"


def test_long_eval_name_digest_pinned():
    contenders = [Contender(name="n" * 90, agent=AGENT), Contender(name="other ✓", agent=AGENT)]
    assert default_eval_name("mt-bench", contenders, AGENT).endswith("vs other … 124b1c33")


def test_judge_fingerprint_pinned():
    judge = AgentSpec(model="openai/gpt-4o-mini", label="judge", temperature=0.0, max_tokens=512)
    assert judge_fingerprint(judge) == "485fd38016c1996b"


def test_diversity_fingerprint_pinned():
    assert diversity_fingerprint(GENS) == "a9a637eb4654fbe7"


def test_router_fingerprint_pinned(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("H1_PIN_KEY", "sk-pin")
    cfg = MoAConfig(
        name="r",
        layers=[LayerSpec(proposers=[AgentSpec(model="pool", label="p")])],
        aggregator=AgentSpec(model="pool", label="a"),
        deployments={
            "pool": [
                DeploymentSpec(model="openai/m1", api_base="http://h1:8000/v1", api_key_env="H1_PIN_KEY", name="one ✓"),
                DeploymentSpec(model="openai/m2", weight=3),
            ]
        },
    )
    assert router_fingerprint(cfg, model_list(cfg)) == (
        "65a4bde5f9685388a2eac767899f250ba8665781576a620ed585d72a7322e281"
    )


def test_digest_hashes_strings_as_is_and_data_canonically():
    assert vocab.digest({"b": 1, "a": [1, 2]}) == vocab.digest({"a": [1, 2], "b": 1})
    assert vocab.digest('{"a":[1,2],"b":1}') == vocab.digest({"a": [1, 2], "b": 1})
    assert len(vocab.digest("x", 8)) == 8


def test_store_constraints_use_the_vocabulary():
    # The hand-written migrations spell these tuples out: order and words must not drift.
    assert models.RUN_STATUSES == ("running", "done", "failed", "cancelled", "interrupted")
    assert models.GENERATION_STATUSES == ("streaming", "done", "error", "cancelled", "interrupted")
    assert models.VOTE_OUTCOMES == ("left", "right", "tie", "both_bad")
    assert set(models.ROLES) == {r.value for r in vocab.Role}
    assert all(type(v) is str for v in models.RUN_STATUSES + models.ROLES)


def test_call_id_format_is_what_stored_runs_hold():
    # Stored generations (and their unique constraint) use this spelling; changing it orphans them.
    assert vocab.call_id(vocab.Role.PROPOSER, 0, 1) == "proposer-0-1"
    assert vocab.call_id(vocab.Role.BASELINE, -1, 0) == "baseline--1-0"
