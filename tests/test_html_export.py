"""HTML export: a stored run, the leaderboard and an evaluation report as one offline file.

Every text is in the file; hostile text (tags, javascript:/data:/file: links, images,
markdown link injection in names) stays text; nothing but the page's own script runs and
nothing can be fetched."""

from __future__ import annotations

import asyncio
import random
import re
from contextlib import aclosing
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from moa_core.analysis import review_ranking
from moa_core.analysis.leaderboard import leaderboard
from moa_core.cli import main
from moa_core.config import MoAConfig, QuorumSpec, StageSpec
from moa_core.evaluation.records import EvalReport, EvalResults
from moa_core.evaluation.report import judged_outcomes, pairwise_report
from moa_core.evaluation.report_html import eval_report_html
from moa_core.events import CallRef, RunDone, RunStarted, Totals
from moa_core.stage_layout import CHOSEN, LETTERS_TITLE, NOT_USED, RANKING_TITLE, SELECTOR_TEXT_TITLE, USED
from moa_core.store import Recorder, get_run, open_db
from moa_core.store.html_export import REPLAY_JS, leaderboard_html, run_html
from moa_core.store.html_page import esc, markdown_html
from moa_core.vocab import StageKind
from tests.html_export_support import (
    BASELINE_TEXT,
    CHAIRMAN_TEXT,
    COMMENT,
    COUNCIL_ANSWERS,
    ERROR,
    FINAL_TEXT,
    HOSTILE,
    HOSTILE_LABEL,
    HOSTILE_MODEL,
    PROPOSER_TEXTS,
    QUESTION,
    RATER,
    assert_inert,
    council_config,
    mock_agent,
    record_hostile_run,
    record_pipeline,
    scan,
    visible,
)
from tests.test_store_support import config, draft, stream


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_db(f"sqlite:///{tmp_path / 'moa.db'}")


@pytest.fixture
def run_id(engine: Engine) -> str:
    return record_hostile_run(engine)


def page_text(page: str) -> str:
    return " ".join("".join(scan(page).text).split())


def flat(s: str) -> str:
    return " ".join(s.split())


def test_run_page_has_every_text_and_nothing_runs(engine: Engine, run_id: str) -> None:
    data = get_run(engine, run_id)
    assert data is not None
    page = run_html(data)
    s = assert_inert(page, REPLAY_JS)
    text = " ".join("".join(s.text).split())
    for t in [*PROPOSER_TEXTS, FINAL_TEXT, BASELINE_TEXT]:
        for fragment in visible(t):
            assert flat(fragment) in text
    # Hostile markup reads as written, names included.
    for literal in ("<script>alert('s')</script>", "[click me](javascript:alert(2))", "<javascript:alert(4)>"):
        assert literal in text
    assert "Which colour is the sky? <script>alert('q')</script> [q](javascript:alert(10))" in text
    assert HOSTILE_LABEL in text and HOSTILE_MODEL in text and "Base <u>line</u>" in text
    assert flat(COMMENT) in text and RATER in text and flat(ERROR) in text
    # Per-call metrics, the timeline, the vote, the layer and final rows.
    n_out = -(-len(FINAL_TEXT) // 3)  # the synthetic stream sends 3 characters a token
    assert f"local/agg · 10→{n_out} tok · TTFT 0.10s · 0.50s · $0.00100 · done" in text
    assert "Timeline of the calls" in text and "<svg" in page and page.count('class="bar ') == 5
    assert "left wins" in text and "Layer 1 · 3 proposers" in text and "MoA · local/agg" in text
    assert "Alone · Base <u>line</u>" in text
    # The allowed link stays a link, an image is a link to its URL; nothing else is one.
    assert scan(page).hrefs == ["http://evil.example/pixel.png", "https://example.org/ok"]


LEGACY_GOLDEN = Path(__file__).parent / "golden" / "legacy_run_export.body.html"


def test_an_old_run_exports_exactly_as_before(engine: Engine, run_id: str) -> None:
    """A layers + aggregator run's page, everything from <body> on, as the export wrote it before
    stages were shown (the golden file was written by that code, up to its unchanged replay
    script; only the run id differs)."""
    data = get_run(engine, run_id)
    assert data is not None
    for v in data["votes"]:
        v["created_at"] = 1_700_000_100.0  # the one clock time the recording does not fix
    page = run_html(data).replace(run_id, "RUNID")
    body, script = page[page.index("<body>") :].split("<script>")
    assert body == LEGACY_GOLDEN.read_text(encoding="utf-8")
    assert script == f"{REPLAY_JS}</script></body></html>\n"


def test_run_page_reads_without_script(engine: Engine, run_id: str) -> None:
    """The replay controls are hidden until the script shows them; the texts need no script."""
    data = get_run(engine, run_id)
    assert data is not None
    page = run_html(data)
    assert 'id="replay-bar" hidden' in page
    before_script = page.split("<script>")[0]
    for t in PROPOSER_TEXTS:
        assert visible(t)[0] in before_script


def test_replay_columns_carry_their_timing(engine: Engine, run_id: str) -> None:
    data = get_run(engine, run_id)
    assert data is not None
    page = run_html(data)
    assert page.count("data-replay data-first=") == 5
    # The aggregator's first token comes 1.1 s after the run's first call.
    assert 'class="col aggregator" data-replay data-first="1.100" data-end="1.500"' in page
    data["generations"][0]["timing"] = [[0.2, 5], [0.4, 12]]
    assert 'data-timing="[[0.2, 5], [0.4, 12]]"' in run_html(data)


@pytest.mark.parametrize("text", HOSTILE)
def test_each_hostile_text_is_inert_in_a_column(engine: Engine, run_id: str, text: str) -> None:
    data = get_run(engine, run_id)
    assert data is not None
    for g in data["generations"]:
        g["text"] = text
        g["label"] = text
        g["model"] = text
        g["error"] = text
    data["run"]["question"] = text
    assert_inert(run_html(data), REPLAY_JS)


def test_random_markdown_mixes_make_no_other_link() -> None:
    pieces = [
        "[a](", "](", "<", ">", "javascript:", "JaVaScRiPt:", "data:", "file:", "vbscript:", "&#106;", "&colon;",
        "\\", "`", "!", "[", "]", "(", ")", "\n", " ", "http://ok.example", "mailto:x@y.z", "\"", "'", "%0a",
        "<img src=x>", "<script>", "[r]: ", "\t", "java\nscript:", "onerror=",
    ]  # fmt: skip
    rng = random.Random(16)
    for _ in range(1500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        body = markdown_html(text)
        s = scan(body)
        assert not s.handlers and not s.loads and "script" not in s.tags and "img" not in s.tags, text
        assert all(h.lower().startswith(("http:", "https:", "mailto:")) for h in s.hrefs), (text, s.hrefs)


def test_leaderboard_page(engine: Engine) -> None:
    evil = "[x](javascript:alert(1))<script>alert(2)</script>"
    votes = pd.DataFrame(
        {
            "left": [evil, "local/a", "local/b", evil] * 5,
            "right": ["local/a", "local/b", evil, "local/b"] * 5,
            "outcome": ["left", "right", "tie", "left"] * 5,
        }
    )
    board = leaderboard(votes, n_boot=20, seed=0)
    page = leaderboard_html(board, len(votes), n_boot=20, scope="people <b>and</b> judges")
    s = assert_inert(page, None)
    text = page_text(page)
    assert evil in text and "people <b>and</b> judges" in text and "20 vote(s)" in text
    # One row per contender in the table and one dot per contender in the chart.
    assert page.count("<tr>") == 1 + 3 and page.count("<circle") == 3
    assert f"{board['rating'].iloc[0]:.0f}" in text
    assert s.hrefs == []


def test_evaluation_report_page() -> None:
    evil = "<script>alert(1)</script>[j](javascript:alert(2))"
    answers = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "contender": ["local-moa", evil],
            "question_id": ["q1", "q1"],
            "category": ["science", "science"],
            "question": ["Why is the sky blue? <img src=x onerror=alert(3)>"] * 2,
            "final_text": ["Rayleigh scattering, says MoA.", "Blue light scatters more, alone. " + HOSTILE[8]],
            "reference": ["Rayleigh", "Rayleigh"],
        }
    )
    judgements = pd.DataFrame(
        {
            "question_id": ["q1"],
            "category": ["science"],
            "contender_a": ["local-moa"],
            "contender_b": [evil],
            "verdict_ab": ["A"],
            "verdict_ba": ["B"],
            "outcome": ["left"],
        }
    )
    rep = EvalReport(
        results=EvalResults(name="eval <b>one</b>", answers=answers, judgements=judgements, plan={}),
        judge="local/judge",
        pairwise=pairwise_report(judged_outcomes(judgements)),
        reference=pd.DataFrame(),
        costs=pd.DataFrame(),
        per_question=pd.DataFrame(),
        collaborativeness=pd.DataFrame(),
        judged=1,
    )
    page = eval_report_html(rep, "moa-studio-30")
    assert_inert(page, None)
    text = page_text(page)
    for t in ("Rayleigh scattering, says MoA.", "Blue light scatters more, alone.", evil, "eval <b>one</b>"):
        assert t in text
    assert "Why is the sky blue? <img src=x onerror=alert(3)>" in text and "100%" in text
    assert page.count("<circle") == 1


def test_cli_export_run_writes_the_page(engine: Engine, run_id: str, tmp_path: Path, capsys) -> None:
    url = str(engine.url)
    out = tmp_path / "run.html"
    assert main(["export-run", run_id, "--html", str(out), "--database", url]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert_inert(page, REPLAY_JS)
    assert visible(FINAL_TEXT)[0] in page and QUESTION.split("?")[0] in page


def test_cli_export_run_unknown_id_exits_2_and_writes_nothing(engine: Engine, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.html"
    assert main(["export-run", "no-such-run", "--html", str(out), "--database", str(engine.url)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run with id 'no-such-run'" in err and "Traceback" not in err
    assert list(tmp_path.glob("*.html*")) == []


def test_cli_export_run_unwritable_path_exits_2(engine: Engine, run_id: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "missing-dir" / "run.html"
    assert main(["export-run", run_id, "--html", str(out), "--database", str(engine.url)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa: cannot write") and err.count("\n") == 1
    assert not out.parent.exists()


def _download_labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_history_and_analysis_offer_html_downloads(tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from moa_core.ui import layout

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    layout._store.clear()
    try:
        engine = open_db(url)
        run_id = record_hostile_run(engine)
        root = Path(__file__).resolve().parent.parent / "pages"
        at = AppTest.from_file(str(root / "6_History.py"), default_timeout=60)
        at.query_params["run"] = run_id
        at.run()
        assert not at.exception and "Download as HTML" in _download_labels(at)
        at = AppTest.from_file(str(root / "3_Analysis.py"), default_timeout=60).run()
        assert not at.exception and "Download as HTML" in _download_labels(at)  # one vote: a leaderboard
    finally:
        layout._store.clear()


# -- pipelines: recorded through the real engine and Recorder (litellm mock_response agents) ----------


def _between(page: str, start: str, end: str) -> str:
    return page[page.index(start) : page.index(end, page.index(start))]


def test_a_council_run_shows_its_stages_in_order_with_the_ranking(engine: Engine) -> None:
    data = record_pipeline(engine, council_config(), [mock_agent("Solo", "Paris, alone.")])
    page = run_html(data)
    assert_inert(page, REPLAY_JS)
    propose, review, final = (
        "<h2>Layer 1 · 3 proposers</h2>",
        "<h2>Layer 2 · peer review by 2 reviewers (answers anonymised)</h2>",
        "<h2>Aggregated answer and single models</h2>",
    )
    assert page.index(propose) < page.index(review) < page.index(RANKING_TITLE) < page.index(final)
    # Each stage's columns sit under its own heading: the critiques are a stage, not final answers.
    proposals = _between(page, propose, review)
    assert all(esc(a) in proposals for a in COUNCIL_ANSWERS) and esc(HOSTILE_LABEL) in proposals
    reviews = _between(page, review, RANKING_TITLE)
    assert reviews.count('class="col reviewer"') == 2
    assert "Review by Rev one" in reviews and "Review by Rev two" in reviews and "FINAL RANKING" in reviews
    finals = page[page.index(final) :]
    assert "MoA · Chair" in finals and CHAIRMAN_TEXT in finals and "Alone · Solo" in finals
    assert "Review by" not in finals and 'class="col reviewer"' not in finals

    # The aggregate ranking, de-anonymised: model names, mean rank, Borda, votes, as stored.
    details = data["stages"][1]["details"]
    ranking = _between(page, RANKING_TITLE, final)
    body = ranking[ranking.index("<tbody>") : ranking.index("</tbody>")]
    mean = ["–" if r["mean_rank"] is None else f"{r['mean_rank']:.2f}" for r in details["aggregate"]]
    expected = [
        [str(place), esc(r["name"]), m, f"{r['borda']:.1f}", str(r["votes"])]
        for place, (r, m) in enumerate(zip(details["aggregate"], mean, strict=True), start=1)
    ]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]
    assert cells == expected and len(cells) == 3
    assert {r["name"] for r in details["aggregate"]} == {HOSTILE_LABEL, "P2", "P3"}
    assert "Response" not in body
    # Which letter each reviewer saw which answer as (its own shuffled order).
    label = {g["call_id"]: g["label"] for g in data["generations"]}
    letters = ranking[ranking.index(LETTERS_TITLE) :]
    for rv in details["reviews"]:
        assert "; ".join(f"{chr(65 + i)} = {esc(label[c])}" for i, c in enumerate(rv["order"])) in letters


def test_a_hostile_model_label_in_the_ranking_table_stays_text(engine: Engine) -> None:
    data = record_pipeline(engine, council_config())
    page = run_html(data)
    s = assert_inert(page, REPLAY_JS)
    ranking = _between(page, RANKING_TITLE, "<h2>Aggregated answer")
    assert f"<td>{esc(HOSTILE_LABEL)}</td>" in ranking
    assert HOSTILE_LABEL not in page  # never raw: "<b>" would be a tag
    assert "b" not in s.tags and "a" not in s.tags
    assert HOSTILE_LABEL in page_text(page)


def test_a_ranker_run_with_a_quorum_marks_used_cut_and_chosen(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # The selector shown the drafts in their given order, so "Response B" is P2.
    monkeypatch.setattr(review_ranking, "shuffled_order", lambda n, seed, slot: list(range(n)))
    slow = mock_agent("Slow four", "Marseille.", mock_delay=60)
    cfg = MoAConfig(
        name="ranker",
        stages=[
            StageSpec(
                kind=StageKind.PROPOSE,
                agents=[*(mock_agent(f"P{i + 1}", t) for i, t in enumerate(COUNCIL_ANSWERS)), slow],
                quorum=QuorumSpec(k=3),
            ),
            StageSpec(kind=StageKind.SELECT, agents=[mock_agent("Picker", "CHOICE: Response B")]),
        ],
        num_retries=0,
        timeout=20,
    )
    data = record_pipeline(engine, cfg)
    assert data["run"]["final_text"] == COUNCIL_ANSWERS[1]
    page = run_html(data)
    assert_inert(page, REPLAY_JS)
    propose, final = "<h2>Layer 1 · 4 proposers · quorum 3 of 4</h2>", "<h2>Selected answer and single models</h2>"
    assert page.index(propose) < page.index(final)
    columns = {
        m.group(1): m.group(0) for m in re.finditer(r"<section[^>]*><h3>([^<]*)</h3>.*?</section>", page, flags=re.S)
    }
    assert f'<p class="mark cut">✂️ {NOT_USED}</p>' in columns["Slow four"]
    assert f'<p class="mark used">✅ {USED}</p>' in columns["P1"] and f"✅ {USED}" in columns["P3"]
    assert f'<p class="mark used">✅ {CHOSEN}</p>' in columns["P2"]
    # The selector's column holds its answer: the chosen draft, verbatim.
    assert esc(COUNCIL_ANSWERS[1]) in columns["Selector · Picker"]
    assert "Chosen draft:</b> P2, returned verbatim as the answer." in page[page.index(final) :]
    assert "mark" not in columns["Selector · Picker"].split("<div")[0]
    # What the selector itself wrote stays readable, after the choice.
    said = page.index(f"<details><summary>{SELECTOR_TEXT_TITLE}</summary>")
    assert page.index("Chosen draft:</b> P2") < said
    assert "CHOICE: Response B" in page[said : page.index("</details>", said)]


def test_a_judge_call_and_single_models_keep_their_columns(engine: Engine) -> None:
    """Calls that are no stage still show: single models in their row, a judge beside them."""
    run_id, t = "judged", 1_700_000_000.0
    cfg = config(("local/a",))
    events: list = [RunStarted(run_id, "Judge this", [], cfg.model_dump(mode="json"), cfg.stable_hash(), "", "eval", t)]
    events += draft(CallRef(run_id, "baseline", -1, 0, "local/base", "Solo <i>x</i>"), "Alone answer.", t)
    events += draft(CallRef(run_id, "judge", 0, 0, "local/judge"), "Verdict: [[A]]", t + 1)
    events.append(RunDone(run_id, "done", "", Totals(2, 2, 0.0, 2.0, 2, 0), t + 2))

    async def main() -> None:
        async with aclosing(Recorder(engine).record(stream(events))) as evs:
            async for _ in evs:
                pass

    asyncio.run(main())
    data = get_run(engine, run_id)
    assert data is not None
    page = run_html(data)
    assert_inert(page, REPLAY_JS)
    assert page.count('<section class="col ') == 2
    row = page[page.index("<h2>Single models</h2>") :]
    assert row.index(esc("Alone · Solo <i>x</i>")) < row.index("Judge · local/judge") < row.index("<h2>Calls</h2>")
    assert "Verdict: [[A]]" in row and "Alone answer." in row
