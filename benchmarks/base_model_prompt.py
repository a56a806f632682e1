"""Base-model prompt: each bundled model's share of correct short answers, chat template vs
the few-shot completion frame.

Run from the repo root: .venv/bin/python benchmarks/base_model_prompt.py [--max-tokens 48] [--limit N]

Questions: the first 10 of the bundled moa-studio-30 set (for the echo count) plus every
question of the set that has a reference (for the share correct; 11 of them). Each model
answers each one at temperature 0 (greedy, one seed) through llm.stream_chat, the engine's
path: "before" is the chat template for every model, "after" the catalog's style (rows
for models the catalog leaves on chat are the same, and run once; --all-styles runs every
model both ways). "correct" is
evaluation.judge.reference_check (the judge-free check of evaluations); "echoes" counts
answers to the first 10 questions that repeat the question (judge.repeats_question).
The catalog's choice for each model is marked with *.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from moa_core.config import AgentSpec  # noqa: E402
from moa_core.evaluation.judge import reference_check, repeats_question  # noqa: E402
from moa_core.evaluation.questions import Question, load_bundled_set  # noqa: E402
from moa_core.prompts import PROMPT_STYLES, PromptStyle, proposer_messages  # noqa: E402
from moa_core.providers import llm, local  # noqa: E402

ECHO_QUESTIONS = 10


async def answer(model: str, style: PromptStyle, question: str, max_tokens: int) -> str:
    agent = AgentSpec(model=model, temperature=0.0, max_tokens=max_tokens, prompt_style=style, extra={"seed": 1})
    result = llm.StreamResult()
    async for _ in llm.stream_chat(agent, proposer_messages(question), result, timeout=600, num_retries=0):
        pass
    return result.text


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--limit", type=int, default=0, help="only the first N selected questions (0: all)")
    ap.add_argument("--show", action="store_true", help="print every answer")
    ap.add_argument("--models", default="", help="comma-separated local model names (default: every installed one)")
    ap.add_argument("--all-styles", action="store_true", help="run chat-style models with the frame too")
    args = ap.parse_args()
    llm.ensure_ready()
    qs = list(load_bundled_set("moa-studio-30").questions)
    chosen: list[tuple[int, Question]] = [(i, q) for i, q in enumerate(qs) if i < ECHO_QUESTIONS or q.reference]
    if args.limit:
        chosen = chosen[: args.limit]
    specs = local.available_local_models()
    if args.models:
        by_name = {s.name: s for s in specs}
        specs = [by_name[n] for n in args.models.split(",") if n in by_name]
    local.warm_up([s.name for s in specs])
    rows = []
    for spec in specs:
        for style in PROMPT_STYLES if args.all_styles else sorted({"chat", spec.prompt_style}):
            correct = refs = echoes = echo_n = 0
            t0 = time.perf_counter()
            for i, q in chosen:
                text = await answer(spec.litellm_model, style, q.text, args.max_tokens)
                if args.show:
                    print(f"{spec.name} [{style}] {q.id}: {text.strip()[:100]!r}", flush=True)
                if q.reference:
                    refs += 1
                    correct += reference_check(text, q.reference)
                if i < ECHO_QUESTIONS:
                    echo_n += 1
                    echoes += repeats_question(text, q.text)
            mark = "*" if style == spec.prompt_style else ""
            rows.append((spec.name, style + mark, f"{correct}/{refs}", f"{echoes}/{echo_n}", time.perf_counter() - t0))
            print(f"  done {spec.name} {style}", file=sys.stderr, flush=True)
    print(f"\nmax_tokens={args.max_tokens}, temperature 0\n")
    print("| model | prompt | correct (reference) | echoes (first 10) | seconds |")
    print("|---|---|---|---|---|")
    for name, style, ok, echo, secs in rows:
        print(f"| {name} | {style} | {ok} | {echo} | {secs:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
