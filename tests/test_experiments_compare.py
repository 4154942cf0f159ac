"""``grpo compare`` end to end on a tiny budget: files, table, curves, G sweep, resume."""

import csv
import io

import pytest

from grpo.cli import main
from grpo.utils.io import read_json, read_jsonl

TOTAL, EVERY, SEEDS = 2500, 1000, 2
POINTS = [1000, 2000, 2500]  # every 1,000 steps, and always the end of the budget


def test_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--env", "CartPole-v1", "--algos", "grpo", "ppo", "--group-sizes", "2", "4",
            "--seeds", str(SEEDS), "--total-steps", str(TOTAL), "--eval-every", str(EVERY), "--jobs", "2",
            "--set", "ppo.epochs=2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "grpo G=4" in printed and "seeds solved" in printed

    labels = ["grpo G=2", "grpo G=4", "ppo"]
    for name in ("table.md", "table.csv", "summary.json", "plan.json", "curves.png", "curves.svg",
                 "group_sweep.png", "group_sweep.svg"):
        assert (out / name).stat().st_size > 0, name

    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["label"] for r in rows] == labels
    assert all(int(r["seeds"]) == SEEDS and 0 <= int(r["solved"]) <= SEEDS for r in rows)
    assert all(float(r["train_wall_s"]) > 0 and float(r["steps_per_s"]) > 0 and float(r["peak_rss_mb"]) > 50 for r in rows)
    # GRPO's rows name the tuned mode, read from each run's config.json, and say what it means
    assert [r["mode"] for r in rows] == ["timestep, token-mean", "timestep, token-mean", ""]
    md = (out / "table.md").read_text().splitlines()
    assert len(md) == 2 + len(labels) + 2 and md[-1].startswith("GRPO mode: advantage estimator")

    summary = read_json(out / "summary.json")
    assert summary["meta"]["host_before"]["cpus"] >= 1 and summary["meta"]["jobs"] == 2
    assert [c["label"] for c in summary["curves"]] == labels
    for c in summary["curves"]:
        assert c["steps"] == POINTS
        assert len(c["wall"]) == len(c["median"]) == len(c["low"]) == len(c["high"]) == len(POINTS)
        assert all(lo <= m <= hi for lo, m, hi in zip(c["low"], c["median"], c["high"]))
        assert c["wall"] == sorted(c["wall"])
    # The table's medians come from the run folders.
    runs = summary["runs"]
    assert len(runs) == len(labels) * SEEDS
    g4 = [r for r in runs if r["label"] == "grpo G=4"]
    assert sorted(r["seed"] for r in g4) == [0, 1]
    for r in g4:
        cfg = read_json(out / r["folder"] / "config.json")
        assert cfg["algo_config"]["group_size"] == 4
        assert [e["env_steps"] for e in read_jsonl(out / r["folder"] / "eval.jsonl")] == POINTS
    ppo_cfg = read_json(out / "runs/CartPole-v1/ppo/seed0/config.json")["algo_config"]
    assert ppo_cfg["epochs"] == 2
    final = sorted(r["final_eval"] for r in runs if r["label"] == "ppo")
    assert float(rows[2]["final_eval"]) == sum(final) / 2

    # The same folder again: refused without --resume; with it, nothing is rerun.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/summary.json")}
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/summary.json")} == mtimes


def test_compare_fails_early_on_bad_input(tmp_path, capsys):
    assert main(["compare", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "a")]) == 2
    assert "unknown gymnasium environment" in capsys.readouterr().err
    assert main(["compare", "--set", "grpo.group_size=1", "--out", str(tmp_path / "b")]) == 2
    assert "group_size must be >= 2" in capsys.readouterr().err
    assert main(["compare", "--set", "ppo.no_such=1", "--out", str(tmp_path / "c")]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_default_comparison_learns(tmp_path):
    """The main job's setting (GRPO vs PPO, CartPole-v1, 3 seeds, 50k steps) solves CartPole."""
    out = tmp_path / "main"
    assert main(["compare", "--out", str(out), "--no-progress"]) == 0
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO((out / "table.csv").read_text()))}
    assert set(rows) == {"grpo", "ppo"}
    for row in rows.values():
        assert int(row["seeds"]) == 3 and int(row["solved"]) >= 2
        assert float(row["stable_solve_step"]) <= 40_000 and float(row["final_eval"]) >= 475
