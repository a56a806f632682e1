"""Fixtures local to the reliability suite.

FaultFake   the shared fake OpenAI server plus three behaviours the matrix needs:
            `fail=429once` (first request 429 with Retry-After: 1, then answers),
            `verdict=A|B|tie` (streams "Verdict: A": a judge whose reply parses) and
            per-model request times / Authorization headers, so tests can see retries
            and where keys went.
KeyStub     a tiny OpenAI-shaped server that refuses every key with HTTP 401 and echoes
            the key it got in the error message (as a careless proxy would).
rel_db      a fresh, migrated SQLite file per test.
rel_app     the app (streamlit run) for the browser tests, with fake keys in its environment.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import aclosing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from moa_core.events import DraftDone, DraftStarted, Event, RunDone, RunStarted
from moa_core.store import dispose_engines, open_db
from moa_core.store.recorder import Recorder
from tests.fake_openai import FakeOpenAI, parse_options

# Recognisable fake secrets: searched for in the database, logs, exports and page HTML.
FAKE_OPENAI_KEY = "sk-moarel-OPENAI-4f1d2c3b5a6e7f8091a2b3c4"
FAKE_CUSTOM_KEY = "moarel-CUSTOM-9e8d7c6b5a4f3e2d1c0b"
CUSTOM_KEY_ENV = "MOA_REL_CUSTOM_KEY"


class FaultFake(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__()
        self.stamps: dict[str, list[float]] = defaultdict(list)
        self.auth: list[str] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                model = body.get("model", "")
                opts = parse_options(model)
                with fake._lock:
                    fake.stamps[model].append(time.time())
                    n = len(fake.stamps[model])
                    fake.auth.append(self.headers.get("Authorization", ""))
                fail = opts.get("fail", "")
                if fail == "429once" and n == 1:
                    with fake._lock:
                        fake.requests.append(body)
                    return self._json(
                        429, {"error": {"message": "injected rate limit", "type": "rate_limit"}}, {"Retry-After": "1"}
                    )
                first_failure = fail == "500once" and n == 1
                if (
                    "verdict" in opts
                    and body.get("stream")
                    and (fail in ("", "429once") or (fail == "500once" and not first_failure))
                ):
                    with fake._lock:
                        fake.requests.append(body)
                    return self._say(model, f"The answers differ a little. Verdict: {opts['verdict']}")
                self.rfile = io.BytesIO(raw)
                super().do_POST()

            def _say(self, model: str, reply: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                for i, w in enumerate(reply.split(" ")):
                    self._sse(self._chunk(model, (" " if i else "") + w, None))
                self._sse(self._chunk(model, "", "stop"))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


@pytest.fixture(scope="session")
def fault_server():
    with FaultFake() as server:
        yield server


class KeyStub:
    """Every chat request gets 401 'Incorrect API key provided: <the key it got>'."""

    def __init__(self) -> None:
        stub = self
        self.seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                stub.seen.append(key)
                data = json.dumps(
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {key}. You can find your API key at "
                            "https://platform.openai.com/account/api-keys.",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    }
                ).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> KeyStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def key_stub():
    with KeyStub() as stub:
        yield stub


@pytest.fixture
def rel_db(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'rel.db'}"
    engine = open_db(url)
    yield engine
    dispose_engines(url)


# ---------------------------------------------------------------- helpers


async def record(engine: Engine, events: AsyncIterator[Event]) -> list[Event]:
    """Run and record, the way the Playground does; every event, in order."""
    out: list[Event] = []
    async with aclosing(Recorder(engine).record(events)) as stream:
        async for ev in stream:
            out.append(ev)
    return out


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql), params)]


def assert_store_matches_events(engine: Engine, events: list[Event]) -> None:
    """The run row and its generation rows say exactly what the events said."""
    start = next(e for e in events if isinstance(e, RunStarted))
    end = events[-1]
    assert isinstance(end, RunDone), f"the run did not end: last event {end!r}"
    run = rows(engine, "select status, error, final_text from run where id = :id", id=start.run_id)
    assert run == [(end.status, end.error, end.final_text)]
    started = {e.ref.call_id for e in events if isinstance(e, DraftStarted)}
    dones = {e.ref.call_id: e for e in events if isinstance(e, DraftDone)}
    assert set(dones) == started, "every call that started must have ended"
    gens = {
        r[0]: r[1:]
        for r in rows(engine, "select call_id, status, error, text from generation where run_id = :id", id=start.run_id)
    }
    assert set(gens) == started
    for call_id, d in dones.items():
        status = "done" if d.ok else ("cancelled" if d.error == "cancelled" else "error")
        assert gens[call_id] == (status, d.error, d.text), call_id


@pytest.fixture(scope="module")
def rel_app(tmp_path_factory):
    """One app for the suite's browser tests (module scope: it is stopped before the other
    browser modules run), started with recognisable fake keys in its environment
    (searched for in its pages, log and database at the end)."""
    from tests.browser_support import start_app

    server = start_app(
        tmp_path_factory.mktemp("relapp"), env={"OPENAI_API_KEY": FAKE_OPENAI_KEY, CUSTOM_KEY_ENV: FAKE_CUSTOM_KEY}
    )
    yield server
    server.stop()
