"""What a demo audience notices (issue 16 §5), with Streamlit's AppTest on a real SQLite file:
a stopped answer's tokens, a MoA column's whole-pipeline metrics, what a challenge run was made
with, contenders and presets that cannot run here, and the chosen vote button."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from moa_core import arena
from moa_core.challenge import challenge_config
from moa_core.config import AgentSpec, load_preset
from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, TokenDelta, Totals, Usage
from moa_core.providers import catalog
from moa_core.store import open_db
from moa_core.store.recorder import Recorder, annotate_run
from moa_core.ui import config_editor
from tests.conftest import md_text

ROOT = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
MODEL = "local/smollm2-135m"


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    return url


@pytest.fixture
def no_keys(monkeypatch):
    for names, _ in catalog.PROVIDERS.values():
        for n in names:
            monkeypatch.delenv(n, raising=False)
    monkeypatch.setattr(catalog, "read_secret_names", lambda: {})
    config_editor.unavailable_reason.clear()
    yield
    config_editor.unavailable_reason.clear()


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(f"{ROOT}/pages/{name}.py", default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def captions(at: AppTest) -> list[str]:
    return [md_text(c.value) for c in at.caption]


def _start(rec: Recorder, run_id: str, config: dict, kind: str = "playground", preset: str = "local-moa") -> float:
    t = time.time()
    rec.handle(RunStarted(run_id, "Why is the sky blue?", [], config, "h", preset, kind, t))
    return t


def seed_moa_run(url: str, *, stop_final: bool = False) -> str:
    """Two proposers (3 s and 5 s, in parallel), then the aggregator (2 s), then a baseline.
    With `stop_final` the aggregator is stopped mid-stream: no usage report, partial text."""
    rec = Recorder(open_db(url))
    run_id = uuid.uuid4().hex
    t = _start(rec, run_id, load_preset("local-moa").model_dump(mode="json"))
    for slot, seconds in ((0, 3.0), (1, 5.0)):
        ref = CallRef(run_id, "proposer", 0, slot, MODEL, f"P{slot}")
        rec.handle(DraftStarted(ref, "Be brief.", {"temperature": 0.7, "max_tokens": 64}, t))
        rec.handle(DraftDone(ref, f"draft {slot}", "stop", Usage(10, 20), 0.001, t, t + seconds, 0.1))
    agg = CallRef(run_id, "aggregator", 1, 0, MODEL, "Agg")
    rec.handle(DraftStarted(agg, "Synthesize.", {"temperature": 0.3, "max_tokens": 64}, t + 5))
    if stop_final:
        rec.handle(TokenDelta(agg, "Rayleigh scattering makes short wavelengths ", t + 5.5))
        rec.handle(TokenDelta(agg, "scatter more, so the sky looks blue", t + 6))
        rec.close_unfinished(run_id)
        return run_id
    rec.handle(DraftDone(agg, "final answer", "stop", Usage(40, 30), 0.002, t + 5, t + 7, 0.2))
    base = CallRef(run_id, "baseline", -1, 0, MODEL, "Solo")
    rec.handle(DraftStarted(base, "", {"temperature": 0.7, "max_tokens": 64}, t))
    rec.handle(DraftDone(base, "alone", "stop", Usage(8, 9), 0.0, t, t + 1, 0.1))
    rec.handle(RunDone(run_id, "done", "final answer", Totals(98, 79, 0.004, 7.0, 4, 0), t + 7))
    return run_id


# -- tokens and metrics ------------------------------------------------------------------------


def test_a_stopped_answer_shows_the_tokens_it_produced(db_url):
    run_id = seed_moa_run(db_url, stop_final=True)
    at = page("6_History", run=run_id).run()
    assert not at.exception
    final = next(c for c in captions(at) if c.startswith("Final call"))
    assert "0→0 tok" not in final
    produced = int(re.search(r"→≈(\d+) tok", final).group(1))
    assert produced >= 8, final  # 13 words of text


def test_a_moa_column_sums_the_whole_pipeline_with_the_final_call_below(db_url):
    run_id = seed_moa_run(db_url)
    at = page("6_History", run=run_id).run()
    assert not at.exception
    caps = captions(at)
    i = next(i for i, c in enumerate(caps) if c.startswith("Whole pipeline"))
    # proposers in parallel (5 s) then the aggregator (2 s); the 1 s baseline is not part of it
    assert caps[i] == "Whole pipeline · 3 calls · 60→70 tok · 7.00s wall · $0.00400"
    assert caps[i + 1].startswith("Final call · ") and "40→30 tok" in caps[i + 1] and "2.00s" in caps[i + 1]
    assert not any(c.startswith("Whole pipeline") for c in caps[i + 2 :]), "the baseline is one call"


def test_arena_moa_side_shows_the_pipeline_and_the_chosen_vote_stays_chosen(db_url):
    engine = open_db(db_url)
    moa = arena.Contender("preset:local-moa", config=load_preset("local-moa"))
    single = arena.Contender(f"model:{MODEL}", agent=AgentSpec(model=MODEL))
    battle = arena.Battle("Why is the sky blue?", {"A": moa, "B": single}, status="voted", choice="B", vote_id=1)
    # the stored runs behind each side (the MoA one with its proposers)
    rec = Recorder(engine)
    t = _start(rec, battle.run_ids["A"], load_preset("local-moa").model_dump(mode="json"), kind="arena")
    p = CallRef(battle.run_ids["A"], "proposer", 0, 0, MODEL, "P")
    rec.handle(DraftStarted(p, "", {}, t))
    rec.handle(DraftDone(p, "draft", "stop", Usage(10, 20), 0.0, t, t + 5.2, 0.1))
    a = CallRef(battle.run_ids["A"], "aggregator", 1, 0, MODEL, "Agg")
    rec.handle(DraftStarted(a, "", {}, t + 5.2))
    rec.handle(DraftDone(a, "moa answer", "stop", Usage(30, 40), 0.0, t + 5.2, t + 7.2, 0.1))
    t = _start(rec, battle.run_ids["B"], {}, kind="arena", preset="")
    b = CallRef(battle.run_ids["B"], "baseline", -1, 0, MODEL, "")
    rec.handle(DraftStarted(b, "", {}, t))
    rec.handle(DraftDone(b, "single answer", "stop", Usage(5, 6), 0.0, t, t + 1.5, 0.1))

    at = page("2_Arena")
    at.session_state["arena_battle"] = battle
    at.run()
    assert not at.exception
    caps = captions(at)
    assert "Whole pipeline · 2 calls · 40→60 tok · 7.20s wall · free" in caps
    assert any(c.startswith("Final call · ") and "2.00s" in c for c in caps)
    assert sum(c.startswith("Whole pipeline") for c in caps) == 1, "the single model is one call"
    chosen = at.button(key="arena_vote_B")
    assert chosen.proto.type == "primary" and not chosen.disabled
    others = [at.button(key=f"arena_vote_{c}") for c in ("A", "tie", "both_bad")]
    assert all(b.disabled and b.proto.type == "secondary" for b in others)
    # clicking the chosen button again changes nothing
    chosen.click().run()
    assert not at.exception and battle.status == "voted" and battle.choice == "B" and battle.vote_id == 1


# -- what a run was made with ---------------------------------------------------------------------


def test_history_shows_what_a_challenge_run_was_made_with(db_url):
    engine = open_db(db_url)
    rec = Recorder(engine)
    run_id = uuid.uuid4().hex
    agents = [
        AgentSpec(model=MODEL, temperature=0.7, system_prompt="You are terse."),
        AgentSpec(model=MODEL, temperature=1.3, system_prompt="You are a physicist."),
    ]
    t = _start(rec, run_id, challenge_config(agents), kind="challenge", preset="daily challenge")
    for i, a in enumerate(agents):
        ref = CallRef(run_id, "proposer", 0, i, MODEL, f"Run {i + 1}")
        rec.handle(DraftStarted(ref, a.system_prompt, a.public_params(), t))
        rec.handle(DraftDone(ref, f"draft {i}", "stop", Usage(5, 5), 0.0, t, t + 1, 0.1))
    template = "My own prompt: weigh {drafts} and answer {question} in one line."
    annotate_run(
        engine,
        run_id,
        meta={"challenge": {"attempts": [{"slot": 0, "template": template, "model": MODEL, "temperature": 0.4}]}},
    )
    ref = CallRef(run_id, "aggregator", 1, 0, MODEL, "Synthesis")
    rec.handle(DraftStarted(ref, "rendered", {"temperature": 0.4, "max_tokens": 99}, t + 2))
    rec.handle(DraftDone(ref, "synthesis", "stop", Usage(5, 5), 0.0, t + 2, t + 3, 0.1))

    at = page("6_History", run=run_id).run()
    assert not at.exception
    assert template in [c.value for c in at.code], "the aggregator prompt the user wrote"
    table = next(d.value for d in at.dataframe if "system prompt" in d.value.columns)
    drafts = table[table["call"].str.startswith("Layer 1")]
    assert list(drafts["temperature"]) == [0.7, 1.3]
    assert list(drafts["system prompt"]) == ["You are terse.", "You are a physicist."]
    assert set(drafts["model"]) == {MODEL}


async def test_a_calls_details_say_which_client_path_served_it(db_url, fake_server):
    """Recorded by the engine: the fake-server proposer on the fast path, the mock_response
    one on litellm; the run page's "made with" table says so per call."""
    from contextlib import aclosing

    from moa_core.config import LayerSpec, MoAConfig
    from moa_core.engine import run_moa
    from tests.conftest import fake_agent

    fast = fake_agent(fake_server, "details-fast").model_copy(update={"label": "fast one"})
    slow = AgentSpec(model="openai/gpt-x", label="litellm one", extra={"mock_response": "Rayleigh scattering."})
    cfg = MoAConfig(name="paths", layers=[LayerSpec(proposers=[fast, slow])], aggregator=fast, num_retries=0)
    async with aclosing(Recorder(open_db(db_url)).record(run_moa("Why is the sky blue?", cfg))) as events:
        seen = [ev async for ev in events]
    run_id = seen[-1].run_id
    at = page("6_History", run=run_id).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "system prompt" in d.value.columns)
    by_call = dict(zip(table["call"], table["client"], strict=True))
    assert by_call == {
        "Layer 1 · fast one": "fast",
        "Layer 1 · litellm one": "litellm",
        "Aggregator · fast one": "fast",
    }


# -- cannot run here --------------------------------------------------------------------------------


def test_arena_marks_unavailable_contenders_and_refuses_before_start(db_url, no_keys):
    at = page("2_Arena").run()
    assert not at.exception
    at.sidebar.text_input[0].set_value("alice").run()
    pick = at.selectbox(key="arena_c1")
    assert "MoA preset · cloud-example (unavailable: no key)" in pick.options
    assert "MoA preset · local-moa" in pick.options  # no marker on what can run
    pick.set_value("preset:cloud-example").run()
    assert at.button(key="arena_start").disabled
    assert any("Cannot start" in c and "cloud-example" in c for c in captions(at))
    at.radio(key="arena_how").set_value("Random pair").run()
    assert "preset:cloud-example" not in at.multiselect(key="arena_pool").value


def test_playground_marks_unavailable_presets_and_refuses_before_asking(db_url, no_keys):
    at = page("1_Playground").run()
    pick = at.selectbox(key="cfg_source_pick")
    assert "cloud-example (unavailable: no key)" in pick.options
    assert "local-moa" in pick.options
    assert not at.chat_input(key="question").proto.disabled or not _local_ready()
    pick.set_value("preset:cloud-example").run()
    assert not at.exception
    assert at.chat_input(key="question").proto.disabled
    assert any("OPENAI_API_KEY" in md_text(w.value) for w in at.warning)


def _local_ready() -> bool:
    from moa_core.providers import local

    return bool(local.available_local_models())
