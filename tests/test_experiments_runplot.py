"""``grpo plot``: several runs' logged metrics from their folders (either side), one panel per metric."""

from __future__ import annotations

import json

import pytest

from grpo.cli import main
from grpo.experiments.runplot import choose_metrics, plot_runs, read_runs


def _jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture()
def folders(tmp_path):
    llm = tmp_path / "llm"
    _jsonl(llm / "metrics.jsonl", [{"step": s, "reward/total/mean": 0.1 * s, "kl/ref": 0.01 * s, "time/step_s": 2.0,
                                    **({"eval/greedy_accuracy": 0.5} if s == 1 else {})} for s in range(4)])
    (llm / "summary.json").write_text(json.dumps({"accuracy_before": 0.25, "accuracy_after": 0.75}))
    control = tmp_path / "control"
    _jsonl(control / "metrics.jsonl", [{"iteration": i, "env_steps": 500 * i, "train_wall_s": 1.5 * i,
                                        "train/episode_return_mean": 10.0 * i, "kl/ref": 0.02}
                                       for i in range(1, 4)])
    _jsonl(control / "eval.jsonl", [{"env_steps": 1000, "train_wall_s": 3.0, "eval_return_mean": 42.0}])
    compare = tmp_path / "compare"
    (compare / "plan.json").parent.mkdir()
    (compare / "plan.json").write_text("{}")
    for seed in (0, 1):
        _jsonl(compare / f"runs/CartPole-v1/grpo/seed{seed}/metrics.jsonl",
               [{"iteration": 1, "env_steps": 100, "train_wall_s": 0.5, "train/episode_return_mean": 20.0 + seed}])
    return llm, control, compare


def test_reads_what_each_side_writes(folders):
    llm, control, compare = read_runs(folders)[:3]
    assert llm.x_label == "step" and control.x_label == "env steps"
    assert llm.series["reward/total/mean"][0] == [0, 1, 2, 3]
    # before (first step), the in-run evaluation, after (last step), in step order
    assert llm.series["eval/greedy_accuracy"] == ([0, 1, 3], [0.25, 0.5, 0.75])
    assert control.series["eval/return_mean"] == ([1000], [42.0])
    assert control.series["time/iteration_s"] == ([1000, 1500], [1.5, 1.5])  # differences of train_wall_s
    assert "iteration" not in control.series and "train_wall_s" not in control.series
    assert [r.name for r in read_runs(folders)[2:]] == ["CartPole-v1/grpo/seed0", "CartPole-v1/grpo/seed1"]
    assert compare.series["train/episode_return_mean"] == ([100], [20.0])


def test_metrics_chosen_and_panels_per_axis(folders, tmp_path):
    runs = read_runs(folders)
    assert choose_metrics(runs) == ["reward/total/mean", "train/episode_return_mean", "eval/greedy_accuracy",
                                    "eval/return_mean", "kl/ref", "time/step_s", "time/iteration_s"]
    assert choose_metrics(runs, ["kl/*", "eval/return_mean"]) == ["kl/ref", "eval/return_mean"]
    with pytest.raises(ValueError, match="--metrics entropy: no run logged it"):
        choose_metrics(runs, ["entropy"])
    # kl/ref is logged against steps by one side and env steps by the other: two panels
    panels = plot_runs(runs, ["kl/ref", "eval/return_mean"], tmp_path / "fig.svg")
    assert panels == [("kl/ref", "step"), ("kl/ref", "env steps"), ("eval/return_mean", "env steps")]
    assert (tmp_path / "fig.svg").read_text().lstrip().startswith("<?xml")


def test_plot_command_and_bad_input(folders, tmp_path, capsys):
    out = tmp_path / "plots" / "runs.png"
    assert main(["plot", *map(str, folders), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "8 panel(s)" in capsys.readouterr().out  # 7 metrics, kl/ref twice
    for argv, message in ((["plot", str(tmp_path / "nothing")], "run folder"),
                          (["plot", str(tmp_path)], "is not a run folder"),
                          (["plot", str(folders[0]), "--out", str(tmp_path / "x.jpg")], "unknown extension '.jpg'"),
                          (["plot", str(folders[0]), "--metrics", "nope"], "--metrics nope")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
