"""One classification of provider failures, whichever client path raised them.

litellm (through the openai SDK and aiohttp or httpx) and the fast path (httpx) fail in
different exception types for the same fault: a server killed mid-stream reads as
"Connection error.", "Response payload is not completed" or "Stream ended before a
finish_reason" depending on where it was noticed. `describe` walks the exception chain and
gives each fault one spelling, so a call's error says the same thing on both paths:

  timeout (any layer)                  timed out
  cannot open the connection           APIConnectionError: cannot connect to the provider
  connection lost / stream cut short   APIConnectionError: the connection was lost before the answer was finished
  a chunk that is not JSON             APIError: malformed chunk in the stream (<parser's message>)
  HTTP error status                    <Name for the status>: <the provider's message>
  anything else                        <ExceptionName>: <message>
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

CANNOT_CONNECT = "APIConnectionError: cannot connect to the provider"
CONNECTION_LOST = "APIConnectionError: the connection was lost before the answer was finished"
TIMED_OUT = "timed out"

# litellm's names for the statuses it maps (litellm.exceptions); both paths use these.
STATUS_NAMES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    409: "APIError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
_REPEATED_NAME = re.compile(r"\b(\w+): (?:\1: )+")
_PROVIDER_PREFIX = re.compile(r"^(?:\w+: )*\w*Exception - ")


class StreamCutError(RuntimeError):
    """The stream ended before the provider said the answer was finished."""

    def __init__(self) -> None:
        super().__init__("the stream ended before the answer was finished (connection dropped?)")


class ProviderHTTPError(RuntimeError):
    """The fast path's HTTP error status, with the provider's own message."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status
        self.message = message
        self.retry_after = retry_after


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, "InternalServerError" if status >= 500 else "APIError")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        nxt = getattr(cur, "original_exception", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)


def _qualname(exc: BaseException) -> tuple[str, str]:
    t = type(exc)
    return t.__module__.split(".", 1)[0], t.__name__


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return True
    top, name = _qualname(exc)
    return (top in ("httpx", "openai") and "Timeout" in name) or (top == "litellm" and name == "Timeout")


def _is_connect_failure(exc: BaseException) -> bool:
    top, name = _qualname(exc)
    return isinstance(exc, ConnectionRefusedError) or (top, name) in (
        ("httpx", "ConnectError"),
        ("aiohttp", "ClientConnectorError"),
    )


def _is_connection_lost(exc: BaseException) -> bool:
    top, name = _qualname(exc)
    if isinstance(exc, (StreamCutError, ConnectionError)):
        return True
    if top == "httpx" and name in ("ReadError", "RemoteProtocolError", "WriteError", "NetworkError", "CloseError"):
        return True
    if top == "aiohttp" and name in ("ClientPayloadError", "ServerDisconnectedError", "ClientOSError"):
        return True
    if (
        top == "openai" and name == "APIConnectionError"
    ):  # the SDK's own; litellm's subclass is also used for other faults
        return True
    return "Stream ended before a finish_reason" in str(exc)


def _clean(msg: str) -> str:
    msg = msg.split(" Original exception: ", 1)[0]
    for prefix in ("litellm.", "LocalException - "):
        while prefix in msg[:60]:
            head, _, tail = msg.partition(prefix)
            msg = head + tail
    return _PROVIDER_PREFIX.sub("", msg).strip()


def describe(exc: BaseException) -> str:
    """One line a user can read, the same on both client paths (not yet redacted)."""
    chain = list(_chain(exc))
    if any(_is_timeout(e) for e in chain):
        return TIMED_OUT
    if any(isinstance(e, json.JSONDecodeError) for e in chain):
        bad = next(e for e in chain if isinstance(e, json.JSONDecodeError))
        return f"APIError: malformed chunk in the stream ({str(bad).splitlines()[0]})"
    if any(_is_connect_failure(e) for e in chain):
        return CANNOT_CONNECT
    if any(_is_connection_lost(e) for e in chain):
        return CONNECTION_LOST
    name = type(exc).__name__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        if status == 408:
            return TIMED_OUT
        return f"{status_name(status)}: {_clean(first) or name}"
    msg = _clean(first) or name
    # litellm nests class names ("X: X: X: message"): say each once
    return _REPEATED_NAME.sub(r"\1: ", f"{name}: {msg}")
