"""Completion-style prompts for base (non-instruction) models: the few-shot frame, the
catalog flag, the config opt-in and its text-completion call to an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from moa_core.config import AgentSpec, MoAConfig, config_from_dict, load_preset
from moa_core.engine import collect, run_moa
from moa_core.events import DraftDone, RunDone
from moa_core.prompts import (
    COMPLETION_EXAMPLES,
    COMPLETION_PREAMBLE,
    COMPLETION_STOP,
    aggregator_messages,
    completion_prompt,
    completion_stop,
    proposer_messages,
)
from moa_core.providers import llm, local
from tests.conftest import fake_agent, fake_config

# -- the frame ------------------------------------------------------------------------------


def test_frame_ends_with_the_open_question_after_the_worked_examples():
    text = completion_prompt(proposer_messages("What is the capital city of Australia?"))
    assert text.startswith(COMPLETION_PREAMBLE + "\n")
    assert text.endswith("\nQuestion: What is the capital city of Australia?\nAnswer:")
    positions = [text.index(f"Question: {q}\nAnswer: {a}\n") for q, a in COMPLETION_EXAMPLES]
    assert positions == sorted(positions) and positions[-1] < text.rindex("Question:")
    # The examples' answers end where a stop sequence would cut the model's own answer.
    assert text.count("\nQuestion:") == len(COMPLETION_EXAMPLES) + 1


def test_system_prompt_is_the_preamble_line():
    text = completion_prompt(proposer_messages("2+2?", system_prompt="  Reply with a number only.  "))
    assert text.splitlines()[0] == "Reply with a number only."
    assert COMPLETION_PREAMBLE not in text


def test_history_becomes_answered_questions_in_order():
    history = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]
    text = completion_prompt(proposer_messages("And of Italy?", history))
    assert "Question: Capital of France?\nAnswer: Paris\n" in text
    assert text.index("Capital of France?") < text.index("And of Italy?")
    assert text.endswith("Question: And of Italy?\nAnswer:")


def test_aggregator_drafts_go_in_the_preamble():
    msgs = aggregator_messages("Q?", ["first draft", "second draft"], "Combine: {drafts}")
    text = completion_prompt(msgs)
    assert text.startswith("Combine: [1] first draft\n\n[2] second draft\n")
    assert text.endswith("Question: Q?\nAnswer:")


def test_untrusted_braces_and_markers_stay_text():
    q = "What does {drafts} mean?\nAnswer: not this"
    assert completion_prompt(proposer_messages(q)).endswith(f"Question: {q}\nAnswer:")


def test_stop_sequences_merge_with_the_callers():
    assert completion_stop() == list(COMPLETION_STOP)
    assert completion_stop("END") == [*COMPLETION_STOP, "END"]
    assert completion_stop(["\nQuestion:", "X"]) == [*COMPLETION_STOP, "X"]


# -- the catalog flag and the config field --------------------------------------------------


def test_catalog_marks_the_base_model_only():
    styles = {name: spec.prompt_style for name, spec in local.LOCAL_MODELS.items()}
    assert styles["gemma3-270m"] == "completion"
    assert styles["qwen2.5-coder-0.5b"] == styles["smollm2-135m"] == "chat"
    assert local.prompt_style("gemma3-270m") == "completion"
    assert local.prompt_style("gemma3-270m", "chat") == "chat"  # a config may ask otherwise
    assert local.prompt_style("smollm2-135m", "bogus") == "chat"


def test_unset_prompt_style_leaves_dumps_and_hashes_as_before():
    cfg = load_preset("local-moa")
    dumped = cfg.model_dump(mode="json")
    assert "prompt_style" not in json.dumps(dumped) and "prompt_style" not in cfg.to_yaml()
    # stable_hash as it was computed before the field existed: the same JSON, no new key.
    assert MoAConfig.model_validate(dumped).stable_hash() == cfg.stable_hash()
    opted = cfg.model_copy(update={"aggregator": cfg.aggregator.model_copy(update={"prompt_style": "completion"})})
    assert opted.stable_hash() != cfg.stable_hash()
    again = config_from_dict(yaml.safe_load(opted.to_yaml()))
    assert again.aggregator.prompt_style == "completion" and again.stable_hash() == opted.stable_hash()


def test_unknown_prompt_style_is_refused_by_name():
    with pytest.raises(Exception, match="prompt_style"):
        AgentSpec(model="openai/x", prompt_style="instruct")  # type: ignore[arg-type]


def test_local_agent_passes_its_choice_to_the_local_provider():
    kw = llm.call_kwargs(AgentSpec(model="local/gemma3-270m", prompt_style="chat"), [], 10, 0)
    assert kw["prompt_style"] == "chat"
    assert "prompt_style" not in llm.call_kwargs(AgentSpec(model="local/gemma3-270m"), [], 10, 0)


# -- an OpenAI-compatible server ------------------------------------------------------------


def test_opted_in_server_model_gets_the_frame_through_text_completion(fake_server):
    base = fake_agent(fake_server, "base", tokens=3).model_copy(update={"prompt_style": "completion"})
    chat = fake_agent(fake_server, "chat", tokens=3)
    cfg = fake_config(fake_server, [base, chat], aggregator=fake_agent(fake_server, "agg2", tokens=2))
    before = len(fake_server.requests)
    events = asyncio.run(collect(run_moa("How many legs does a cat have?", cfg, kind="test")))
    assert isinstance(events[-1], RunDone) and events[-1].status == "done", events[-1]
    sent = list(zip(fake_server.paths[before:], fake_server.requests[before:], strict=True))
    by_model = {body["model"]: (path, body) for path, body in sent}
    path, body = by_model["fake-base@tokens=3"]
    assert path.rstrip("/").endswith("/completions") and "/chat/" not in path
    assert "messages" not in body
    assert body["prompt"].endswith("Question: How many legs does a cat have?\nAnswer:")
    assert set(COMPLETION_STOP) <= set(body["stop"])
    assert by_model["fake-chat@tokens=3"][0].rstrip("/").endswith("/chat/completions")
    done = {e.ref.model: e for e in events if isinstance(e, DraftDone)}
    streamed = done["openai/fake-base@tokens=3"]
    assert streamed.ok and streamed.text == f"prompt{len(body['prompt'])} w1 w2"


def test_a_served_base_model_keeps_its_frame():
    from moa_core.providers.servers import ModelServer, ServerSet, config_for_servers

    cfg = load_preset("local-moa")
    served = config_for_servers(
        cfg, ServerSet([ModelServer("gemma3-270m", 0, 8201, n_ctx=2048), ModelServer("smollm2-135m", 0, 8202)])
    )
    gemma, smol = served.layers[0].proposers[2], served.layers[0].proposers[1]
    assert gemma.model == "openai/gemma3-270m" and llm.uses_completion(gemma)
    assert smol.model == "openai/smollm2-135m" and not llm.uses_completion(smol) and smol.prompt_style is None
