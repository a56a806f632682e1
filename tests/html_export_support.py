"""A stored run full of hostile text, a council run through the real engine, and a parser that lists what an HTML page could load or run.

Shared by the unit, CLI and browser tests of the HTML export (no tests here)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import Engine

from moa_core.config import AgentSpec, MoAConfig, StageSpec
from moa_core.engine import run_moa
from moa_core.events import CallRef, LayerDone, RunDone, RunStarted, Totals
from moa_core.store import Recorder, add_rating, add_vote
from moa_core.vocab import StageKind
from tests.test_store_support import config, draft, stream

# Each is shown as text: none may become a tag, a handler, a link or a fetch.
HOSTILE = [
    "<script>alert('s')</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(2))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgzKTwvc2NyaXB0Pg==)",
    "<javascript:alert(4)>",
    "[file](file:///etc/passwd)",
    "[ref]: jav&#x61;script:alert(5)\n\n[ref]",
    "[esc](java\\script:alert(6))",
    "![pixel](http://evil.example/pixel.png)",
    "<style>body{background:url(http://evil.example/bg.png)}</style>",
    '<a href="javascript:alert(7)">a</a>',
    "<iframe src=http://evil.example/></iframe>",
    '"><svg onload=alert(8)>',
]
ALLOWED_LINK = "[a real link](https://example.org/ok)"
# Names are plain text: a label that looks like a markdown link must read as written.
HOSTILE_LABEL = "[x](javascript:alert(9)) <b>bold</b>"
HOSTILE_MODEL = "local/`a`](data:x)<i>"
QUESTION = "Which colour is the sky? <script>alert('q')</script> [q](javascript:alert(10))"
# One plain sentence per column, to find each column's text on the page.
PROPOSER_TEXTS = [
    f"Proposer {i} says the sky scatters blue light number {i}. " + HOSTILE[i % len(HOSTILE)] for i in range(3)
]
FINAL_TEXT = "The aggregated answer: Rayleigh scattering. " + " ".join(HOSTILE[3:]) + " " + ALLOWED_LINK
BASELINE_TEXT = "The baseline alone: blue because of scattering. " + HOSTILE[0]
COMMENT = "Nice <img src=x onerror=alert(11)> [c](javascript:alert(12))"
RATER = "eve<script>alert(13)</script>"
ERROR = "RateLimitError: <b>slow</b> [e](javascript:alert(14))"


def visible(text: str) -> list[str]:
    """Fragments of a column's text that appear verbatim on the page (markdown aside)."""
    return [text.split(". ")[0]]


def record_hostile_run(engine: Engine) -> str:
    """A two-proposer-plus-one-failed layer, an aggregator and a baseline, rated and voted on."""
    run_id = uuid.uuid4().hex
    t = 1_700_000_000.0
    cfg = config(("local/a", "local/b", "local/c"))
    events: list = [
        RunStarted(run_id, QUESTION, [], cfg.model_dump(mode="json"), cfg.stable_hash(), "local-moa", "playground", t)
    ]
    labels = [HOSTILE_LABEL, "B", "C"]
    for slot, text in enumerate(PROPOSER_TEXTS):
        model = HOSTILE_MODEL if slot == 0 else f"local/m{slot}"
        ref = CallRef(run_id, "proposer", 0, slot, model, labels[slot])
        events += draft(ref, text, t + 0.1 * slot, error=ERROR if slot == 2 else None)
    events.append(LayerDone(run_id, 0, 2, 1, t + 1))
    events += draft(CallRef(run_id, "aggregator", 1, 0, "local/agg"), FINAL_TEXT, t + 1)
    events += draft(CallRef(run_id, "baseline", -1, 0, "local/base", "Base <u>line</u>"), BASELINE_TEXT, t)
    events.append(RunDone(run_id, "done", FINAL_TEXT, Totals(40, 20, 0.004, 2.0, 5, 1), t + 2))

    async def main() -> None:
        async with aclosing(Recorder(engine).record(stream(events))) as evs:
            async for _ in evs:
                pass

    # Its own thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()
    from moa_core.store import get_run

    data = get_run(engine, run_id)
    assert data is not None
    gens = {g["role"] + str(g["slot"]): g["id"] for g in data["generations"]}
    add_rating(engine, gens["proposer0"], 4, COMMENT, RATER)
    add_rating(engine, gens["aggregator0"], 5, "", "bob")
    add_vote(engine, gens["aggregator0"], gens["baseline0"], "left", RATER, blind=True, run_id=run_id)
    return run_id


# -- pipelines: a council (propose -> review -> chairman) recorded through the real engine --------


COUNCIL_Q = "What is the capital of France?"
COUNCIL_ANSWERS = ["Paris is the capital.", "It is Lyon, says the second.", "Paris, on the Seine."]
CHAIRMAN_TEXT = "The council agrees: Paris."


def mock_agent(label: str, text: str, **extra: Any) -> AgentSpec:
    """An agent that answers `text` through litellm's mock_response (no server, no key)."""
    return AgentSpec(model=f"openai/mock-{len(label)}", label=label, extra={"mock_response": text, **extra})


def ranking_text(*letters: str) -> str:
    lines = "\n".join(f"{i}. Response {x}" for i, x in enumerate(letters, start=1))
    return f"Critique by a reviewer: Response A is terse <b>x</b>.\n\nFINAL RANKING:\n{lines}"


def record_pipeline(engine: Engine, cfg: MoAConfig, baselines: list[AgentSpec] | None = None) -> dict[str, Any]:
    """A run of `cfg` through the real engine and Recorder (agents answer with mock_response)."""

    async def main() -> list[Any]:
        async with aclosing(Recorder(engine).record(run_moa(COUNCIL_Q, cfg, baselines=baselines))) as stream:
            return [ev async for ev in stream]

    with ThreadPoolExecutor(1) as pool:  # its own thread, as in record_hostile_run
        events = pool.submit(asyncio.run, main()).result()
    assert isinstance(events[-1], RunDone) and events[-1].status == "done", events[-1]
    from moa_core.store import get_run

    data = get_run(engine, events[0].run_id)
    assert data is not None
    return data


def council_config() -> MoAConfig:
    """council-local's shape: three proposers (one with a hostile label), two reviewers, a chairman."""
    return MoAConfig(
        name="council",
        stages=[
            StageSpec(
                kind=StageKind.PROPOSE,
                agents=[
                    mock_agent(label, t) for label, t in zip([HOSTILE_LABEL, "P2", "P3"], COUNCIL_ANSWERS, strict=True)
                ],
            ),
            StageSpec(
                kind=StageKind.REVIEW,
                agents=[
                    mock_agent("Rev one", ranking_text("A", "B", "C")),
                    mock_agent("Rev two", ranking_text("C", "A", "B")),
                ],
            ),
            StageSpec(kind=StageKind.SYNTHESIZE, agents=[mock_agent("Chair", CHAIRMAN_TEXT)], with_reviews=True),
        ],
        num_retries=0,
        timeout=20,
    )


@dataclass
class PageScan(HTMLParser):
    """Every tag, and every way the page could load, link or run something."""

    tags: list[str] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)  # src/srcset/data/action/poster/... and CSS url(
    handlers: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    _in: str = ""

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in = tag
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}={value}")
            elif name in ("href", "xlink:href"):
                self.hrefs.append(value)
            elif name in ("src", "srcset", "data", "action", "formaction", "poster", "background", "ping"):
                self.loads.append(f"{tag} {name}={value}")
            elif name == "style" and "url(" in value.lower():
                self.loads.append(f"{tag} style={value}")
            elif name == "http-equiv" and value.lower() == "refresh":
                self.loads.append("meta refresh")

    def handle_endtag(self, tag: str) -> None:
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            if "url(" in data.lower() or "@import" in data.lower():
                self.loads.append(f"css {data[:80]}")
        else:
            self.text.append(data)


def scan(page: str) -> PageScan:
    s = PageScan()
    s.feed(page)
    s.close()
    return s


def assert_inert(page: str, own_script: str | None) -> PageScan:
    """Nothing in `page` but its own script can run, and nothing can be loaded from anywhere."""
    s = scan(page)
    assert s.scripts == ([own_script] if own_script else []), "a script other than the page's own"
    assert s.tags.count("script") == (1 if own_script else 0)
    assert not s.handlers, s.handlers
    assert not s.loads, s.loads
    bad = [h for h in s.hrefs if not h.lower().startswith(("http:", "https:", "mailto:", "#"))]
    assert not bad, bad
    for tag in ("img", "iframe", "object", "embed", "link", "base", "form", "input", "video", "audio", "image"):
        assert tag not in s.tags, tag
    assert "default-src 'none'" in page  # the CSP: the browser refuses any fetch the parser missed
    return s
