"""Page logic with Streamlit's AppTest (final states only; streaming is in the browser tests)."""

from __future__ import annotations

import time
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from moa_core.config import load_preset, parse_config_text
from moa_core.estimate import estimate
from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, Totals, Usage
from moa_core.store import open_db
from moa_core.store.queries import ratings_df
from moa_core.store.recorder import Recorder
from tests.conftest import md_text

ROOT = str(__import__("pathlib").Path(__file__).resolve().parent.parent)


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'moa.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOA_SAVED_CONFIGS_DIR", str(tmp_path / "configs"))
    return url


def playground() -> AppTest:
    return AppTest.from_file(ROOT + "/pages/1_Playground.py", default_timeout=60)


def caption_text(at: AppTest) -> str:
    return " ".join(md_text(c.value) for c in at.caption)


def test_default_preset_and_estimate_shown(db_url):
    at = playground().run()
    assert not at.exception
    text = caption_text(at)
    assert "local-moa" in text and "5 calls" in text and "free, local" in text


def test_adding_a_layer_updates_the_estimate(db_url):
    at = playground().run()
    layers = next(n for n in at.number_input if n.label == "Proposer layers")
    layers.set_value(2).run()
    assert not at.exception
    text = caption_text(at)
    assert "2 layer(s)" in text and "8 calls" in text


def test_removing_a_proposer(db_url):
    at = playground().run()
    n = next(n for n in at.number_input if n.label == "Proposers")
    n.set_value(2).run()
    assert "4 calls" in caption_text(at)


def test_invalid_template_shows_which_field(db_url):
    at = playground().run()
    tpl = next(t for t in at.text_area if t.label.startswith("Aggregator prompt template"))
    tpl.set_value("no placeholder here").run()
    assert any("aggregator_template" in md_text(e.value) and "{drafts}" in md_text(e.value) for e in at.error)


def test_save_config_under_a_name_then_pick_it(db_url):
    at = playground().run()
    next(t for t in at.text_input if t.label == "Save as").set_value("my cfg")
    next(b for b in at.button if b.label == "Save config").click().run()
    assert any("Saved as" in s.value for s in at.success)
    assert "my cfg" in caption_text(at)
    pick = next(s for s in at.selectbox if s.label == "Preset or saved config")
    assert "saved · my cfg" in pick.options
    pick.set_value("preset:same-model-varied").run()
    assert "same-model-varied" in caption_text(at)
    next(s for s in at.selectbox if s.label == "Preset or saved config").set_value("saved:my cfg").run()
    assert "my cfg" in caption_text(at) and "5 calls" in caption_text(at)


def test_export_import_round_trip_is_identical():
    cfg = load_preset("moa-lite-local")
    assert parse_config_text(cfg.to_yaml(), "yaml") == cfg
    assert parse_config_text(cfg.to_json(), "json") == cfg
    assert parse_config_text(cfg.to_json()).stable_hash() == cfg.stable_hash()


def test_estimate_counts_calls_and_tokens():
    cfg = load_preset("local-moa")
    est = estimate(cfg, "Why is the sky blue?")
    assert est.calls == 5 and est.all_local and est.cost_label == "free, local"
    assert est.completion_tokens == sum(a.max_tokens for a in cfg.all_agents())
    two = cfg.model_copy(update={"layers": cfg.layers * 2})
    assert estimate(two).calls == 8 and estimate(two).seconds > est.seconds


def _seed_run(url: str) -> tuple[str, int]:
    engine = open_db(url)
    rec = Recorder(engine)
    run_id = uuid.uuid4().hex
    t = time.time()
    cfg = load_preset("local-moa")
    rec.handle(
        RunStarted(
            run_id,
            "Why is the sky blue?",
            [],
            cfg.model_dump(mode="json"),
            cfg.stable_hash(),
            cfg.name,
            "playground",
            t,
        )
    )
    for role, layer in (("proposer", 0), ("aggregator", 1)):
        ref = CallRef(run_id, role, layer, 0, "local/smollm2-135m", role)
        rec.handle(DraftStarted(ref, "", {"temperature": 0.7}, t))
        rec.handle(DraftDone(ref, f"{role} says Rayleigh scattering.", "stop", Usage(5, 6), 0.0, t, t + 1, 0.2))
    rec.handle(RunDone(run_id, "done", "aggregator says Rayleigh scattering.", Totals(10, 12, 0.0, 1.0, 2, 0), t + 1))
    from moa_core.store.queries import get_run

    gens = get_run(engine, run_id)["generations"]
    return run_id, next(g["id"] for g in gens if g["role"] == "aggregator")


def test_rating_is_saved_and_shown(db_url):
    run_id, gen_id = _seed_run(db_url)
    at = AppTest.from_file(ROOT + "/pages/6_History.py", default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    assert any("aggregator says" in m.value for m in at.markdown)
    at.sidebar.text_input[0].set_value("bob").run()
    at.radio(key=f"score-{gen_id}").set_value(4)
    at.text_input(key=f"comment-{gen_id}").set_value("good")
    form_buttons = [b for b in at.button if b.label == "Save rating"]
    idx = [b.form_id for b in form_buttons].index(f"rate-{gen_id}")
    form_buttons[idx].click().run()
    assert not at.exception
    df = ratings_df(open_db(db_url))
    assert list(df[["score", "comment", "rater"]].itertuples(index=False, name=None)) == [(4, "good", "bob")]
    assert any("Rating saved (4★)" in s.value for s in at.success)


def test_rating_without_a_name_is_refused(db_url):
    run_id, gen_id = _seed_run(db_url)
    at = AppTest.from_file(ROOT + "/pages/6_History.py", default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    at.radio(key=f"score-{gen_id}").set_value(3)
    form_buttons = [b for b in at.button if b.label == "Save rating"]
    form_buttons[[b.form_id for b in form_buttons].index(f"rate-{gen_id}")].click().run()
    assert any("name" in e.value for e in at.error)
    assert ratings_df(open_db(db_url)).empty


def test_history_lists_runs_and_unknown_run_is_clear(db_url):
    _seed_run(db_url)
    at = AppTest.from_file(ROOT + "/pages/6_History.py", default_timeout=60).run()
    assert not at.exception and at.dataframe
    at2 = AppTest.from_file(ROOT + "/pages/6_History.py", default_timeout=60)
    at2.query_params["run"] = "nope"
    at2.run()
    assert any("No run with id" in e.value for e in at2.error)
