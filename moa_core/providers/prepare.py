"""Assemble and verify the bundled model weights once, at install time.

`python -m moa_core.providers.prepare` prints one line per model; a failed check exits 1.
"""

from __future__ import annotations

import sys
import time

from moa_core.providers import local


def main() -> int:
    status = 0
    if not local.llama_available():
        print("llama-cpp-python is not installed: local models unavailable")
        return 0
    for spec in local.LOCAL_MODELS.values():
        if not local.weights_installed(spec):
            print(f"{spec.litellm_model}: weights package not installed, skipped")
            continue
        t0 = time.perf_counter()
        try:
            path = local.weights_path(spec)
        except local.LocalModelError as err:
            print(f"{spec.litellm_model}: {err}")
            status = 1
            continue
        print(f"{spec.litellm_model}: SHA-256 ok ({path}, {time.perf_counter() - t0:.1f}s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
