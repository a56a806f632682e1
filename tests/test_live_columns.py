"""The one live renderer (ui.streaming.LiveRun/LiveColumn): events onto columns by call id,
one batching rule, blind columns for the arena. The screen is replaced by recording boxes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from moa_core.events import CallRef, DraftDone, DraftStarted, RunDone, RunStarted, TokenDelta, Totals, Usage
from moa_core.ui import streaming
from moa_core.ui.safe_text import md_escape
from moa_core.ui.streaming import CURSOR, FLUSH_SECONDS, NO_TEXT, LiveColumn, LiveRun
from moa_core.vocab import Role, RunStatus


class Box:
    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def markdown(self, text: str) -> None:
        self.shown.append(("markdown", text))

    def caption(self, text: str) -> None:
        self.shown.append(("caption", text))

    def error(self, text: str) -> None:
        self.shown.append(("error", text))

    def warning(self, text: str) -> None:
        self.shown.append(("warning", text))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(streaming, "time", SimpleNamespace(monotonic=c))  # this module's clock only
    return c


REF = CallRef("r1", Role.PROPOSER, 0, 0, "local/secret-model", "Draft 1")
OTHER = CallRef("r1", Role.PROPOSER, 0, 1, "local/other", "Draft 2")


def done(ref: CallRef, text: str, error: str | None = None) -> DraftDone:
    return DraftDone(ref, text, "stop", Usage(3, 4), 0.0, 1.0, 2.0, 0.5, error)


def live(blind: bool = False) -> tuple[LiveRun, LiveColumn]:
    col = LiveColumn("Draft 1", Box(), Box(), blind=blind)
    return LiveRun(columns={REF.call_id: col}, total_calls=1), col


def test_tokens_are_batched_per_column_and_the_end_shows_the_whole_text(clock: Clock) -> None:
    run, col = live()
    assert run.apply(DraftStarted(REF, "", {}, 0.0)) is col
    assert col.box.shown == [("caption", "thinking…")]
    run.apply(TokenDelta(REF, "Hel", 0.0))  # the first token shows at once
    run.apply(TokenDelta(REF, "lo", 0.0))  # within FLUSH_SECONDS of it: held back
    run.apply(TokenDelta(REF, ",", 0.0))
    assert col.box.shown[1:] == [("markdown", "Hel" + CURSOR)] and col.dirty
    clock.now += 2 * FLUSH_SECONDS
    run.apply(TokenDelta(REF, " you", 0.0))
    assert col.box.shown[-1] == ("markdown", "Hello, you" + CURSOR) and col.flushes == 2
    run.apply(done(REF, "Hello, you!"))
    assert col.box.shown[-1] == ("markdown", "Hello, you!") and not col.dirty
    assert run.done_calls == 1
    assert col.meta.shown[0][0] == "caption" and "local/secret-model" in col.meta.shown[0][1]


def test_a_blind_column_never_names_the_model(clock: Clock) -> None:
    run, col = live(blind=True)
    run.apply(DraftStarted(REF, "", {}, 0.0))
    run.apply(TokenDelta(REF, "answer", 0.0))
    run.apply(done(REF, "answer"))
    assert col.box.shown == [("markdown", "answer" + CURSOR), ("markdown", "answer")]
    assert col.meta.shown == []


def test_a_failed_call_shows_its_error_and_no_text_is_said(clock: Clock) -> None:
    run, col = live()
    run.apply(done(REF, "", error="RateLimitError: slow down"))
    assert col.box.shown == [("markdown", NO_TEXT)]
    assert col.meta.shown == [("error", md_escape("RateLimitError: slow down"))]  # error text is not markdown


def test_calls_without_a_column_are_skipped_and_run_events_are_kept(clock: Clock) -> None:
    run, col = live()
    assert run.apply(RunStarted("r1", "q", [], {}, "h", "p", "playground", 0.0)) is None and run.run_id == "r1"
    assert run.apply(TokenDelta(OTHER, "hidden draft", 0.0)) is None
    assert run.apply(done(OTHER, "hidden draft")) is None and run.done_calls == 0
    assert col.box.shown == [] and col.text == ""
    end = RunDone("r1", RunStatus.DONE, "x", Totals(), 0.0)
    run.apply(end)
    assert run.result is end
