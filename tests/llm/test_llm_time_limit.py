"""--time-limit: training stops before a step that would end the run past the limit, the final model
and evaluation still come; the last step's own evaluation is not run a second time as the final one."""

from __future__ import annotations

import doctest
import json
from types import SimpleNamespace

import pytest

from grpo.llm.config import GRPOConfig
from grpo.llm.infra import time_budget
from grpo.llm.infra.time_budget import out_of_time, process_elapsed_s


def test_docstring_examples():
    result = doctest.testmod(time_budget)
    assert result.attempted > 0 and result.failed == 0


def test_the_guess_adds_the_slowest_recent_step_and_the_evaluations():
    assert not out_of_time(0, 10, [], eval_s=4, eval_due=False)       # 0 + 0 + 4 <= 10
    assert out_of_time(0, 10, [], eval_s=6, eval_due=True)             # 6 + 6 > 10
    assert not out_of_time(0, 10, [], eval_s=5, eval_due=True)         # 10 <= 10: still fits
    assert out_of_time(0, 10, [1, 7, 1], eval_s=4, eval_due=False)     # 7 + 4 > 10
    assert not out_of_time(0, 10, [9, 1, 1, 1], eval_s=3, eval_due=False)  # the 9 is four steps back


def test_the_clock_is_the_process_age(monkeypatch):
    monkeypatch.delenv(time_budget.RUN_START_ENV, raising=False)
    assert 0 <= process_elapsed_s() < 24 * 3600


def test_children_of_a_relaunch_count_from_the_launchers_start(monkeypatch, tmp_path):
    """--num-processes: the launcher hands its start to its children, whose clock then counts from it."""
    import time

    from grpo.llm.infra import launch

    seen = {}
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd, env: seen.update(env) or 0)
    monkeypatch.setattr(time_budget, "run_started_at", lambda: 1000.5)  # the launcher's own start
    assert launch.relaunch(GRPOConfig(num_processes=2, out=str(tmp_path)), "grpo") == 0
    assert float(seen[time_budget.RUN_START_ENV]) == 1000.5
    monkeypatch.undo()
    monkeypatch.setenv(time_budget.RUN_START_ENV, repr(time.time() - 300.0))  # a child started 5 min after it
    assert 300 <= process_elapsed_s() < 360


def _run(random_tiny, tmp_path, monkeypatch, name, fake_timer=False, **options):
    """Train the random tiny model with a fake process clock that advances 10 s at each reading; with
    ``fake_timer`` the run's own timer too (so a step and an evaluation each measure 10 s)."""
    import grpo.llm.run as run

    model, tok = random_tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    readings = iter(range(10, 10_000, 10))
    monkeypatch.setattr(run, "process_elapsed_s", lambda: float(next(readings)))
    if fake_timer:
        ticks = iter(range(0, 100_000, 10))
        monkeypatch.setattr(run, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    calls = []
    real = run.greedy_accuracy
    monkeypatch.setattr(run, "greedy_accuracy", lambda *a, **k: calls.append(1) or real(*a, **k))
    logged = []
    cfg = GRPOConfig(model=str(tmp_path / "m"), prompts_per_step=2, group_size=2, max_new_tokens=3, eval_limit=4,
                     beta=0.0, out=str(tmp_path / name), progress=False, tensorboard=False, **options)
    summary = run.train(cfg, log=logged.append)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return summary, rows, logged, len(calls)


def test_a_time_limit_stops_training_and_still_saves_and_evaluates(random_tiny, tmp_path, monkeypatch):
    # Readings 10, 20, 30 s before steps 0, 1, 2 against a 30 s limit: steps 0 and 1 fit (a tiny step and
    # evaluation take well under the 10 s left), step 2 does not.
    summary, rows, logged, evaluations = _run(random_tiny, tmp_path, monkeypatch, "limited", steps=5,
                                              time_limit=0.5)
    assert summary["steps"] == 2 and [r["step"] for r in rows] == [0, 1]
    assert (tmp_path / "limited" / "final" / "config.json").is_file()
    assert summary["accuracy_after"] is not None and evaluations == 2  # before and after
    assert any("training stops after 2 of 5 steps" in line for line in logged), logged
    assert any(line.startswith("greedy accuracy after 2 steps") for line in logged), logged


def test_the_step_a_time_limit_ends_on_is_logged_even_between_log_every_steps(random_tiny, tmp_path, monkeypatch):
    # --log-every 3 logs steps 0 and 3; the limit ends training after step 1, which is logged all the same
    summary, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, "log3", steps=5, time_limit=0.5, log_every=3)
    assert summary["steps"] == 2 and [r["step"] for r in rows] == [0, 1]
    # negative control: without a limit, only the --log-every steps and the last one
    _, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, "log3-unlimited", steps=5, log_every=3)
    assert [r["step"] for r in rows] == [0, 3, 4]


def test_a_decaying_schedule_ends_where_the_limit_stops_training(random_tiny, tmp_path, monkeypatch):
    # Steps and the first evaluation measure 10 s; readings 10, 20, ... s before steps 0, 1, ... against 60 s:
    # steps 0-3 fit (step 3: 40 + 10 + the final evaluation's 10 = 60). From step 1 on the linear schedule
    # decays over the 4 steps that fit instead of the 20 asked for, so the last one runs at 1/4 of the rate.
    summary, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, "sched", fake_timer=True, steps=20, time_limit=1.0,
                               lr_schedule="linear", lr=1e-3)
    assert summary["steps"] == 4
    assert [round(r["train/lr"] / 1e-3, 6) for r in rows] == [1.0, 0.75, 0.5, 0.25]
    # negative control: the same run without a limit decays over the 20 steps
    _, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, "sched-unlimited", fake_timer=True, steps=20,
                         lr_schedule="linear", lr=1e-3)
    assert [round(r["train/lr"] / 1e-3, 6) for r in rows][:4] == [1.0, 0.95, 0.9, 0.85]


@pytest.mark.parametrize("horizons, want", [
    ((20, 3, 10, 10), [1.0, 0.666667, 0.666667, 0.666667]),  # the guess grew: the rate holds, never rises
    ((20, 6, 6, 6), [1.0, 0.833333, 0.666667, 0.5]),  # negative control: a steady guess decays as scheduled
])
def test_a_decaying_rate_never_rises_when_the_limits_guess_grows(random_tiny, tmp_path, monkeypatch, horizons, want):
    """Without the cap the first case would run at 1 - 2/10 = 0.8 and 1 - 3/10 = 0.7 after 0.667 (steps got
    faster, so more of them fit): a rate stepping back up in a schedule meant to decay."""
    import grpo.llm.run as run

    guesses = iter(horizons)
    monkeypatch.setattr(run, "steps_in_time", lambda *a, **k: next(guesses))
    _, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, f"cap{horizons[-1]}", steps=4, time_limit=100.0,
                         lr_schedule="linear", lr=1e-3)
    assert [round(r["train/lr"] / 1e-3, 6) for r in rows] == want


@pytest.mark.parametrize("keep_cap, want", [(True, [0.666667, 0.666667]), (False, [0.8, 0.7])])
def test_a_resumed_run_keeps_the_rates_cap(random_tiny, tmp_path, monkeypatch, keep_cap, want):
    """Checkpointed after steps 0-1 at rate factors 1 and 2/3; the resumed run's guesses (10 steps) would
    give 0.8 and 0.7. Negative control: the checkpoint without its cap (as saved before it existed)."""
    import grpo.llm.run as run

    guesses = iter((20, 3, 10, 10))
    monkeypatch.setattr(run, "steps_in_time", lambda *a, **k: next(guesses))
    opts = dict(time_limit=100.0, lr_schedule="linear", lr=1e-3, save_every=2)
    _run(random_tiny, tmp_path, monkeypatch, "resumed", steps=2, **opts)
    state = tmp_path / "resumed" / "checkpoint-000002" / "trainer_state.json"
    saved = json.loads(state.read_text())
    assert saved["lr_factor"] == pytest.approx(2 / 3)
    if not keep_cap:
        state.write_text(json.dumps({k: v for k, v in saved.items() if k != "lr_factor"}))
    _, rows, _, _ = _run(random_tiny, tmp_path, monkeypatch, "resumed", steps=4, resume=True, **opts)
    assert [round(r["train/lr"] / 1e-3, 6) for r in rows if r["step"] >= 2] == want


def test_without_a_limit_every_step_runs(random_tiny, tmp_path, monkeypatch):
    summary, rows, logged, _ = _run(random_tiny, tmp_path, monkeypatch, "unlimited", steps=5)
    assert summary["steps"] == 5 and [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert not any("time limit" in line for line in logged)


@pytest.mark.parametrize("eval_every, in_loop", [(2, 1), (3, 0)])
def test_the_last_steps_evaluation_is_the_final_one(random_tiny, tmp_path, monkeypatch, eval_every, in_loop):
    """Evaluated after step 2 of 2: that is the final model's accuracy, not computed again (2 evaluations:
    before, and after step 2). Every 3 steps: no evaluation in the loop, the final one runs (2 again)."""
    summary, rows, _, evaluations = _run(random_tiny, tmp_path, monkeypatch, f"every{eval_every}", steps=2,
                                         eval_every=eval_every)
    in_loop_acc = [r["eval/greedy_accuracy"] for r in rows if "eval/greedy_accuracy" in r]
    assert len(in_loop_acc) == in_loop and evaluations == 2
    if in_loop:
        assert in_loop_acc == [summary["accuracy_after"]]
