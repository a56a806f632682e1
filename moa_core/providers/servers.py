"""`moa serve-models`: the bundled models behind llama-cpp-python's OpenAI-compatible server.

Each (model, replica) pair is its own `python -m llama_cpp.server` process on a
127.0.0.1 port, started from a small JSON config file. One process per model because
llama-cpp-python's server keeps one model loaded at a time: a multi-model process
would unload and reload on every request that names another model, and it serves one
request at a time anyway. Replicas of one model are separate processes; spreading calls
across them is the litellm Router's job (see `router.py` and the `deployments` section
of a MoA config).

`interrupt_requests` is turned off: by default the server ends a streaming answer
early (a premature `[DONE]`) as soon as another request arrives, which would silently
truncate concurrent MoA drafts. With it off, a second request queues until the first
finishes, as on any one-slot server.

The app reaches a server exactly as it would reach vLLM or Ollama: litellm model
`openai/<name>` with `api_base` http://127.0.0.1:<port>/v1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moa_core.providers import local

DEFAULT_PORT = 8101
DEFAULT_N_CTX = 4096
START_TIMEOUT = 120.0


class ServerError(RuntimeError):
    """A model server could not be started or did not become ready."""


def server_available() -> bool:
    """Whether llama-cpp-python's server extra (fastapi, uvicorn, sse-starlette...) is installed."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
    )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_settings(
    spec: local.LocalModelSpec,
    port: int,
    *,
    host: str = "127.0.0.1",
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int = 1,
    n_threads_batch: int | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """The llama_cpp.server config file (JSON) for one replica of one bundled model."""
    model: dict[str, Any] = {
        "model": str(local.weights_path(spec)),
        "model_alias": spec.name,
        "n_ctx": n_ctx,
        # As in-process (local.py): one thread generating, every core for prompt batches.
        "n_threads": n_threads,
        "n_threads_batch": n_threads_batch or os.cpu_count() or 1,
        "use_mlock": False,
        "verbose": False,
    }
    if spec.chat_format:
        model["chat_format"] = spec.chat_format
    settings: dict[str, Any] = {"host": host, "port": port, "interrupt_requests": False, "models": [model]}
    if api_key:
        settings["api_key"] = api_key
    return settings


# The child asks Linux to SIGTERM it when the thread that started it ends (PR_SET_PDEATHSIG),
# so a crashed or killed `moa serve-models` (or test run) leaves no orphan servers. It
# does so itself, before running the server: no preexec_fn, which is unsafe with threads.
_CHILD = (
    "import ctypes, runpy, sys\n"
    "try:\n    ctypes.CDLL('libc.so.6').prctl(1, 15)\nexcept Exception:\n    pass\n"
    "sys.argv = ['llama_cpp.server', '--config_file', sys.argv[1]]\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


def _server_argv(config_file: Path) -> list[str]:
    # The death signal follows the starting *thread*: only tie the server to it when that is
    # the main thread (a server started from a worker thread must outlive the thread).
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return [sys.executable, "-c", _CHILD, str(config_file)]
    return [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_file)]


@dataclass
class ModelServer:
    """One llama_cpp.server process serving one bundled model on 127.0.0.1:<port>."""

    name: str
    replica: int
    port: int
    host: str = "127.0.0.1"
    n_ctx: int = DEFAULT_N_CTX
    workdir: Path | None = None
    api_key: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def litellm_model(self) -> str:
        return f"openai/{self.name}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / f"{self.name}-{self.replica}-{self.port}.log"

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AssertionError):
            return ""

    def start(self) -> ModelServer:
        """Spawn the process (returns at once; `wait_ready` waits for it to answer)."""
        spec = local.LOCAL_MODELS.get(self.name)
        if spec is None:
            raise ServerError(f"unknown bundled model {self.name!r} (known: {', '.join(local.LOCAL_MODELS)})")
        if not server_available():
            raise ServerError("llama-cpp-python's server is not installed: pip install 'llama-cpp-python[server]'")
        if not port_free(self.port, self.host):
            raise ServerError(f"port {self.port} on {self.host} is already in use")
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="moa-servers-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        settings = server_settings(spec, self.port, host=self.host, n_ctx=self.n_ctx, api_key=self.api_key)
        cfg = self.workdir / f"{self.name}-{self.replica}-{self.port}.json"
        cfg.write_text(json.dumps(settings, indent=2))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("CONFIG_FILE", None)  # would override --config_file
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                _server_argv(cfg), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return self

    def ready(self) -> bool:
        try:
            req = urllib.request.Request(self.api_base + "/models")
            if self.api_key:
                req.add_header("Authorization", f"Bearer {self.api_key}")
            with urllib.request.urlopen(req, timeout=1) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ModelServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} server on port {self.port} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.2)
        raise ServerError(
            f"{self.name} server on port {self.port} did not answer within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def warm(self, timeout: float = START_TIMEOUT) -> None:
        """One 1-token answer, so the first real request does not pay llama.cpp's first-eval setup."""
        body = json.dumps({"model": self.name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
        req = urllib.request.Request(
            self.api_base + "/chat/completions", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                r.read()
        except (OSError, ValueError) as exc:
            raise ServerError(
                f"{self.name} server on port {self.port} failed its first request: {exc}\n{self.log_tail()}"
            ) from exc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests use it for the fault path)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class ServerSet:
    """Every started server; `by_model` groups replicas of one model."""

    servers: list[ModelServer]

    def by_model(self) -> dict[str, list[ModelServer]]:
        out: dict[str, list[ModelServer]] = {}
        for s in self.servers:
            out.setdefault(s.name, []).append(s)
        return out

    def stop(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.stop()

    def deployments(self, api_key_env: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """The `deployments` section of a MoA config: group `server/<name>` -> its replicas."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, reps in self.by_model().items():
            out[group_name(name)] = [
                {
                    "model": s.litellm_model,
                    "api_base": s.api_base,
                    "name": f"{name} #{s.replica + 1} :{s.port}",
                    **({"api_key_env": api_key_env} if api_key_env else {}),
                }
                for s in reps
            ]
        return out


def group_name(model: str) -> str:
    """Router group that stands for every replica of a bundled model."""
    return f"server/{model}"


def start_servers(
    models: Sequence[str],
    replicas: int = 1,
    *,
    port: int = DEFAULT_PORT,
    n_ctx: int = DEFAULT_N_CTX,
    host: str = "127.0.0.1",
    workdir: Path | None = None,
    api_key: str | None = None,
    timeout: float = START_TIMEOUT,
    warm: bool = True,
) -> ServerSet:
    """Start `replicas` servers for each model and wait until all answer.

    Ports are consecutive from `port` (0: any free ports). The servers start together
    (each loads its model in its own process) and the call returns when all answer (with
    `warm`, after one 1-token request each); on any failure every server already started
    is stopped before the error is raised.
    """
    if replicas < 1:
        raise ServerError("replicas must be at least 1")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="moa-servers-"))
    servers: list[ModelServer] = []
    next_port = port
    try:
        for name in models:
            spec = local.LOCAL_MODELS.get(name)
            if spec is None:
                raise ServerError(f"unknown bundled model {name!r} (known: {', '.join(local.LOCAL_MODELS)})")
            local.weights_path(spec)  # verify (and assemble) the weights once, before any child needs them
            for r in range(replicas):
                if port == 0:
                    p = free_port(host)
                else:
                    while not port_free(next_port, host):
                        next_port += 1
                    p, next_port = next_port, next_port + 1
                servers.append(ModelServer(name, r, p, host, n_ctx, workdir, api_key).start())
        for s in servers:
            s.wait_ready(timeout)
        if warm:
            for s in servers:
                s.warm(timeout)
    except BaseException:
        ServerSet(servers).stop()
        raise
    return ServerSet(servers)


@contextlib.contextmanager
def serving(models: Sequence[str], replicas: int = 1, **kw: Any) -> Iterator[ServerSet]:
    """`with serving(["smollm2-135m"], replicas=2) as servers: ...` — stopped on exit."""
    servers = start_servers(models, replicas, **kw)
    try:
        yield servers
    finally:
        servers.stop()


def config_for_servers(
    config: Any, servers: ServerSet, *, fallback_to_local: bool = False, api_key_env: str | None = None
) -> Any:
    """A copy of a MoA config whose `local/<name>` agents go to the servers instead.

    A model with one replica becomes `openai/<name>` with its `api_base` (a direct call);
    a model with several replicas becomes the Router group `server/<name>`, listed in
    `deployments`. With `fallback_to_local`, each group falls back to the in-process
    `local/<name>` when every replica fails. `api_key_env` names the variable holding the
    key the servers were started with.
    """
    from moa_core.config import MoAConfig

    by_model = servers.by_model()
    deployments = servers.deployments(api_key_env)
    data = config.model_dump(mode="json")
    used: set[str] = set()

    def rewrite(agent: dict[str, Any]) -> dict[str, Any]:
        model = agent["model"]
        if not model.startswith(f"{local.PROVIDER}/"):
            return agent
        name = model.split("/", 1)[1]
        reps = by_model.get(name)
        if not reps:
            return agent
        agent = dict(agent)
        if len(reps) == 1:
            agent["model"], agent["api_base"] = reps[0].litellm_model, reps[0].api_base
            agent["api_key_env"] = api_key_env
        else:
            agent["model"] = group_name(name)
            agent["api_base"] = agent["api_key_env"] = None
            used.add(agent["model"])
        # The server's context is its n_ctx; litellm does not know `openai/<name>`.
        agent["context_window"] = agent.get("context_window") or reps[0].n_ctx
        # A base model keeps its few-shot frame once it is no longer `local/`.
        if not agent.get("prompt_style") and local.prompt_style(name) != "chat":
            agent["prompt_style"] = local.prompt_style(name)
        return agent

    for layer in data["layers"]:
        layer["proposers"] = [rewrite(a) for a in layer["proposers"]]
    data["aggregator"] = rewrite(data["aggregator"])
    data["baselines"] = [rewrite(a) for a in data.get("baselines", [])]
    if used:
        data["deployments"] = {**data.get("deployments", {}), **{g: deployments[g] for g in sorted(used)}}
        if fallback_to_local:
            data["fallbacks"] = {
                **data.get("fallbacks", {}),
                **{g: [f"{local.PROVIDER}/{g.split('/', 1)[1]}"] for g in sorted(used)},
            }
    return MoAConfig.model_validate(data)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="moa serve-models",
        description="Serve the bundled local models over HTTP (llama-cpp-python's OpenAI-compatible server), "
        "one process per model and replica on 127.0.0.1. Stops with Ctrl-C.",
    )
    p.add_argument(
        "models", nargs="*", help="bundled model names (default: every installed one): " + ", ".join(local.LOCAL_MODELS)
    )
    p.add_argument("--replicas", type=int, default=1, help="processes per model (default 1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"first port; the next free ones follow (default {DEFAULT_PORT}; 0 = any free ports)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else exposes the models to the network)",
    )
    p.add_argument(
        "--n-ctx", type=int, default=DEFAULT_N_CTX, help=f"context size per server (default {DEFAULT_N_CTX})"
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding a key the servers require (Bearer); the written config names it",
    )
    p.add_argument(
        "--preset", default=None, help="also write this preset, rewritten to use the servers, to --write-config"
    )
    p.add_argument(
        "--write-config", default=None, metavar="PATH", help="where to write the rewritten preset (YAML or .json)"
    )
    p.add_argument(
        "--fallback-to-local",
        action="store_true",
        help="in the written config, fall back to the in-process local/<name> when every replica fails",
    )
    p.add_argument("--log-dir", default=None, help="server logs and config files (default: a temp dir)")
    p.add_argument("--once", action="store_true", help="start, print, stop (for checks and tests)")
    return p.parse_args(list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    import yaml

    args = _parse_args(argv)
    installed = [s.name for s in local.available_local_models()]
    models = args.models or installed
    if not models:
        print("no bundled model is installed (make install puts them in)", file=sys.stderr)
        return 2
    missing = [m for m in models if m not in installed]
    if missing:
        print(
            f"not installed or unknown: {', '.join(missing)} (installed: {', '.join(installed) or 'none'})",
            file=sys.stderr,
        )
        return 2
    if args.preset and not args.write_config:
        print("--preset needs --write-config PATH", file=sys.stderr)
        return 2
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(f"{args.api_key_env} is not set", file=sys.stderr)
            return 2
    log_dir = Path(args.log_dir) if args.log_dir else None
    print(f"starting {len(models)} model(s) x {args.replicas} replica(s)...", flush=True)
    try:
        servers = start_servers(
            models, args.replicas, port=args.port, n_ctx=args.n_ctx, host=args.host, workdir=log_dir, api_key=api_key
        )
    except (ServerError, local.LocalModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    old = signal.signal(signal.SIGTERM, _stop)
    try:
        for s in servers.servers:
            print(f"  {s.litellm_model:<28} api_base {s.api_base}   (pid {s.proc.pid if s.proc else '?'})")
        print(f"logs: {servers.servers[0].workdir}")
        print(
            "\n# Paste into a MoA config: agents use `model: server/<name>`, or one replica directly as "
            "`model: openai/<name>` with its api_base."
        )
        print(yaml.safe_dump({"deployments": servers.deployments(args.api_key_env)}, sort_keys=False), flush=True)
        if args.preset:
            from moa_core.config import load_preset, save_config

            cfg = config_for_servers(
                load_preset(args.preset),
                servers,
                fallback_to_local=args.fallback_to_local,
                api_key_env=args.api_key_env,
            )
            path = save_config(cfg, args.write_config)
            print(f"wrote {path} ({args.preset} over the servers)", flush=True)
        while not stop and not args.once:
            dead = [s for s in servers.servers if not s.running]
            if dead:
                for s in dead:
                    print(f"{s.name} replica {s.replica + 1} (port {s.port}) exited:\n{s.log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        print("stopping servers...", flush=True)
        servers.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
