"""The Playground's config editor builds any pipeline (AppTest: final states of each edit).

A config is checked by saving it from the editor and reading the saved file back, so the
tests see exactly what a run of the edited config would use.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from moa_core.config import load_preset
from moa_core.saved_configs import load_saved
from moa_core.vocab import StageKind
from tests.conftest import md_text
from tests.test_apptest_playground import caption_text, db_url, playground  # noqa: F401  (db_url is a fixture)

KINDS = StageKind
# Each test on its own database and saved-configs folder.
pytestmark = pytest.mark.usefixtures("db_url")


def widget(at: AppTest, kind: str, name: str) -> Any:
    """The editor's widget `name` (its keys carry the editor's version: cfg<version>_<name>)."""
    found = [w for w in getattr(at, kind) if w.key and re.fullmatch(rf"cfg\d+_{re.escape(name)}", w.key)]
    assert len(found) == 1, (name, [w.key for w in getattr(at, kind)])
    return found[0]


def saved(at: AppTest, name: str = "edited") -> Any:
    next(t for t in at.text_input if t.label == "Save as").set_value(name)
    next(b for b in at.button if b.label == "Save config").click().run()
    assert not at.exception
    assert any("Saved as" in s.value for s in at.success), [md_text(e.value) for e in at.error]
    return load_saved(name)


def pick(at: AppTest, preset: str) -> AppTest:
    next(s for s in at.selectbox if s.label == "Preset or saved config").set_value(f"preset:{preset}").run()
    assert not at.exception
    return at


def as_stages(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label.startswith("Edit as stages")).click().run()
    assert not at.exception
    return at


def test_a_legacy_config_edited_without_stages_stays_legacy():
    at = playground().run()
    config = saved(at, "untouched")
    assert not config.stages
    assert config.stable_hash() == load_preset("local-moa").stable_hash()
    widget(at, "slider", "l0p1_t").set_value(1.1).run()
    config = saved(at, "warmer")
    assert not config.stages and "stages" not in config.to_yaml()
    expected = load_preset("local-moa").model_dump(mode="json")
    expected["layers"][0]["proposers"][1]["temperature"] = 1.1
    assert config.stable_hash() == type(config).model_validate(expected).stable_hash()


def test_council_preset_opens_in_the_stage_editor():
    at = pick(playground().run(), "council-local")
    assert "propose → review → synthesize" in caption_text(at)
    labels = [e.label for e in at.expander]
    assert "Stage 2: review · 3 agent(s)" in labels and "Stage 3: synthesize · 1 agent(s)" in labels
    assert widget(at, "checkbox", "s2_with_reviews").value is True
    assert saved(at).stable_hash() == load_preset("council-local").stable_hash()


def test_build_a_council_from_the_default_config():
    at = as_stages(playground().run())
    # The same pipeline, now written as stages.
    assert [s.kind for s in saved(at, "same").pipeline()] == [KINDS.PROPOSE, KINDS.SYNTHESIZE]
    assert saved(at, "same").pipeline() == load_preset("local-moa").pipeline()
    widget(at, "selectbox", "new_kind").set_value("review")
    widget(at, "button", "add_stage").click().run()
    assert not at.exception
    widget(at, "checkbox", "s2_with_reviews").check().run()
    config = saved(at)
    stages = config.pipeline()
    assert [s.kind for s in stages] == [KINDS.PROPOSE, KINDS.REVIEW, KINDS.SYNTHESIZE]
    # The reviewers are the proposers; the chairman gets the reviews.
    assert [a.model for a in stages[1].agents] == [a.model for a in stages[0].agents]
    assert stages[2].with_reviews and not stages[1].include_own


def test_quorum_and_include_own():
    at = pick(playground().run(), "council-local")
    widget(at, "checkbox", "s0_q").check().run()
    widget(at, "number_input", "s0_qk").set_value(2)
    widget(at, "radio", "s0_qs").set_value("show")
    widget(at, "checkbox", "s1_include_own").check().run()
    stages = saved(at).pipeline()
    assert stages[0].quorum is not None and stages[0].quorum.k == 2 and stages[0].quorum.stragglers == "show"
    assert stages[1].include_own and stages[1].quorum is None


def test_select_stage_and_remove():
    at = pick(playground().run(), "council-local")
    widget(at, "button", "s2_rm").click().run()  # drop the chairman
    widget(at, "button", "s1_rm").click().run()  # and the review
    widget(at, "selectbox", "new_kind").set_value("select")
    widget(at, "button", "add_stage").click().run()
    stages = saved(at).pipeline()
    assert [s.kind for s in stages] == [KINDS.PROPOSE, KINDS.SELECT] and len(stages[1].agents) == 1


def test_an_invalid_pipeline_shows_one_line_and_blocks_the_run():
    at = pick(playground().run(), "council-local")
    widget(at, "button", "s1_up").click().run()  # review before anyone answered
    assert not at.exception
    errors = [md_text(e.value) for e in at.error]
    assert errors == ["invalid config: stages.0: the first stage must be 'propose' (someone has to answer first)"]
    assert at.chat_input[0].disabled
    widget(at, "button", "s0_down").click().run()  # and back
    assert not at.error and not at.chat_input[0].disabled
    # A final stage with two agents: named, one line.
    widget(at, "number_input", "s2_n").set_value(2).run()
    assert [md_text(e.value) for e in at.error] == ["invalid config: stages.2: 'synthesize' takes exactly one agent"]
