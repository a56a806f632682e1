"""A small OpenAI-compatible chat server on 127.0.0.1 with controllable latency and faults.

The model name picks the behaviour, so one server serves a whole MoA config:
  `fake-<anything>` answers normally; options ride in the name after `@`, comma-separated:
  `fake-a@tokens=20,delay=0.01,ttft=0.1`  20 tokens, 10 ms apart, first after 100 ms
  `fake-a@fail=500` HTTP 500; `fail=429` 429 with Retry-After; `fail=hang` never answers;
  `fail=drop` drops the connection mid-stream; `fail=garbage` sends malformed chunks;
  `fail=500once` fails the first request for that model, then answers;
  `fail=dropfirst` drops the first request's connection before answering, then answers;
  `usage=none` sends no usage chunk even when the client asks for one (llama.cpp's server);
  `rank=CAB` ends the reply with "FINAL RANKING:" and "1. Response C" ... (a reviewer);
  `choice=B` ends it with "CHOICE: Response B" (a selector).
The reply echoes how many messages and drafts it saw, so tests can check what reached it.
`/v1/completions` (text completion, a `prompt` instead of messages) streams the same way in
the text-completion chunk shape; its first word is `prompt<characters of the prompt>`.
Used by tests and benchmarks; stdlib only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse_options(model: str) -> dict[str, str]:
    _, _, opts = model.partition("@")
    out = {}
    for part in filter(None, opts.split(",")):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


class FakeOpenAI:
    def __init__(self, default_tokens: int = 8, default_delay: float = 0.0):
        self.default_tokens = default_tokens
        self.default_delay = default_delay
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []  # request paths, in the order of `requests`
        self.calls = Counter()
        # Streams open per model, and content chunks sent per model: tests check cancellation with them.
        self.open_streams: Counter[str] = Counter()
        self.chunks_sent: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    async def wait_idle(self, models: list[str], timeout: float = 30.0) -> None:
        """Until no stream of these models is open (raises TimeoutError after `timeout`)."""
        import asyncio

        async def idle() -> None:
            while any(self.open_streams[m] for m in models):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(idle(), timeout)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                model = body.get("model", "")
                opts = parse_options(model)
                text_api = self.path.rstrip("/").endswith("/completions") and "/chat/" not in self.path
                with fake._lock:
                    fake.requests.append(body)
                    fake.paths.append(self.path)
                    fake.calls[model] += 1
                    n_call = fake.calls[model]
                fail = opts.get("fail", "")
                if fail == "500" or (fail == "500once" and n_call == 1):
                    return self._json(500, {"error": {"message": "injected server error", "type": "server_error"}})
                if fail == "429":
                    return self._json(
                        429, {"error": {"message": "injected rate limit", "type": "rate_limit"}}, {"Retry-After": "1"}
                    )
                if fail == "hang":
                    time.sleep(3600)
                    return
                if fail == "dropfirst" and n_call == 1:  # the connection lost before any answer
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                tokens = int(opts.get("tokens", fake.default_tokens))
                delay = float(opts.get("delay", fake.default_delay))
                ttft = float(opts.get("ttft", delay))
                messages = body.get("messages", [])
                drafts = sum(str(m.get("content", "")).count("\n[") for m in messages)
                words = [f"w{i}" for i in range(tokens)]
                words[0] = f"prompt{len(body.get('prompt', ''))}" if text_api else f"m{len(messages)}d{drafts}"
                # A reviewer's closing ranking / a selector's choice, as the pipeline prompts ask.
                if opts.get("rank"):
                    words += ["\nFINAL RANKING:", *(f"\n{n}. Response {c}" for n, c in enumerate(opts["rank"], 1))]
                if opts.get("choice"):
                    words.append(f"\nCHOICE: Response {opts['choice']}")
                if not body.get("stream"):
                    time.sleep(ttft + delay * max(tokens - 1, 0))
                    return self._json(200, self._completion(model, " ".join(words), len(messages), tokens))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                # No length and no chunking: the body ends when the connection closes.
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                with fake._lock:
                    fake.open_streams[model] += 1
                try:
                    time.sleep(ttft)
                    for i, w in enumerate(words):
                        if i and delay:
                            time.sleep(delay)
                        if fail == "drop" and i == len(words) // 2:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if fail == "garbage" and i == 1:
                            self.wfile.write(b"data: {not json at all\n\n")
                            self.wfile.flush()
                            continue
                        self._sse(self._chunk(model, (" " if i else "") + w, None, text_api))
                        with fake._lock:
                            fake.chunks_sent[model] += 1
                    self._sse(self._chunk(model, "", "stop", text_api))
                    if (body.get("stream_options") or {}).get("include_usage") and opts.get("usage") != "none":
                        usage = {
                            "prompt_tokens": 10 * len(messages),
                            "completion_tokens": tokens,
                            "total_tokens": 10 * len(messages) + tokens,
                        }
                        self._sse(
                            {
                                "id": "x",
                                "object": "chat.completion.chunk",
                                "created": 0,
                                "model": model,
                                "choices": [],
                                "usage": usage,
                            }
                        )
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake._lock:
                        fake.open_streams[model] -= 1

            def _sse(self, obj: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            @staticmethod
            def _chunk(model: str, text: str, finish: str | None, text_api: bool = False) -> dict[str, Any]:
                if text_api:
                    return {
                        "id": "x",
                        "object": "text_completion",
                        "created": 0,
                        "model": model,
                        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                    }
                delta = {"content": text} if text else {}
                return {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            @staticmethod
            def _completion(model: str, text: str, n_msgs: int, tokens: int) -> dict[str, Any]:
                return {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": 10 * n_msgs,
                        "completion_tokens": tokens,
                        "total_tokens": 10 * n_msgs + tokens,
                    },
                }

        return Handler
