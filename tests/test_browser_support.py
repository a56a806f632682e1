"""The check that fails a browser test when the app logged a traceback (no browser needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.browser_support import AppServer

TRACEBACK = """Exception in thread local-smollm2-135m:
Traceback (most recent call last):
  File "/x/local.py", line 361, in work
RuntimeError: Event loop is closed
"""


def test_a_traceback_in_the_log_is_reported_once_with_its_context(tmp_path: Path) -> None:
    log = tmp_path / "streamlit.log"
    log.write_text("You can now view your Streamlit app in your browser.\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = AppServer("http://127.0.0.1:1", "sqlite://", tmp_path / "moa.db", proc, log)
    try:
        assert server.new_traceback() == ""
        with log.open("a") as f:
            f.write("2026-01-01 INFO fine\n" + TRACEBACK)
        found = server.new_traceback()
        assert found.startswith("Exception in thread local-smollm2-135m:")
        assert found.endswith("RuntimeError: Event loop is closed")
        assert server.new_traceback() == "", "only what was logged since the last check"
        with log.open("a") as f:
            f.write(TRACEBACK)
    finally:
        server.stop()
    assert "Event loop is closed" in server.unreported, "what a stopped server logged is still reported"
