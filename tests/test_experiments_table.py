"""The comparison table's maths on hand-made runs: medians, stable solve, seeds solved, curves."""

import csv
import io
import math

import pytest

from grpo.control.train import algo_config
from grpo.experiments.cli import parse_sets
from grpo.experiments.compare import plan
from grpo.experiments.table import (
    Run, curve, median, median_solve_step, solve_step, summarize, table, to_csv, to_markdown, to_text)


def make_run(label, means, env="CartPole-v1", threshold=475.0, seed=0, wall=10.0, steps_per_s=1000.0, every=5000,
             rss=300.0, params=4610):
    evals = [{"env_steps": every * (k + 1), "train_wall_s": wall * (k + 1) / len(means), "eval_return_mean": m}
             for k, m in enumerate(means)]
    summary = {"algo": label, "env": env, "seed": seed, "final_eval": means[-1], "train_wall_s": wall,
               "steps_per_s": steps_per_s, "reward_threshold": threshold, "param_count": params,
               "peak_rss_mb": rss, "stable_solve_step": None}
    return Run(label, summary, evals)


def test_median_ignores_missing_values():
    assert median([5, None, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5
    assert median([]) is None and median([None, None]) is None


@pytest.mark.parametrize("steps, expected", [
    ([15000, 15000, 45000, 50000, None], 45000),  # the README's article-PPO row: "never" counts as +inf
    ([None, None, 10000], None),                   # most seeds never solve: the median is "never"
    ([30000, 10000, 20000, None], 25000),          # even count: mean of the two middle values
    ([10000, 20000, None, None], None),            # the upper middle value is +inf
    ([], None),
])
def test_median_solve_step_counts_never_as_infinity(steps, expected):
    assert median_solve_step(steps) == expected


def test_solve_step_is_recomputed_from_the_evaluations():
    # Dips below the threshold reset it: solved for good from the 4th evaluation (20,000 steps).
    assert solve_step(make_run("a", [100, 500, 300, 500, 480])) == 20000
    assert solve_step(make_run("a", [500, 500, 400])) is None
    # Pendulum-v1 has no registered threshold; the table uses -200 for it.
    pendulum = make_run("a", [-1200, -400, -180, -150], env="Pendulum-v1", threshold=None)
    assert solve_step(pendulum) == 15000
    # An env with no threshold at all never counts as solved.
    assert solve_step(make_run("a", [1, 2], env="Custom-v0", threshold=None)) is None


def test_summarize_hand_made_seeds():
    runs = [
        make_run("grpo", [200, 480, 500], seed=0, wall=8.0, steps_per_s=12000, rss=300),   # solves at 10,000
        make_run("grpo", [100, 300, 500], seed=1, wall=10.0, steps_per_s=10000, rss=310),  # solves at 15,000
        make_run("grpo", [100, 200, 300], seed=2, wall=12.0, steps_per_s=8000, rss=305),   # never
    ]
    row = summarize(runs)
    assert (row.env, row.label, row.seeds, row.solved) == ("CartPole-v1", "grpo", 3, 2)
    assert row.stable_solve_step == 15000  # 10k, 15k, inf -> 15k
    assert (row.stable_solve_min, row.stable_solve_max) == (10000, 15000)
    assert row.final_eval == 500 and row.train_wall_s == 10.0 and row.steps_per_s == 10000
    assert row.peak_rss_mb == 305 and row.param_count == 4610 and row.threshold == 475


def test_table_groups_by_env_and_label_in_order():
    runs = [make_run("grpo", [500]), make_run("ppo", [100]), make_run("grpo", [500], seed=1),
            make_run("grpo", [-90], env="Acrobot-v1", threshold=-100)]
    rows = table(runs)
    assert [(r.env, r.label, r.seeds, r.solved) for r in rows] == [
        ("CartPole-v1", "grpo", 2, 2), ("CartPole-v1", "ppo", 1, 0), ("Acrobot-v1", "grpo", 1, 1)]


def test_curve_median_and_band_per_evaluation_point():
    runs = [make_run("ppo", [10, 20, 30], wall=3.0), make_run("ppo", [30, 60, 90, 120], wall=8.0),
            make_run("ppo", [20, 40, 50], wall=6.0)]
    c = curve(runs)
    assert c.steps == [5000, 10000, 15000]  # cut to the shortest run
    assert c.median == [20, 40, 50] and c.low == [10, 20, 30] and c.high == [30, 60, 90]
    # Seed 1's walls are 2, 4, 6, (8); seed 0's 1, 2, 3; seed 2's 2, 4, 6: medians 2, 4, 6.
    assert c.wall == pytest.approx([2.0, 4.0, 6.0])


def test_markdown_csv_and_text_agree():
    rows = table([make_run("grpo", [200, 500]), make_run("grpo", [500, 500], seed=1), make_run("ppo", [100, 200])])
    md = to_markdown(rows).splitlines()
    assert len(md) == 2 + len(rows) and md[1].startswith("|---")
    assert "| 2/2 (>= 475) | 7,500 (5,000-10,000) |" in md[2]
    assert "never" in md[3]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["label"] for r in parsed] == ["grpo", "ppo"]
    assert float(parsed[0]["stable_solve_step"]) == 7500 and parsed[1]["stable_solve_step"] == ""
    assert int(parsed[0]["solved"]) == 2 and math.isclose(float(parsed[1]["final_eval"]), 200)
    text = to_text(rows).splitlines()
    assert len(text) == 1 + len(rows) and text[0].startswith("env")


def test_plan_and_group_size_sweep():
    specs = plan(["CartPole-v1"], ["grpo", "ppo"], [0, 1], 1000, group_sizes=[2, 4],
                 overrides={"grpo": {"lr": 1e-3}})
    assert [(s.label, s.seed) for s in specs] == [("grpo G=2", 0), ("grpo G=2", 1), ("grpo G=4", 0), ("grpo G=4", 1),
                                                  ("ppo", 0), ("ppo", 1)]
    # The sweep keeps the tuned episodes per iteration (G x groups) and changes G only.
    tuned = algo_config("grpo", "CartPole-v1")
    episodes = tuned.group_size * tuned.groups
    assert specs[0].overrides == {"lr": 1e-3, "group_size": 2, "groups": episodes // 2}
    assert specs[2].overrides == {"lr": 1e-3, "group_size": 4, "groups": max(1, episodes // 4)}
    assert specs[4].overrides == {}
    fixed = plan(["CartPole-v1"], ["grpo"], [0], 1000, group_sizes=[32], overrides={"grpo": {"groups": 3}})
    assert fixed[0].overrides == {"groups": 3, "group_size": 32}
    assert plan(["CartPole-v1"], ["grpo"], [0], 1000, group_sizes=[32])[0].overrides["groups"] == 1
    assert specs[2].folder == "runs/CartPole-v1/grpo-G4/seed0"
    with pytest.raises(ValueError, match="include grpo"):
        plan(["CartPole-v1"], ["ppo"], [0], 1000, group_sizes=[2])
    with pytest.raises(ValueError, match=">= 2"):
        plan(["CartPole-v1"], ["grpo"], [0], 1000, group_sizes=[1])
    with pytest.raises(ValueError, match="unknown"):
        plan(["CartPole-v1"], ["sac"], [0], 1000)


def test_parse_sets():
    assert parse_sets(["grpo.lr=1e-3", "grpo.hidden=[32, 32]", "ppo.anneal-lr=no"]) == {
        "grpo": {"lr": 0.001, "hidden": [32, 32]}, "ppo": {"anneal_lr": False}}
    for bad in ("lr=1", "sac.lr=1", "grpo.lr"):
        with pytest.raises(ValueError, match="ALGO.FIELD=VALUE"):
            parse_sets([bad])


def _curve(label, median, low=None, high=None):
    from grpo.experiments.table import Curve

    n = len(median)
    return Curve("E", label, list(range(n)), [float(i) for i in range(n)], median, low or median, high or median, 475.0)


def test_y_limits_keep_a_learning_dip_and_cut_only_divergence():
    from grpo.experiments.plots import _y_limits

    # `grpo compare`'s CartPole: both start near 350, PPO's median dips to 162 (its worst seed to
    # 110) before solving; the dip stays in view (a floor of start - 0.5 x rise once hid it).
    learning = [_curve("grpo", [348, 472, 479, 500]), _curve("ppo", [381, 162, 343, 500], low=[154, 110, 127, 500])]
    low, high = _y_limits(learning, 475.0)
    assert low < 110 and high > 500
    # One policy diverges to -6,000 while the others live in [-200, 200]: the axis is cut above it.
    diverging = [_curve("a", [-150, 0, 150]), _curve("b", [-700, -3000, -6000])]
    low, high = _y_limits(diverging, 200.0)
    assert -6000 < low < -700 - 2 * (200 + 700) + 1 and high > 200


# ---------------------------------------------------------------- GRPO's mode is named with its results
TUNED_MODE = {"advantage": "timestep", "aggregation": "token-mean"}
PAPER = {"advantage": "outcome", "aggregation": "sequence-mean"}


def test_table_names_each_grpo_rows_mode_and_says_what_it_means():
    from grpo.experiments.table import MODE_NOTE

    runs = [make_run("grpo", [200, 500]), make_run("grpo", [500, 500], seed=1), make_run("grpo", [100, 500]),
            make_run("ppo", [100, 200])]
    runs[0].config = runs[1].config = dict(TUNED_MODE, gamma=0.98)
    runs[2].label, runs[2].summary["algo"], runs[2].config = "grpo paper", "grpo", PAPER
    runs[3].config = {"aggregation": "token-mean"}  # PPO has no GRPO mode
    rows = table(runs)
    assert [r.mode for r in rows] == ["timestep, token-mean", "paper: outcome, sequence-mean", None]
    md = to_markdown(rows).splitlines()
    assert "| GRPO mode |" in md[0]
    assert md[2].startswith("| CartPole-v1 | grpo | timestep, token-mean |")
    assert md[3].startswith("| CartPole-v1 | grpo paper | paper: outcome, sequence-mean |")
    assert md[4].startswith("| CartPole-v1 | ppo | - |")
    assert md[-1] == MODE_NOTE and "paper's is outcome, sequence-mean" in MODE_NOTE
    assert MODE_NOTE in to_text(rows)
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [r["mode"] for r in parsed] == ["timestep, token-mean", "paper: outcome, sequence-mean", ""]
    # seeds that ran in different modes under one label are not passed off as one
    runs[1].config = PAPER
    assert table(runs[:2])[0].mode == "timestep, token-mean / paper: outcome, sequence-mean"


def test_figures_name_each_grpo_lines_mode(monkeypatch, tmp_path):
    from grpo.experiments import plots

    grpo = [make_run("grpo G=2", [200, 500]), make_run("grpo G=4", [300, 500])]
    for r in grpo:
        r.summary["algo"], r.config = "grpo", TUNED_MODE
    curves = [curve([r]) for r in grpo] + [curve([make_run("ppo", [100, 200])])]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: figures.append(fig) or [])
    plots.plot_curves(curves, tmp_path / "c")
    plots.plot_group_sweep(curves[:2], table(grpo), tmp_path / "g")
    names = [[t.get_text() for t in fig.axes[0].get_legend().get_texts()] for fig in figures]
    assert names[0] == ["grpo G=2 (timestep, token-mean)", "grpo G=4 (timestep, token-mean)", "ppo"]
    assert names[1] == names[0][:2]
