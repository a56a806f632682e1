"""`moa eval` against the fake server: a config file, its aggregator alone, a fake judge."""

from __future__ import annotations

import json

import pytest
import yaml

from moa_core.cli import main
from moa_core.evaluation.records import eval_runs
from moa_core.store import open_db, votes_df
from tests.test_eval_runner import EvalFake


@pytest.fixture(scope="module")
def server():
    with EvalFake() as s:
        yield s


@pytest.fixture
def files(server, tmp_path):
    cfg = {
        "name": "fake-moa",
        "layers": [
            {
                "proposers": [
                    {"model": "openai/fake-p1@tokens=4", "api_base": server.url, "max_tokens": 16},
                    {"model": "openai/fake-p2@tokens=5", "api_base": server.url, "max_tokens": 16},
                ]
            }
        ],
        "aggregator": {"model": "openai/fake-agg@tokens=12", "api_base": server.url, "max_tokens": 16},
        "timeout": 10,
        "num_retries": 0,
    }
    (tmp_path / "moa.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "judge.yaml").write_text(
        yaml.safe_dump({"model": "openai/fake-judge@verdict=longer", "api_base": server.url})
    )
    qs = [{"id": f"q{i}", "question": f"Question {i}?", "category": "c1" if i < 3 else "c2"} for i in range(1, 6)]
    (tmp_path / "qs.jsonl").write_text("\n".join(json.dumps(q) for q in qs))
    return tmp_path


def run_cli(files, *extra: str) -> int:
    return main(
        [
            "eval",
            "--questions",
            str(files / "qs.jsonl"),
            "--contender",
            str(files / "moa.yaml"),
            "--contender",
            f"{files / 'moa.yaml'}:aggregator",
            "--judge",
            str(files / "judge.yaml"),
            "--database",
            f"sqlite:///{files / 'eval.db'}",
            *extra,
        ]
    )


def test_moa_eval_with_limit_then_resume(files, capsys):
    assert run_cli(files, "--limit", "3", "--concurrency", "2", "--name", "cli") == 0
    out = capsys.readouterr().out
    assert "cli" in out and "3 question(s) × 2 contenders" in out
    assert "Judged win rates" in out and "fake-moa" in out and "openai/fake-agg@tokens=12" in out
    # the aggregator alone gives an answer as long as the MoA's: the fake judge calls it a tie
    assert "(overall)" in out and "0/0/3" in out and "50% (13%–87%)" in out
    assert "Per question, on average" in out
    engine = open_db(f"sqlite:///{files / 'eval.db'}")
    runs = eval_runs(engine, "cli")
    assert sum(r["meta"]["eval_item"] == "answer" for r in runs) == 6
    assert sum(r["meta"]["eval_item"] == "judge" for r in runs) == 3
    votes = votes_df(engine, rater_kind="judges")
    assert len(votes) == 3 and set(votes["left_name"]) == {"fake-moa"}
    assert set(votes["right_name"]) == {"openai/fake-agg@tokens=12"} and set(votes["outcome"]) == {"tie"}

    # same command: nothing left to do
    assert run_cli(files, "--limit", "3", "--name", "cli") == 0
    assert "Resuming: 6 answer(s) and 3 judgement(s) already done." in capsys.readouterr().out
    # resume by name with a larger limit: only the new questions
    assert main(["eval", "--resume", "cli", "--limit", "5", "--database", f"sqlite:///{files / 'eval.db'}"]) == 0
    out = capsys.readouterr().out
    assert "4 new answer(s), 2 new judgement(s), 9 resumed" in out
    assert len(votes_df(engine, rater_kind="judges")) == 5


def test_moa_eval_default_name_resumes(files, capsys):
    assert run_cli(files, "--limit", "1", "--max-tokens", "8") == 0
    out = capsys.readouterr().out
    assert "qs: fake-moa vs openai/fake-agg@tokens=12 (judge openai/fake-judge@verdict=longer)" in out
    assert run_cli(files, "--limit", "1", "--max-tokens", "8") == 0
    assert "Resuming: 2 answer(s) and 1 judgement(s) already done." in capsys.readouterr().out


def test_moa_eval_bad_input(files, capsys):
    assert main(["eval", "--contender", "no-such-preset", "--database", f"sqlite:///{files / 'x.db'}"]) == 2
    assert "unknown contender 'no-such-preset'" in capsys.readouterr().err
    assert main(["eval", "--database", f"sqlite:///{files / 'x.db'}"]) == 2
    assert "at least one --contender" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--contender",
                str(files / "moa.yaml"),
                "--judge",
                "local/qwen2.5-coder-0.5b",
                "--questions",
                str(files / "missing.jsonl"),
                "--database",
                f"sqlite:///{files / 'x.db'}",
            ]
        )
        == 2
    )
    assert "missing.jsonl" in capsys.readouterr().err
    assert main(["eval", "--resume", "never-ran", "--database", f"sqlite:///{files / 'x.db'}"]) == 2
    assert "no stored evaluation named 'never-ran'" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(files, server, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    from sqlalchemy import text

    slow = yaml.safe_load((files / "moa.yaml").read_text())
    for agent in [*slow["layers"][0]["proposers"], slow["aggregator"]]:
        agent["model"] += ",delay=0.15"  # ~40 s in all: SIGINT lands long before the end
    (files / "slow.yaml").write_text(yaml.safe_dump(slow))
    db = f"sqlite:///{files / 'int.db'}"
    args = [
        "eval",
        "--questions",
        str(files / "qs.jsonl"),
        "--contender",
        str(files / "slow.yaml"),
        "--contender",
        f"{files / 'slow.yaml'}:aggregator",
        "--judge",
        str(files / "judge.yaml"),
        "--database",
        db,
        "--name",
        "sigint",
        "--concurrency",
        "1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moa_core.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        # As from a terminal: a SIGINT disposition of "ignore" left in this test process by
        # an earlier test would be inherited, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    engine = open_db(db)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        with engine.connect() as c:
            done = c.execute(text("select count(*) from run where status = 'done'")).scalar_one()
        if done >= 2:
            break
        time.sleep(0.1)
    assert done >= 2 and proc.poll() is None, proc.communicate()[0] if proc.poll() is not None else "no progress"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Interrupted" in out and "--resume" in out
    runs = eval_runs(engine, "sigint")
    assert runs and all(r["status"] != "running" for r in runs)
    finished = sum(r["status"] == "done" for r in runs)
    assert finished < 15

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Resuming:" in out and f"{finished} resumed" in out
    assert sum(r["status"] == "done" for r in eval_runs(engine, "sigint")) == 15  # 10 answers + 5 judgements
