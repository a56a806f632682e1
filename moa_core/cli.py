"""`moa`: ask a question through a MoA config, evaluate configs, list models, export the store."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import moa_core  # noqa: F401  (offline litellm settings first)
from moa_core.config import DEFAULT_PRESET, AgentSpec, ConfigError, MoAConfig, list_presets, load_config, load_preset
from moa_core.engine import RunInputError, run_moa, validate_question
from moa_core.events import ContextTrimmed, DraftDone, DraftStarted, Event, RunDone, RunStarted, TokenDelta
from moa_core.inputs import printable, surrogate_problem, user_path
from moa_core.vocab import Role, RunStatus, values

if TYPE_CHECKING:  # the commands import these lazily, to keep `moa --help` fast
    import pandas as pd
    from rich.console import Console
    from rich.progress import TaskID
    from rich.table import Table
    from sqlalchemy import Engine

    from moa_core.analysis.objective import ObjectiveReport
    from moa_core.evaluation.plan import EvalPlan
    from moa_core.evaluation.records import EvalReport
    from moa_core.evaluation.runner import EvalProgress


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _config_from_args(args: argparse.Namespace) -> MoAConfig:
    try:
        return load_config(args.config) if args.config else load_preset(args.preset)
    except ConfigError as err:
        raise CliError(str(err)) from None


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _summary_table(dones: Sequence[DraftDone]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Calls", show_lines=False)
    for col in ("role", "layer", "model", "tokens in/out", "TTFT", "latency", "cost", "status"):
        table.add_column(col)
    for d in dones:
        table.add_row(
            d.ref.role,
            str(d.ref.layer + 1) if d.ref.role == Role.PROPOSER else "-",
            escape(d.ref.name),
            f"{d.usage.prompt_tokens}/{d.usage.completion_tokens}",
            _fmt_s(d.ttft),
            _fmt_s(d.latency),
            "free" if d.cost == 0 else f"${d.cost:.5f}",
            "ok" if d.ok else f"error: {escape(d.error or '')}",
        )
    return table


async def _record(events: AsyncIterator[Event], save: bool) -> AsyncGenerator[Event, None]:
    if not save:
        async for ev in events:
            yield ev
        return
    from moa_core.store.db import get_engine, init_db
    from moa_core.store.recorder import Recorder

    engine = get_engine()
    init_db(engine)
    async for ev in Recorder(engine).record(events):
        yield ev


def _question_from_args(args: argparse.Namespace) -> str:
    """The question argument, or standard input when it is `-` (`cat notes.md | moa ask -`)."""
    if args.question != "-":
        return str(args.question)
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError:
        raise CliError("standard input is not UTF-8 text") from None
    if not text.strip():
        raise CliError("no question on standard input")
    return text


def _run_json(
    run_id: str | None, config: MoAConfig, question: str, dones: Sequence[DraftDone], final: RunDone | None
) -> str:
    """The whole run as one JSON document (`moa ask --json`)."""
    import json

    calls = [
        {
            "role": d.ref.role,
            "layer": d.ref.layer,
            "slot": d.ref.slot,
            "model": d.ref.model,
            "label": d.ref.label,
            "ok": d.ok,
            "text": d.text,
            "error": d.error,
            "finish_reason": d.finish_reason,
            "prompt_tokens": d.usage.prompt_tokens,
            "completion_tokens": d.usage.completion_tokens,
            "cost": d.cost,
            "ttft": d.ttft,
            "latency": d.latency,
            "deployment": d.deployment,
        }
        for d in dones
    ]
    doc = {
        "run_id": run_id,
        "config": config.name,
        "question": question,
        "status": final.status if final else RunStatus.FAILED,
        "final_text": final.final_text if final else "",
        "error": final.error if final else "the run ended without a result",
        "totals": vars(final.totals) if final else None,
        "calls": calls,
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)


async def _ask(args: argparse.Namespace) -> int:
    from rich.console import Console

    # With --json, stdout carries only the JSON document; progress goes to stderr.
    console = Console(stderr=args.json)
    config = _config_from_args(args)
    question = _question_from_args(args)
    from moa_core.providers.catalog import config_problems

    problems = config_problems(config)
    if problems:
        raise CliError("cannot run this config: " + "; ".join(problems))
    try:
        validate_question(question)
    except RunInputError as err:
        raise CliError(str(err)) from None
    from moa_core.providers import local

    stages = [[a.model for a in config.layers[0].proposers] + [b.model for b in config.baselines]]
    stages += [[a.model for a in layer.proposers] for layer in config.layers[1:]] + [[config.aggregator.model]]
    with console.status("Loading local models…"):
        local.preload(local.instances_needed(stages))
    try:
        events = run_moa(question, config, kind="cli")
    except RunInputError as err:
        raise CliError(str(err)) from None
    try:
        run_id, dones, final = await _print_events(console, _record(events, not args.no_save), args.json)
    except RunInputError as err:
        raise CliError(str(err)) from None
    if args.json:
        print(_run_json(run_id, config, question, dones, final))
        return 0 if final is not None and final.status == RunStatus.DONE else 1
    return _print_summary(console, dones, final)


async def _print_events(
    console: Console, events: AsyncIterator[Event], json_mode: bool = False, unit: str = "tok"
) -> tuple[str | None, list[DraftDone], RunDone | None]:
    """A run's events on the terminal: a progress bar per call, then each call's text in a panel.

    `unit`: what a bar counts, "tok" (one per streamed delta) or "chars" (a replay's deltas
    are pieces of text, not tokens). Returns (run id, the calls' results, the run's end)."""
    from rich.live import Live
    from rich.markdown import Markdown
    from rich.markup import escape
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.text import Text

    from moa_core.ui.safe_text import safe_markdown

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} " + unit),
        TextColumn("{task.fields[state]}"),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}
    dones: list[DraftDone] = []
    final: RunDone | None = None
    run_id: str | None = None
    with Live(progress, console=console, refresh_per_second=8, transient=True, redirect_stdout=False):
        async for ev in events:
            if isinstance(ev, RunStarted):
                run_id = ev.run_id
            elif isinstance(ev, DraftStarted):
                total = ev.params.get("max_tokens") if unit == "tok" else None
                tasks[ev.ref.call_id] = progress.add_task(
                    f"{ev.ref.role} {escape(ev.ref.name)}", total=total, state="…"
                )
            elif isinstance(ev, TokenDelta):
                progress.advance(tasks[ev.ref.call_id], 1 if unit == "tok" else len(ev.text))
            elif isinstance(ev, ContextTrimmed):
                console.print(
                    f"[yellow]drafts trimmed for {escape(ev.ref.name)}: {ev.tokens_before} → {ev.tokens_after} tokens "
                    f"(context {ev.context_window})[/yellow]"
                )
            elif isinstance(ev, DraftDone):
                dones.append(ev)
                progress.update(tasks[ev.ref.call_id], state="done" if ev.ok else "error")
                if json_mode:
                    continue
                title = f"{ev.ref.role} · {escape(ev.ref.name)}" + (
                    f" · layer {ev.ref.layer + 1}" if ev.ref.role == Role.PROPOSER else ""
                )
                body = ev.text if ev.ok else f"[error] {ev.error}\n{ev.text}"
                style = {Role.AGGREGATOR: "green", Role.BASELINE: "blue"}.get(ev.ref.role, "white") if ev.ok else "red"
                # Names are rich markup-escaped, answers shown under the web UI's link policy.
                shown = Markdown(safe_markdown(body)) if ev.ok else Text(body)
                console.print(Panel(shown, title=title, border_style=style))
            elif isinstance(ev, RunDone):
                final = ev
    return run_id, dones, final


def _print_summary(console: Console, dones: Sequence[DraftDone], final: RunDone | None) -> int:
    """The calls table and the run's totals; the exit code of the run (1 if it failed)."""
    from rich.markup import escape

    console.print(_summary_table(dones))
    if final is None:
        return 1
    t = final.totals
    console.print(
        f"run {final.run_id[:8]} {final.status}: {t.calls} calls, {t.prompt_tokens}+{t.completion_tokens} tokens, "
        f"{'free' if t.cost == 0 else f'${t.cost:.4f}'}, {t.wall_time:.1f}s wall"
    )
    if final.error:
        console.print(f"[red]{escape(final.error)}[/red]")
        return 1
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from moa_core.replay import replay_events, timing_is_derived
    from moa_core.store.db import open_db
    from moa_core.store.queries import get_run

    if not args.speed >= 0:  # also NaN
        raise CliError("--speed must be 0 (instant) or more")
    engine = open_db(args.database)
    stored = get_run(engine, args.run_id)
    if stored is None:
        raise CliError(f"no run with id {args.run_id!r} (see `moa history`)")
    console = Console()
    run = stored["run"]
    speed = "instant" if args.speed == 0 else f"{args.speed:g}×"
    # The question is untrusted text: a Text, never rich markup.
    console.print(Text(f"replay of run {run['id'][:8]} ({speed}), no model is called: {run['question'][:200]}"))
    if timing_is_derived(stored):
        console.print(
            "[yellow]recorded before timing was kept: text streams at a uniform rate "
            "from each call's TTFT and latency[/yellow]"
        )
    _, dones, final = await _print_events(console, replay_events(stored, args.speed or None), unit="chars")
    _print_summary(console, dones, final)
    # The replay itself succeeded, whatever the original run's status was.
    return 0


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from moa_core.providers.catalog import discover

    configs = []
    for name in list_presets():
        try:
            configs.append(load_preset(name))
        except ConfigError:
            continue
    table = Table(title="Models")
    for col in ("model", "provider", "available", "note"):
        table.add_column(col)
    for m in discover(configs, include_unavailable=not args.available):
        table.add_row(m.model, m.provider, "yes" if m.available else "no", m.note)
    Console().print(table)
    return 0


TABLE_FORMATS = ("csv", "jsonl")
# store.queries.RATER_KINDS, spelled out so `moa --help` does not import the store (a test keeps them equal).
RATER_CHOICES = ("people", "judges", "all")
DATASET_FORMATS = ("dpo-jsonl", "dpo-parquet", "ratings-jsonl", "ratings-parquet")


def _export(args: argparse.Namespace) -> int:
    from moa_core.store.db import get_engine, init_db
    from moa_core.store.export import export_all

    dataset = args.format in DATASET_FORMATS
    if not dataset and (args.raters != "all" or args.question_set or args.ties_apart):
        raise CliError("--raters, --question-set and --ties-apart apply to the dpo-* and ratings-* formats")
    if args.ties_apart and not args.format.startswith("dpo-"):
        raise CliError("--ties-apart applies to the dpo-* formats")
    engine = get_engine(args.database)
    init_db(engine)
    if dataset:
        from moa_core.evaluation.feedback import export_dataset

        paths = export_dataset(
            engine,
            args.out,
            args.format,
            rater_kind=args.raters,
            question_set=args.question_set or None,
            apart=args.ties_apart,
        )
    else:
        try:
            paths = export_all(engine, args.out, args.format)
        except OSError as err:
            raise CliError(f"cannot write the export to {args.out}: {err.strerror or type(err).__name__}") from None
    for path in paths:
        print(path)
    return 0


def _export_run(args: argparse.Namespace) -> int:
    from moa_core.store.db import open_db
    from moa_core.store.html_export import export_run_html

    engine = open_db(args.database)
    try:
        print(export_run_html(engine, args.run_id, args.html))
    except KeyError:
        raise CliError(f"no run with id {args.run_id!r} (moa history lists them)") from None
    return 0


# ---------------------------------------------------------------- moa analyze


def _analyze(args: argparse.Namespace) -> int:
    from rich.console import Console

    from moa_core.analysis.agreement import ITEM_KINDS
    from moa_core.analysis.preference_report import preference_report
    from moa_core.evaluation.feedback import load_votes
    from moa_core.store.db import open_db

    if args.boot < 0:
        raise CliError("--boot must be 0 or more")
    if args.items not in ITEM_KINDS:
        raise CliError(f"--items must be one of {', '.join(ITEM_KINDS)}")
    engine = open_db(args.database)
    votes = load_votes(
        engine,
        rater_kind=args.raters,
        kind=args.kind or None,
        question_set=args.question_set or None,
        style=not args.no_style,
    )
    if args.category:
        votes = votes[votes["category"].isin(args.category)]
    console = Console()
    if votes.empty:
        console.print("No votes match these filters." if _filtered(args) else "No votes yet.")
        return 0
    report = preference_report(votes, n_boot=args.boot, seed=args.seed, style=not args.no_style, items=args.items)
    _print_preferences(console, report, args.boot)
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return bool(args.raters != "all" or args.kind or args.question_set or args.category)


def _rich_table(title: str, df: Any, fmt: dict[str, Any] | None = None) -> Any:
    """A rich table of ``df``; every cell is a Text, so names are never read as markup."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left")
    for col in df.columns:
        t.add_column(str(col), overflow="fold")
    for row in df.itertuples(index=False):
        t.add_row(*[Text((fmt or {}).get(c, _cell)(v)) for c, v in zip(df.columns, row, strict=True)])
    return t


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "–" if v != v else f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _print_preferences(console: Any, report: Any, n_boot: int) -> None:
    import math

    import pandas as pd
    from rich.text import Text

    from moa_core.analysis.preference_report import category_table

    pct = lambda x: "–" if x != x else f"{100 * x:.0f}%"  # noqa: E731
    pts = lambda x: "–" if x != x else f"{x:.0f}"  # noqa: E731

    def ci(lo: Any, hi: Any) -> list[str]:
        return [f"{a:.0f}–{b:.0f}" for a, b in zip(lo, hi, strict=True)]

    board = report.plain.board
    cols = {
        "rank": board["rank"].astype(int),
        "contender": board["contender"],
        "rating": board["rating"],
        "95% CI": ci(board["ci_low"], board["ci_high"]),
    }
    title = f"Leaderboard: Bradley–Terry, {report.votes:,} votes, 95% bootstrap CIs ({n_boot} resamples)"
    if report.comparison is not None:
        c = report.comparison.set_index("contender").loc[board["contender"]]
        cols |= {
            "rating (style ctrl)": c["rating_sc"].to_numpy(),
            "95% CI (style ctrl)": ci(c["ci_low_sc"], c["ci_high_sc"]),
            "rank (style ctrl)": c["rank_sc"].astype(int).to_numpy(),
        }
        title += "; with and without style control"
    cols |= {"battles": board["battles"].astype(int), "win rate": board["win_rate"]}
    fmt = {"rating": pts, "rating (style ctrl)": pts, "win rate": pct}
    console.print(_rich_table(title, pd.DataFrame(cols), fmt))
    if report.styled is not None and len(report.styled.coefficients):
        coef = report.styled.coefficients.assign(
            CI=lambda d: [f"{a:+.2f} to {b:+.2f}" for a, b in zip(d["ci_low"], d["ci_high"], strict=True)]
        )
        console.print(
            _rich_table(
                "Style effects (log-odds per unit of normalised difference (a-b)/(a+b); points = rating points)",
                coef[["feature", "coef", "CI", "points", "votes_with_difference"]],
                {"coef": lambda x: f"{x:+.3f}", "points": lambda x: f"{x:+.0f}"},
            )
        )
    needed = report.needed
    if len(needed):
        shown = needed.assign(
            votes_needed=[
                ("never (no gap)" if math.isinf(v) else "–" if v != v else f"{int(v):,}")
                for v in needed["votes_needed"]
            ]
        )
        console.print(
            _rich_table(
                "Votes needed: more head-to-head votes until the 95% interval of the rating gap excludes 0, "
                "at the current win rate (neighbours whose CIs overlap)",
                shown[["contender", "opponent", "rating_gap", "win_prob", "head_to_head", "votes_needed"]],
                {"rating_gap": pts, "win_prob": pct},
            )
        )
    cats = report.by_category["category"].unique()
    if len(cats) > 1:
        table = category_table(report.by_category, board)
        console.print(
            _rich_table(
                "Ratings by category (each fitted on its own votes)",
                table,
                dict.fromkeys(table.columns[1:], pts),
            )
        )
    ag = report.agreement
    o = ag.overall
    console.print(Text("Agreement", style="bold"))
    if o.items:
        console.print(
            Text(
                f"{o.items} item(s) rated by 2+ raters ({o.raters} raters, {o.ratings} ratings): raw agreement "
                f"{pct(o.agreement)}, Krippendorff's alpha {_cell(o.alpha)}, Fleiss' kappa {_cell(o.fleiss_kappa)} "
                f"(on the {o.fleiss_items} item(s) with {o.fleiss_raters} raters)."
            )
        )
    else:
        console.print(Text("No item has been rated by two raters yet: no inter-rater agreement."))
    if o.retest_items:
        console.print(
            Text(
                f"Repeated items: {o.retest_items}; the same rater agreed with themselves "
                f"{pct(o.retest_agreement)} of the time (kappa {_cell(o.retest_kappa)})."
            )
        )
    if len(ag.pairs):
        console.print(_rich_table("Cohen's kappa per rater pair", ag.pairs, {"agreement": pct}))

    def span(lo: float, hi: float) -> str:
        return "–" if lo != lo else f"{pct(lo)}–{pct(hi)}"

    raters = ag.raters.assign(
        left_ci=[span(a, b) for a, b in zip(ag.raters["left_low"], ag.raters["left_high"], strict=True)]
    )
    console.print(
        _rich_table(
            "Raters (left rate: share of decisive votes for the left answer, 95% CI)",
            raters[
                [
                    "rater",
                    "votes",
                    "tie_rate",
                    "both_bad_rate",
                    "left_rate",
                    "left_ci",
                    "repeat_votes",
                    "self_agreement",
                ]
            ],
            {"tie_rate": pct, "both_bad_rate": pct, "left_rate": pct, "self_agreement": pct},
        )
    )
    if len(ag.position):
        pos = ag.position.assign(
            CI=[span(a, b) for a, b in zip(ag.position["ci_low"], ag.position["ci_high"], strict=True)]
        )
        console.print(
            _rich_table(
                "Position bias: share of decisive choices for the answer shown first (50% = none)",
                pos[["rater", "decisive", "first_rate", "CI", "p_value"]],
                {"first_rate": pct, "p_value": lambda x: f"{x:.3g}"},
            )
        )
    if len(ag.judge_human):
        console.print(_rich_table("Judge–human agreement on the same items", ag.judge_human, {"agreement": pct}))


STATUS_STYLE: dict[str, str] = {
    RunStatus.DONE: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "yellow",
    RunStatus.INTERRUPTED: "bold magenta",
    RunStatus.RUNNING: "cyan",
}


def _history(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from moa_core.store.db import open_db
    from moa_core.store.queries import runs_df

    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    if args.status is not None and args.status not in values(RunStatus):
        raise CliError(f"unknown status {args.status!r}: one of {', '.join(values(RunStatus))}")
    engine = open_db(args.database)  # first open in this process: runs whose process is gone become interrupted
    df = runs_df(engine, status=args.status, limit=args.limit)
    console = Console()
    if df.empty:
        console.print("No runs" + (f" with status {args.status}." if args.status else " yet."))
        return 0
    table = Table(title=f"Runs, newest first ({len(df)})", title_justify="left")
    for col in ("when", "run", "kind", "status", "wall", "tokens", "question", "note"):
        table.add_column(col, overflow="fold")

    def line(x: object, n: int) -> Text:
        # Questions and errors are untrusted text: a Text is never parsed as rich markup.
        one = " ".join(str(x or "").split())
        return Text(one if len(one) <= n else one[: n - 1] + "…")

    for r in df.to_dict("records"):
        wall = r["wall_time"]
        status = str(r["status"])
        table.add_row(
            datetime.fromtimestamp(float(r["created_at"])).strftime("%Y-%m-%d %H:%M:%S"),
            str(r["id"]),
            str(r["kind"]),
            Text(status, style=STATUS_STYLE.get(status, "")),
            _fmt_s(None if wall is None or wall != wall else float(wall)),  # NaN: unknown
            str(int(r["prompt_tokens"]) + int(r["completion_tokens"])),
            line(r["question"], 60),
            line(r["error"], 100),
        )
    console.print(table)
    interrupted = int((df["status"] == RunStatus.INTERRUPTED).sum())
    if interrupted:
        console.print(
            Text(
                f"{interrupted} run(s) interrupted: their process stopped mid-run; the drafts they finished and "
                "the text streamed so far are kept (moa export, or History in the app).",
                style=STATUS_STYLE[RunStatus.INTERRUPTED],
            )
        )
    return 0


# ---------------------------------------------------------------- moa eval


def _judge_from_arg(args: argparse.Namespace) -> AgentSpec | None:
    """--judge MODEL | a YAML/JSON agent file | none -> AgentSpec or None."""
    from pydantic import ValidationError

    from moa_core.config import format_validation_error, load_data_file
    from moa_core.evaluation.judge_call import judge_agent

    ref = (args.judge or "").strip()
    if not ref or ref.lower() == "none":
        return None
    overrides = {"api_base": args.judge_api_base, "max_tokens": args.judge_max_tokens}
    path = user_path(ref)
    try:
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = load_data_file(path, "judge file") or {}
            if not isinstance(data, dict) or "model" not in data:
                raise CliError(f"{path}: a judge file is a mapping with at least 'model'")
            return judge_agent(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
        return judge_agent(ref, **overrides)
    except ValidationError as err:
        raise CliError(f"invalid judge: {format_validation_error(err)}") from None


def _eval_plan(args: argparse.Namespace, engine: Engine) -> EvalPlan:
    from moa_core.evaluation.contenders import (
        ContenderError,
        collaborativeness_contenders,
        resolve_contender,
        resolve_contenders,
        unique_names,
    )
    from moa_core.evaluation.questions import QuestionSetError
    from moa_core.evaluation.runner import EvalPlan, EvalPlanError, default_eval_name, load_questions, plan_from_store

    try:
        if args.resume:
            if args.contender or args.collab:
                raise CliError("--resume takes the stored plan; do not pass contenders with it")
            return plan_from_store(engine, args.resume, limit=args.limit)
        contenders = []
        pairs = args.pairs
        if args.collab:
            configs = resolve_contender(args.collab)
            if len(configs) != 1 or configs[0].config is None:
                raise CliError(f"--collab needs one MoA config, got {args.collab!r}")
            contenders += collaborativeness_contenders(configs[0].config)
            pairs = pairs or "vs_first"
        if args.contender:
            contenders += resolve_contenders(args.contender)
        if not contenders:
            raise CliError("give at least one --contender (a preset, a config file or a model string), or --collab")
        contenders = [c.with_max_tokens(args.max_tokens) for c in unique_names(contenders)]
        judge = _judge_from_arg(args)
        questions, source = load_questions(args.questions, args.limit)
        name = args.name or default_eval_name(questions.name, contenders, judge)
        return EvalPlan(name, questions, contenders, judge, pairs or "all", source=source, limit=args.limit)
    except (ContenderError, EvalPlanError, QuestionSetError, ConfigError) as err:
        raise CliError(str(err)) from None


def _problems(plan: EvalPlan) -> list[str]:
    from moa_core.providers.catalog import config_problems, model_available

    out: list[str] = []
    for c in plan.contenders:
        if c.config is not None:
            out += config_problems(c.config)
        elif c.agent is not None and "mock_response" not in c.agent.extra:
            ok, why = model_available(c.agent.model, c.agent.api_base)
            out += [] if ok else [why]
    if plan.judge is not None and "mock_response" not in plan.judge.extra:
        ok, why = model_available(plan.judge.model, plan.judge.api_base)
        out += [] if ok else [f"judge {why}"]
    return list(dict.fromkeys(out))


def _print_report(console: Console, report: EvalReport, plan: EvalPlan) -> None:
    from rich.table import Table
    from rich.text import Text

    from moa_core.evaluation.report import collab_display, cost_display, pairwise_display, reference_display

    def table(title: str, df: pd.DataFrame, fmt: dict[str, Callable[[Any], str]] | None = None) -> None:
        t = Table(title=title, title_justify="left")
        for col in df.columns:
            t.add_column(str(col), overflow="fold")
        for row in df.itertuples(index=False):
            # Cells hold contender names and other user text: plain Text, never markup.
            t.add_row(*[Text((fmt or {}).get(c, str)(v)) for c, v in zip(df.columns, row, strict=True)])
        console.print(t)

    if report.judged:
        table(
            f"Judged win rates ({report.judge}; both orders, disagreement = tie; 95% Wilson CI)",
            pairwise_display(report.pairwise),
        )
        if report.same_position:
            console.print(
                f"[yellow]Position bias: in {report.same_position} of {report.judged} judgement(s) the "
                "judge picked the same position (A or B) in both orders; those count as ties.[/yellow]"
            )
        if report.unparseable:
            console.print(
                f"[yellow]{report.unparseable} judgement(s) unparseable: kept out of the win rates, "
                "not counted as ties.[/yellow]"
            )
    elif plan.judge is not None:
        console.print("No judged pairs yet.")
    if not report.reference.empty:
        table("Reference check (short answers against the reference, no judge)", reference_display(report.reference))
    if report.objective is not None:
        _print_objective(console, report.objective, table)
    if not report.costs.empty:
        table("Per question, on average", cost_display(report.costs))
    if not report.collaborativeness.empty:
        table(
            "Collaborativeness (win rate against the full config: alone vs aggregating the others)",
            collab_display(report.collaborativeness),
        )
    judge = plan.judge.model if plan.judge else ""
    if judge.startswith("local/"):
        console.print(
            "[yellow]The judge is a tiny local model: its verdicts are weak evidence (position bias, "
            "shallow reading). Use a strong judge before drawing conclusions.[/yellow]"
        )


def _print_objective(console: Console, obj: ObjectiveReport, table: Callable[[str, pd.DataFrame], None]) -> None:
    """The "does it help?" section: accuracy with CIs, the paired comparisons, their words."""
    from moa_core.analysis.objective import display_paired, display_table

    table(
        f"Does it help? Right against the reference, {obj.questions} question(s) (95% Wilson CI)",
        display_table(obj.table),
    )
    if not obj.paired.empty:
        table(f"Per question against the best single model, {obj.best} (exact sign test)", display_paired(obj.paired))
    # Contender names are user text: printed as is, never as markup.
    console.print(obj.headline, markup=False, highlight=False, soft_wrap=True)
    for line in obj.lines:
        if line != obj.headline:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    for note in obj.notes:
        console.print(note, style="dim", markup=False, highlight=False, soft_wrap=True)


def _eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from moa_core.evaluation.records import eval_report
    from moa_core.evaluation.report import format_duration
    from moa_core.evaluation.runner import finished_items, run_evaluation
    from moa_core.store.db import StoreError, open_db

    console = Console()
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    try:
        engine = open_db(args.database)
    except StoreError as err:
        raise CliError(str(err)) from None
    plan = _eval_plan(args, engine)
    problems = _problems(plan)
    if problems:
        raise CliError("cannot run this evaluation: " + "; ".join(problems))
    answers_done, judged_done = finished_items(engine, plan)
    pairs = len(plan.pair_list())
    console.print(f"[bold]{plan.name}[/bold]", soft_wrap=True, highlight=False)
    console.print(
        f"{len(plan.questions)} question(s) × {len(plan.contenders)} contenders "
        f"({', '.join(c.name for c in plan.contenders)})"
        + (f", {pairs} pair(s) judged by {plan.judge.model} in both orders" if plan.judge else ", no judge"),
        soft_wrap=True,
        highlight=False,
    )
    if answers_done or judged_done:
        console.print(f"Resuming: {answers_done} answer(s) and {judged_done} judgement(s) already done.")
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task("evaluating", total=None, eta="–", info="")

    def on_progress(p: EvalProgress) -> None:
        extra = " · ".join(
            x
            for x in (
                f"{p.resumed} resumed" if p.resumed else "",
                f"{p.failed} failed" if p.failed else "",
                f"{p.unparseable} unparseable" if p.unparseable else "",
            )
            if x
        )
        progress.update(task, total=p.total, completed=p.done, eta=format_duration(p.eta), info=extra)

    started = time.monotonic()
    try:
        with progress:
            summary = asyncio.run(run_evaluation(engine, plan, concurrency=args.concurrency, on_progress=on_progress))
    except KeyboardInterrupt:
        console.print(
            f"[yellow]Interrupted. Finished items are stored; run the same command again, or "
            f'`moa eval --resume "{plan.name}"`, to continue.[/yellow]',
            soft_wrap=True,
        )
        return 130
    except StoreError as err:
        raise CliError(str(err)) from None
    done_line = (
        f"Done in {format_duration(time.monotonic() - started)}: {summary.answers_new} new answer(s), "
        f"{summary.judgements_new} new judgement(s), "
        f"{summary.answers_resumed + summary.judgements_resumed} resumed, "
        f"{summary.answers_failed + summary.judgements_failed} failed"
    )
    if summary.judgements_blocked:
        done_line += f", {summary.judgements_blocked} judgement(s) skipped for a missing answer"
    console.print(done_line + ".", soft_wrap=True)
    for message in summary.errors[:10]:
        console.print(f"[red]{message}[/red]")
    if not args.no_report:
        _print_report(console, eval_report(engine, plan.name, plan.judge.model if plan.judge else None), plan)
    failed = summary.answers_failed + summary.judgements_failed
    return 1 if failed else 0


# ---------------------------------------------------------------- moa campaign


def _campaign(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from moa_core.evaluation.campaign import campaign_from_evaluation
    from moa_core.store.campaigns import list_campaigns, progress
    from moa_core.store.db import open_db

    engine = open_db(args.database)
    console = Console()
    if args.from_eval:
        try:
            cid = campaign_from_evaluation(
                engine,
                args.from_eval,
                args.name,
                target_votes=args.target,
                selection="uniform" if args.uniform else "informative",
                instructions=args.instructions or "",
                double_rate=args.double_rate,
                repeat_rate=args.repeat_rate,
            )
        except ValueError as err:
            raise CliError(str(err)) from None
        print(f"{cid}\t/Campaign?c={cid}")
        return 0
    camps = list_campaigns(engine)
    if not camps:
        console.print("No campaigns yet: create one with `moa campaign --from-eval NAME`.")
        return 0
    table = Table(title=f"Campaigns, newest first ({len(camps)})", title_justify="left")
    for col in ("id", "name", "votes", "target", "pairs done", "raters", "uncertain", "selection"):
        table.add_column(col, overflow="fold")
    for c in camps:
        p = progress(engine, c.id)
        # Names are untrusted text: a Text is never parsed as rich markup.
        table.add_row(
            c.id, Text(c.name), str(p.votes), str(p.target), f"{p.pairs_done}/{p.pairs}", str(len(p.raters)),
            str(p.uncertain_pairs), c.selection,
        )  # fmt: skip
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moa", description="Mixture-of-Agents from the command line.")
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="run a question through a MoA config")
    ask.add_argument("question", help="the question, or - to read it from standard input")
    src = ask.add_mutually_exclusive_group()
    src.add_argument("--preset", default=DEFAULT_PRESET, help=f"bundled preset (default {DEFAULT_PRESET})")
    src.add_argument("--config", help="a config file, JSON or YAML")
    ask.add_argument("--no-save", action="store_true", help="do not record the run in the database")
    ask.add_argument("--json", action="store_true", help="print the run as one JSON document (progress on stderr)")
    models = sub.add_parser("models", help="list models and whether they can be used")
    models.add_argument("--available", action="store_true", help="only the ones usable now")
    ev = sub.add_parser(
        "eval",
        help="evaluate contenders over a question set, with a pairwise judge",
        description="Answer a question set with every contender, judge every pair in both orders, "
        "report win rates with 95% intervals. Interrupted evaluations resume: run the "
        "same command again, or use --resume NAME.",
    )
    ev.add_argument(
        "--questions",
        default="moa-studio-30",
        help="a bundled question set name or a JSONL file (default moa-studio-30)",
    )
    ev.add_argument(
        "--contender",
        action="append",
        default=[],
        metavar="SPEC",
        help="a preset or config file (MoA), CONFIG:aggregator / CONFIG:baselines / CONFIG:proposers "
        "(those models alone), or a litellm model string; repeat for each contender",
    )
    ev.add_argument(
        "--judge", help="judge model (litellm string) or a YAML/JSON agent file; omit or 'none' for no judge"
    )
    ev.add_argument("--judge-api-base", help="API base for the judge model (a self-hosted server)")
    ev.add_argument("--judge-max-tokens", type=int, help="max tokens of each judge reply (default 256)")
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("--concurrency", type=int, default=2, help="items (answers or judgements) in flight (default 2)")
    ev.add_argument("--name", help="evaluation name (default: derived from the questions, contenders and judge)")
    ev.add_argument("--max-tokens", type=int, help="cap every contender agent's max_tokens (quick runs)")
    ev.add_argument("--pairs", choices=("all", "vs_first"), help="judge all pairs (default) or each against the first")
    ev.add_argument(
        "--collab",
        metavar="CONFIG",
        help="collaborativeness: each proposer of CONFIG alone and as aggregator of the others, "
        "each judged against CONFIG",
    )
    ev.add_argument("--resume", metavar="NAME", help="continue a stored evaluation with its stored plan")
    ev.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    ev.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    hist = sub.add_parser("history", help="list recent runs and their status")
    hist.add_argument("--limit", type=int, default=20, help="how many runs, newest first (default 20)")
    hist.add_argument("--status", help="only runs with this status (running, done, failed, cancelled, interrupted)")
    hist.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    rep = sub.add_parser("replay", help="stream a stored run again as it was recorded (no model call)")
    rep.add_argument("run_id", help="the run's id (see `moa history`)")
    rep.add_argument(
        "--speed", type=float, default=1.0, help="times the recorded speed: 1, 2, 5, ...; 0 = instant (default 1)"
    )
    rep.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    exp = sub.add_parser(
        "export",
        help="export runs, generations, ratings and votes, or a training dataset",
        description="csv / jsonl: every table, one file each. dpo-jsonl / dpo-parquet: preference_pairs "
        "(prompt, chosen, rejected + metadata), one row per voted pair of answers. ratings-jsonl / "
        "ratings-parquet: rated_responses (prompt, response, score, rater + metadata).",
    )
    exp.add_argument("--out", default="export", help="output directory")
    exp.add_argument("--format", choices=(*TABLE_FORMATS, *DATASET_FORMATS), default="csv")
    exp.add_argument("--raters", choices=RATER_CHOICES, default="all", help="datasets: whose votes or ratings")
    exp.add_argument(
        "--question-set", action="append", default=[], metavar="NAME", help="datasets: only this question set (repeat)"
    )
    exp.add_argument(
        "--ties-apart", action="store_true", help="dpo-*: also write tie, both-bad and split pairs to preference_ties"
    )
    exp.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    exp_run = sub.add_parser("export-run", help="write one stored run as a self-contained HTML file")
    exp_run.add_argument("run_id", help="the run's id (moa history, or ?run=<id> in the app)")
    exp_run.add_argument("--html", required=True, metavar="PATH", help="the HTML file to write")
    exp_run.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    an = sub.add_parser(
        "analyze",
        help="leaderboards (with and without style control), votes needed, agreement and bias",
        description="Bradley–Terry leaderboard of the stored votes with bootstrap CIs, beside the "
        "style-controlled one; votes needed to separate neighbours; ratings by category; inter-rater "
        "agreement, rater consistency, position bias of people and judges, judge–human agreement.",
    )
    an.add_argument("--raters", choices=RATER_CHOICES, default="all", help="whose votes (default all)")
    an.add_argument("--kind", action="append", default=[], help="only votes from runs of this kind (repeat)")
    an.add_argument("--question-set", action="append", default=[], metavar="NAME", help="only this set (repeat)")
    an.add_argument("--category", action="append", default=[], help="only this category (repeat)")
    an.add_argument("--boot", type=int, default=200, help="bootstrap resamples (default 200)")
    an.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    an.add_argument("--no-style", action="store_true", help="skip the style-controlled leaderboard")
    an.add_argument(
        "--items",
        default="answers",
        help="agreement items: 'answers' (the same two answers, default) or 'question' (the same question "
        "and contenders, any answers)",
    )
    an.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    camp = sub.add_parser(
        "campaign",
        help="list rating campaigns, or open one over an evaluation's answers",
        description="Without --from-eval: every campaign with its progress. With it: a campaign over the "
        "evaluation's stored answers (run `moa eval` without a judge to generate them ahead); prints the "
        "campaign id and its page, /Campaign?c=<id>.",
    )
    camp.add_argument("--from-eval", metavar="NAME", help="the evaluation whose answers raters compare")
    camp.add_argument("--name", help="campaign name (default: the evaluation's)")
    camp.add_argument("--target", type=int, default=1, help="votes per pair (default 1)")
    camp.add_argument("--uniform", action="store_true", help="uniform sampling instead of the most informative pair")
    camp.add_argument("--instructions", help="instructions shown to raters")
    camp.add_argument("--double-rate", type=float, default=0.1, help="share of pairs shown to a second rater")
    camp.add_argument("--repeat-rate", type=float, default=0.03, help="chance a rater gets an earlier pair again")
    camp.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    sub.add_parser(
        "serve-models",
        add_help=False,
        help="serve the bundled models over HTTP (OpenAI-compatible); see `moa serve-models --help`",
    )
    return p


def _check_text_args(args: argparse.Namespace) -> None:
    """Every argument is text before anything uses it: bytes that are not UTF-8 reach
    Python as lone surrogates, which the store, the terminal and litellm cannot encode."""
    for name, value in vars(args).items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and (problem := surrogate_problem(v)):
                flag = name if name == "question" else "--" + name.replace("_", "-")
                raise CliError(f"argument {flag} {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    from moa_core.settings import SettingsError
    from moa_core.store.db import StoreError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve-models"]:  # its own parser, so `moa serve-models --help` lists its options
        from moa_core.providers.servers import main as serve_models

        return serve_models(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        _check_text_args(args)
        if args.command == "ask":
            return asyncio.run(_ask(args))
        if args.command == "replay":
            return asyncio.run(_replay(args))
        if args.command == "models":
            return _models(args)
        if args.command == "history":
            return _history(args)
        if args.command == "export":
            return _export(args)
        if args.command == "export-run":
            return _export_run(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "campaign":
            return _campaign(args)
    except (CliError, StoreError, SettingsError) as err:
        # StoreError: the database cannot be opened, migrated or written (one line, password
        # hidden); nothing was run or recorded half-way.
        print(f"moa: {printable(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moa: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
