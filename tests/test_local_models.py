"""Real local inference with the bundled GGUF models (llama-cpp), kept short to stay fast.

Outputs are capped (proposers <= 24 tokens, aggregator <= 32) and temperature is 0, so
the whole module runs in a few seconds per MoA run on 2 cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import pytest

from moa_core.config import AgentSpec, LayerSpec, MoAConfig
from moa_core.engine import collect, run_moa
from moa_core.events import ContextTrimmed, DraftDone, DraftStarted, LayerDone, RunDone, TokenDelta
from moa_core.providers import llm, local
from tests.conftest import requires_local

pytestmark = [pytest.mark.local_models, requires_local]

MODELS = ["local/qwen2.5-coder-0.5b", "local/smollm2-135m", "local/gemma3-270m"]
QUESTION = "Why is the sky blue?"


def agent(model: str, max_tokens: int = 24, **kw: object) -> AgentSpec:
    return AgentSpec(model=model, temperature=0.0, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


def local_config(proposers: list[AgentSpec], aggregator: AgentSpec | None = None, **kw: object) -> MoAConfig:
    return MoAConfig(
        name="local-test",
        layers=[LayerSpec(proposers=proposers)],
        aggregator=aggregator or agent("local/qwen2.5-coder-0.5b", max_tokens=32),
        num_retries=0,
        timeout=120,
        **kw,  # type: ignore[arg-type]
    )


def dones(events: list, role: str | None = None) -> list[DraftDone]:
    return [e for e in events if isinstance(e, DraftDone) and (role is None or e.ref.role == role)]


def busy_instances() -> list[str]:
    return [
        f"{name}#{i}"
        for name, pool in list(local._pools.items())
        for i, inst in enumerate(list(pool.instances))
        if inst.lock.locked()
    ]


@pytest.fixture(scope="module", autouse=True)
def warm_models():
    """Load (and SHA-check) one instance of each model once, outside the timed tests."""
    llm.ensure_ready()
    local.warm_up([m.split("/", 1)[1] for m in MODELS])


@pytest.fixture(scope="module")
def full_run() -> list:
    """One full MoA run (three local proposers + aggregator), shared by the tests that inspect it."""
    cfg = local_config([agent(m) for m in MODELS])
    return asyncio.run(collect(run_moa(QUESTION, cfg, kind="test")))


def test_full_local_run(full_run):
    done = full_run[-1]
    assert isinstance(done, RunDone) and done.status == "done", done
    props, aggs = dones(full_run, "proposer"), dones(full_run, "aggregator")
    assert sorted(d.ref.model for d in props) == sorted(MODELS)
    assert len(aggs) == 1
    for d in props + aggs:
        assert d.ok, (d.ref.model, d.error)
        assert d.text.strip(), f"{d.ref.model} answered nothing"
        assert d.usage.prompt_tokens > 0 and d.usage.completion_tokens > 0, (d.ref.model, d.usage)
        assert d.cost == 0
    for d in props:
        assert d.usage.completion_tokens <= 24
    assert aggs[0].usage.completion_tokens <= 32
    # streamed deltas add up to each call's text
    for d in props + aggs:
        assert "".join(e.text for e in full_run if isinstance(e, TokenDelta) and e.ref == d.ref) == d.text
    assert done.final_text == aggs[0].text and done.final_text.strip()
    assert done.totals.cost == 0 and done.totals.calls == 4 and done.totals.failed_calls == 0
    assert done.totals.completion_tokens == sum(d.usage.completion_tokens for d in props + aggs)
    assert [(e.ok, e.failed) for e in full_run if isinstance(e, LayerDone)] == [(3, 0)]


def test_local_proposers_overlap_in_time(full_run):
    starts = {e.ref: e.t for e in full_run if isinstance(e, DraftStarted) and e.ref.role == "proposer"}
    props = dones(full_run, "proposer")
    assert max(starts.values()) < min(d.ended_at for d in props), "a proposer started after another had finished"
    # Stronger: the models really generated at the same time (not queued behind one lock):
    # the token streams of at least two proposers interleave.
    spans = {}
    for ref in starts:
        times = [e.t for e in full_run if isinstance(e, TokenDelta) and e.ref == ref]
        assert times, f"{ref.model} streamed no tokens"
        spans[ref.model] = (times[0], times[-1])
    overlapping = [
        (a, b)
        for i, a in enumerate(spans)
        for b in list(spans)[i + 1 :]
        if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert overlapping, f"no two proposers generated at the same time: {spans}"


async def test_unknown_local_model_fails_only_its_draft():
    cfg = local_config(
        [agent("local/smollm2-135m"), agent("local/does-not-exist"), agent("local/gemma3-270m")],
        aggregator=agent("local/smollm2-135m", max_tokens=16),
    )
    events = await collect(run_moa(QUESTION, cfg))
    bad = [d for d in dones(events) if not d.ok]
    assert len(bad) == 1 and bad[0].ref.model == "local/does-not-exist"
    assert "does-not-exist" in bad[0].error and "unknown local model" in bad[0].error, bad[0].error
    good = [d for d in dones(events, "proposer") if d.ok]
    assert len(good) == 2 and all(d.text.strip() for d in good)
    assert [(e.ok, e.failed) for e in events if isinstance(e, LayerDone)] == [(2, 1)]
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done" and done.final_text.strip()
    assert done.totals.failed_calls == 1


async def test_context_trimming_with_a_real_local_model():
    # The engine sees a 256-token window (the model really has 4096): after the template,
    # the system prompt, the answer's max_tokens and the margin, ~25 tokens are left for
    # two drafts of up to 24 tokens, so they must be cut.
    agg = agent(
        "local/smollm2-135m",
        max_tokens=16,
        context_window=256,
        system_prompt="You are a careful assistant. Answer in one short paragraph of plain English, "
        "without lists or headings, and never repeat the question.",
    )
    cfg = local_config([agent("local/smollm2-135m"), agent("local/gemma3-270m")], aggregator=agg)
    events = await collect(run_moa("Explain in detail why the sky is blue.", cfg))
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert len(trimmed) == 1, [type(e).__name__ for e in events]
    t = trimmed[0]
    assert t.ref.role == "aggregator" and t.context_window == 256
    assert 0 <= t.tokens_after < t.tokens_before
    # the kept drafts fit what the window leaves (counted with the model's own tokenizer)
    fixed_budget = 256 - agg.max_tokens - 64
    assert t.tokens_after <= fixed_budget
    done = events[-1]
    assert isinstance(done, RunDone) and done.status == "done", done
    assert dones(events, "aggregator")[0].ok


async def test_cancelling_a_run_frees_every_local_instance():
    cfg = local_config(
        [agent(m, max_tokens=400) for m in MODELS], aggregator=agent("local/smollm2-135m", max_tokens=400)
    )
    gen = run_moa("Write a very long essay about the history of astronomy.", cfg)
    # Stop once every proposer is streaming: the worker checks for cancellation between
    # tokens, while a prompt evaluation (slow on a loaded machine) cannot be interrupted.
    streaming: set[str] = set()
    async for ev in gen:
        if isinstance(ev, (TokenDelta, DraftDone)) and ev.ref.role == "proposer":
            streaming.add(ev.ref.model)
            if len(streaming) == len(MODELS):
                break
    assert streaming == set(MODELS)
    assert busy_instances(), "expected the proposers to be generating when the run was stopped"
    t0 = time.monotonic()
    await gen.aclose()
    # Liveness, not speed: within ~10 s every instance is released (400 tokens would take longer).
    while busy_instances() and time.monotonic() - t0 < 10:
        await asyncio.sleep(0.05)
    assert not busy_instances(), f"instances still locked {time.monotonic() - t0:.1f}s after aclose: {busy_instances()}"
    for pool in local._pools.values():
        for inst in pool.instances:  # a free lock can be taken right away
            assert inst.lock.acquire(blocking=False)
            inst.lock.release()
    # the engine is usable again: a short run succeeds
    events = await collect(
        run_moa(
            QUESTION,
            local_config(
                [agent("local/smollm2-135m", max_tokens=8)], aggregator=agent("local/smollm2-135m", max_tokens=8)
            ),
        )
    )
    assert events[-1].status == "done" and events[-1].final_text.strip()


def test_a_call_stopped_mid_stream_raises_nothing_in_the_background(monkeypatch):
    """A vote or Stop ends the script run and its event loop while the worker thread is
    still generating: the worker must wind down without an exception in any thread."""
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    loop_closed = threading.Event()
    workers: list[threading.Thread] = []
    generate = local._generate

    def held_until_the_loop_is_closed(name, messages, params, emit, cancelled, *rest):
        workers.append(threading.current_thread())

        def emit_then_wait(item):
            emit(item)
            loop_closed.wait(timeout=60)  # the next token comes after the consumer's loop is gone

        generate(name, messages, params, emit_then_wait, cancelled, *rest)

    monkeypatch.setattr(local, "_generate", held_until_the_loop_is_closed)

    async def first_token() -> dict:
        messages = [{"role": "user", "content": QUESTION}]
        async for chunk in local.stream_local("smollm2-135m", messages, {"max_tokens": 16, "temperature": 0.0}):
            return chunk  # the stream is left open: asyncio.run closes it, then its loop
        raise AssertionError("no token")

    assert asyncio.run(first_token())["choices"]
    loop_closed.set()
    assert len(workers) == 1
    workers[0].join(timeout=60)
    assert not workers[0].is_alive()
    assert [f"{e.exc_type.__name__}: {e.exc_value}" for e in errors] == []
    assert not busy_instances()


# --- weights integrity (no real weights are touched) --------------------------------


def _spec(name: str, parts: list, sha: str) -> local.LocalModelSpec:
    return local.LocalModelSpec(name=name, title=name, sha256=sha, package="none", parts=lambda: list(parts))


def test_weights_path_refuses_a_corrupted_single_file(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "_verified", {})
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF not really a model")
    bad = _spec("corrupt-test", [f], "0" * 64)
    with pytest.raises(local.LocalModelError, match="SHA-256"):
        local.weights_path(bad)
    assert "corrupt-test" not in local._verified
    # the same file with its true hash is accepted (the check, not the file, refused it)
    good = _spec("intact-test", [f], hashlib.sha256(f.read_bytes()).hexdigest())
    assert local.weights_path(good) == f


def test_weights_path_refuses_corrupted_chunks_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "_verified", {})
    monkeypatch.setenv("MOA_MODEL_CACHE", str(tmp_path / "cache"))
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, p in enumerate(parts):
        p.write_bytes(f"chunk {i};".encode())
    whole = b"".join(p.read_bytes() for p in parts)
    bad = _spec("chunks-test", parts, hashlib.sha256(whole + b"x").hexdigest())
    with pytest.raises(local.LocalModelError, match="SHA-256"):
        local.weights_path(bad)
    assert not list((tmp_path / "cache").glob("chunks-test*")), "a file that failed the check was left behind"
    good = _spec("chunks-test", parts, hashlib.sha256(whole).hexdigest())
    path = local.weights_path(good)
    assert path.read_bytes() == whole and path.with_suffix(".sha256").exists()


def test_weights_path_refuses_missing_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "_verified", {})
    with pytest.raises(local.LocalModelError, match="missing"):
        local.weights_path(_spec("missing-test", [tmp_path / "nope.gguf"], "0" * 64))


def test_pool_acquire_honours_cancellation():
    """A waiter for a full pool gives up as soon as its call is cancelled."""
    pool = local.get_pool("smollm2-135m")
    assert not busy_instances()  # otherwise the acquisitions below would wait for a running call
    held = [pool.acquire(threading.Event()) for _ in range(pool.size)]
    try:
        cancelled = threading.Event()
        result: list[BaseException] = []

        def wait() -> None:
            try:
                pool.acquire(cancelled)
            except BaseException as exc:
                result.append(exc)

        th = threading.Thread(target=wait)
        th.start()
        time.sleep(0.1)
        cancelled.set()
        th.join(timeout=5)
        assert not th.is_alive() and result and isinstance(result[0], asyncio.CancelledError)
    finally:
        for inst in held:
            pool.release(inst)


def test_base_model_answers_instead_of_repeating_the_question():
    """Gemma 3 270M is a base model: through a chat template it wrote the question back;
    the catalog's few-shot completion frame makes it answer."""
    from moa_core.evaluation.judge import repeats_question
    from moa_core.evaluation.questions import load_bundled_set
    from moa_core.prompts import proposer_messages

    async def ask(question: str) -> llm.StreamResult:
        result = llm.StreamResult()
        async for _ in llm.stream_chat(
            agent("local/gemma3-270m", max_tokens=16), proposer_messages(question), result, 120, 0
        ):
            pass
        return result

    for q in load_bundled_set("moa-studio-30").questions[:3]:
        result = asyncio.run(ask(q.text))
        assert result.text.strip() and result.completion_tokens > 0, (q.id, result)
        assert not repeats_question(result.text, q.text), (q.id, result.text)
        assert "Question:" not in result.text, (q.id, result.text)  # the stop sequence ended it
