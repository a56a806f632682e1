"""`moa`: ask a question through a MoA config, list models, export the store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence

import moa_core  # noqa: F401  (offline litellm settings first)
from moa_core.config import DEFAULT_PRESET, ConfigError, MoAConfig, list_presets, load_config, load_preset
from moa_core.engine import RunInputError, run_moa
from moa_core.events import ContextTrimmed, DraftDone, DraftStarted, Event, RunDone, TokenDelta


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


def _config_from_args(args: argparse.Namespace) -> MoAConfig:
    try:
        return load_config(args.config) if args.config else load_preset(args.preset)
    except ConfigError as err:
        raise CliError(str(err)) from None


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def _summary_table(dones: Sequence[DraftDone]):
    from rich.table import Table

    table = Table(title="Calls", show_lines=False)
    for col in ("role", "layer", "model", "tokens in/out", "TTFT", "latency", "cost", "status"):
        table.add_column(col)
    for d in dones:
        table.add_row(
            d.ref.role, str(d.ref.layer + 1) if d.ref.role == "proposer" else "-", d.ref.name,
            f"{d.usage.prompt_tokens}/{d.usage.completion_tokens}", _fmt_s(d.ttft), _fmt_s(d.latency),
            "free" if d.cost == 0 else f"${d.cost:.5f}", "ok" if d.ok else f"error: {d.error}",
        )
    return table


async def _record(events: AsyncIterator[Event], save: bool) -> AsyncIterator[Event]:
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


async def _ask(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn

    console = Console(stderr=False)
    config = _config_from_args(args)
    from moa_core.providers.catalog import config_problems

    problems = config_problems(config)
    if problems:
        raise CliError("cannot run this config: " + "; ".join(problems))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} tok"),
                        TextColumn("{task.fields[state]}"), console=console, transient=True)
    tasks: dict[str, int] = {}
    dones: list[DraftDone] = []
    final: RunDone | None = None
    try:
        events = run_moa(args.question, config, kind="cli")
    except RunInputError as err:
        raise CliError(str(err)) from None
    try:
        with Live(progress, console=console, refresh_per_second=8, transient=True, redirect_stdout=False):
            async for ev in _record(events, not args.no_save):
                if isinstance(ev, DraftStarted):
                    tasks[ev.ref.call_id] = progress.add_task(f"{ev.ref.role} {ev.ref.name}", total=ev.params.get("max_tokens"), state="…")
                elif isinstance(ev, TokenDelta):
                    progress.advance(tasks[ev.ref.call_id], 1)
                elif isinstance(ev, ContextTrimmed):
                    console.print(f"[yellow]drafts trimmed for {ev.ref.name}: {ev.tokens_before} → {ev.tokens_after} tokens "
                                  f"(context {ev.context_window})[/yellow]")
                elif isinstance(ev, DraftDone):
                    dones.append(ev)
                    progress.update(tasks[ev.ref.call_id], state="done" if ev.ok else "error")
                    title = f"{ev.ref.role} · {ev.ref.name}" + (f" · layer {ev.ref.layer + 1}" if ev.ref.role == "proposer" else "")
                    body = ev.text if ev.ok else f"[error] {ev.error}\n{ev.text}"
                    style = {"aggregator": "green", "baseline": "blue"}.get(ev.ref.role, "white") if ev.ok else "red"
                    console.print(Panel(Markdown(body) if ev.ok else body, title=title, border_style=style))
                elif isinstance(ev, RunDone):
                    final = ev
    except RunInputError as err:
        raise CliError(str(err)) from None
    console.print(_summary_table(dones))
    if final is None:
        return 1
    t = final.totals
    console.print(f"run {final.run_id[:8]} {final.status}: {t.calls} calls, {t.prompt_tokens}+{t.completion_tokens} tokens, "
                  f"{'free' if t.cost == 0 else f'${t.cost:.4f}'}, {t.wall_time:.1f}s wall")
    if final.error:
        console.print(f"[red]{final.error}[/red]")
        return 1
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


def _export(args: argparse.Namespace) -> int:
    from moa_core.store.db import get_engine, init_db
    from moa_core.store.export import export_all

    engine = get_engine(args.database)
    init_db(engine)
    for path in export_all(engine, args.out, args.format):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moa", description="Mixture-of-Agents from the command line.")
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="run a question through a MoA config")
    ask.add_argument("question")
    src = ask.add_mutually_exclusive_group()
    src.add_argument("--preset", default=DEFAULT_PRESET, help=f"bundled preset (default {DEFAULT_PRESET})")
    src.add_argument("--config", help="a config file, JSON or YAML")
    ask.add_argument("--no-save", action="store_true", help="do not record the run in the database")
    models = sub.add_parser("models", help="list models and whether they can be used")
    models.add_argument("--available", action="store_true", help="only the ones usable now")
    exp = sub.add_parser("export", help="export runs, generations, ratings and votes")
    exp.add_argument("--out", default="export", help="output directory")
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    exp.add_argument("--database", help="SQLAlchemy URL (default: DATABASE_URL or data/moa.db)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "ask":
            return asyncio.run(_ask(args))
        if args.command == "models":
            return _models(args)
        if args.command == "export":
            return _export(args)
    except CliError as err:
        print(f"moa: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moa: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
