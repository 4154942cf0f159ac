"""``grpo compare``: algorithms x envs x seeds, one process per run, then a table and curves.

Layout of the output folder::

  plan.json                      the runs asked for (so ``--resume`` and re-reporting need nothing else)
  runs/<env>/<label>/seed<k>/    one run folder each (grpo.control.train: eval.jsonl, summary.json, ...)
  table.md, table.csv            per (env, label): seeds solved, median stable solve, final eval, ...
  curves.png, curves.svg         eval return vs env steps and vs train wall seconds (median, min-max)
  group_sweep.png, .svg          only with several GRPO group sizes
  summary.json                   host, load, table rows, per-run summaries, curves

Each run is a fresh process (forked from a fork server that has only imported torch and
gymnasium, never reused), so its ``peak_rss_mb`` is its own and no state leaks between runs. A run is described by a :class:`RunSpec`; its ``runner`` names the
function that executes it ("module:function"), so peers such as Stable-Baselines3 plug in from
``benchmarks/`` with the same protocol and files.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import re
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

CONTROL_RUNNER = "grpo.experiments.compare:run_control"
ALGOS = ("grpo", "ppo", "naive-grpo")
DEFAULT_ENVS = ("CartPole-v1",)
DEFAULT_ALGOS = ("grpo", "ppo")
DEFAULT_SEEDS = 3
# `grpo compare` with no flags must finish in about a minute on a 2-core laptop (README), so the
# default budget is 50k env steps: under the protocol both algorithms usually solve CartPole
# before that. Pass --total-steps 100000 for the full protocol budget.
DEFAULT_TOTAL_STEPS = 50_000


@dataclass
class RunSpec:
    """One run: ``label`` names its table row (an algorithm, or a variant like ``grpo G=4``)."""

    label: str
    algo: str
    env: str
    seed: int
    total_steps: int
    overrides: dict[str, Any] = field(default_factory=dict)
    runner: str = CONTROL_RUNNER
    eval_every: int = 5_000  # the protocol's; smaller only for quick looks and tests

    @property
    def folder(self) -> str:
        """Relative run folder: ``runs/<env>/<label slug>/seed<k>``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "", self.label.replace(" ", "-").replace("=", ""))
        return f"runs/{self.env}/{slug}/seed{self.seed}"


def group_label(g: int) -> str:
    return f"grpo G={g}"


def plan(envs: Sequence[str], algos: Sequence[str], seeds: Sequence[int], total_steps: int,
         group_sizes: Sequence[int] = (), overrides: dict[str, dict[str, Any]] | None = None,
         eval_every: int = 5_000) -> list[RunSpec]:
    """The runs of a comparison, env-major. With ``group_sizes``, GRPO runs once per G.

    A G sweep changes the group size only: the episodes per iteration (G x groups) stay at the
    env's tuned value, so groups = episodes // G (at least 1), unless ``overrides`` fix ``groups``.
    """
    overrides = overrides or {}
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        raise ValueError(f"--algos: unknown {unknown}; choose from {list(ALGOS)}")
    if group_sizes and "grpo" not in algos:
        raise ValueError("--group-sizes sweeps GRPO's G: include grpo in --algos")
    if any(g < 2 for g in group_sizes):
        raise ValueError("--group-sizes: every G must be >= 2 (a group of one has no baseline)")
    if total_steps < 1 or eval_every < 1 or not seeds:
        raise ValueError("--total-steps and --eval-every must be >= 1 and at least one seed is needed")
    specs = []
    for env in envs:
        for algo in algos:
            variants = [(group_label(g), sweep_overrides(env, g, overrides.get("grpo", {}))) for g in group_sizes] \
                if algo == "grpo" and group_sizes else [(algo, {})]
            for label, extra in variants:
                for seed in seeds:
                    specs.append(RunSpec(label, algo, env, seed, total_steps, overrides.get(algo, {}) | extra,
                                         eval_every=eval_every))
    return specs


def sweep_overrides(env: str, g: int, given: dict[str, Any]) -> dict[str, Any]:
    """GRPO options for group size ``g`` that keep the episodes per iteration of ``env``'s config."""
    if "groups" in given:
        return {"group_size": g}
    from grpo.control.train import algo_config

    cfg = algo_config("grpo", env, given)
    return {"group_size": g, "groups": max(1, cfg.group_size * cfg.groups // g)}


def validate(specs: Sequence[RunSpec]) -> None:
    """Fail before launching anything: unknown env, bad option or value (ValueError)."""
    from grpo.control.envs import check_env_id
    from grpo.control.train import algo_config

    for spec in specs:
        check_env_id(spec.env)
        if spec.runner == CONTROL_RUNNER:
            algo_config(spec.algo, spec.env, spec.overrides)


# --------------------------------------------------------------------------------------------
# Runners: (spec, out folder, on_iteration(env_steps)) -> summary dict; they write the run folder.
# --------------------------------------------------------------------------------------------
def run_control(spec: RunSpec, out: Path, on_iteration: Callable[[int], None]) -> dict[str, Any]:
    """One of our classic-control algorithms through the shared loop (grpo.control.train)."""
    from grpo.control.train import RunConfig, algo_config, train

    run = RunConfig(env=spec.env, seed=spec.seed, total_steps=spec.total_steps, eval_every=spec.eval_every,
                    progress=False)
    cfg = algo_config(spec.algo, spec.env, spec.overrides)
    return train(spec.algo, run, cfg, out, overwrite=True, on_iteration=on_iteration)


def resolve(path: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_PROGRESS: Any = None  # the queue a worker reports (run index, env steps) on


def _init_worker(progress_queue) -> None:
    global _PROGRESS
    _PROGRESS = progress_queue


def _run_one(index: int, spec: RunSpec, out: str) -> int:
    last = [0.0]

    def report(steps: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.2 and _PROGRESS is not None:  # a few updates a second are plenty
            last[0] = now
            _PROGRESS.put((index, min(steps, spec.total_steps)))

    resolve(spec.runner)(spec, Path(out), report)
    return index


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# Imported once by the fork server, so each run starts from a warm interpreter instead of paying
# the torch + gymnasium import (seconds on a busy laptop) again.
PRELOAD = ["grpo.control.train"]


def worker_context():
    """A fork server with our modules preloaded where the OS has one (Linux, macOS), else spawn.

    Either way every run gets a fresh process that has not run any other job, so the fork
    server's state (the imports every run needs anyway) is all a run shares.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def execute(specs: Sequence[RunSpec], root: Path, jobs: int, progress: bool = True, resume: bool = False) -> None:
    """Run every spec in its own spawned process, ``jobs`` at a time, with one progress bar.

    With ``resume``, runs whose folder already holds a ``summary.json`` are kept, not redone.
    """
    from tqdm.auto import tqdm

    done_before = {i for i, s in enumerate(specs) if resume and (root / s.folder / "summary.json").exists()}
    todo = [i for i in range(len(specs)) if i not in done_before]
    steps = {i: (specs[i].total_steps if i in done_before else 0) for i in range(len(specs))}
    bar = tqdm(total=sum(s.total_steps for s in specs), initial=sum(steps.values()), unit="step",
               desc=f"{len(specs)} runs", disable=not progress, dynamic_ncols=True)
    ctx = worker_context()
    progress_queue = ctx.Queue()
    kwargs: dict[str, Any] = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    finished = len(done_before)
    try:
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(progress_queue,), **kwargs) as pool:
            pending: dict[Future, int] = {pool.submit(_run_one, i, specs[i], str(root / specs[i].folder)): i for i in todo}
            while pending:
                done, _ = wait(list(pending), timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(progress_queue, steps)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        fut.result()
                    except Exception as err:
                        for other in pending:
                            other.cancel()
                        s = specs[i]
                        raise RuntimeError(f"run {s.label} on {s.env} seed {s.seed} failed: {err!r}") from err
                    steps[i] = specs[i].total_steps
                    finished += 1
                bar.update(sum(steps.values()) - bar.n)
                bar.set_postfix_str(f"{finished}/{len(specs)} runs done", refresh=False)
    finally:
        bar.close()
        progress_queue.close()


def _drain(progress_queue, steps: dict[int, int]) -> None:
    while True:
        try:
            index, value = progress_queue.get_nowait()
        except queue_mod.Empty:
            return
        steps[index] = max(steps[index], value)


# --------------------------------------------------------------------------------------------
# Reading the runs back and reporting
# --------------------------------------------------------------------------------------------
def save_plan(root: Path, specs: Sequence[RunSpec], meta: dict[str, Any] | None = None) -> None:
    from grpo.utils.io import write_json

    write_json(root / "plan.json", {"meta": meta or {}, "specs": [dataclasses.asdict(s) for s in specs]})


def load_plan(root: Path) -> list[RunSpec]:
    from grpo.utils.io import read_json

    return [RunSpec(**s) for s in read_json(root / "plan.json")["specs"]]


def load_runs(root: Path, specs: Sequence[RunSpec]):
    """The finished runs of ``specs`` as :class:`grpo.experiments.table.Run` (missing ones skipped)."""
    from grpo.experiments.table import Run
    from grpo.utils.io import read_json, read_jsonl

    runs = []
    for spec in specs:
        folder = root / spec.folder
        if (folder / "summary.json").exists():
            runs.append(Run(spec.label, read_json(folder / "summary.json"), read_jsonl(folder / "eval.jsonl"), spec.folder))
    return runs


def host_info() -> dict[str, Any]:
    """What the numbers depend on: CPUs, load, versions (the machine may be shared)."""
    import torch

    info: dict[str, Any] = {"cpus": available_cpus(), "python": platform.python_version(),
                            "torch": torch.__version__, "platform": platform.platform(),
                            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if hasattr(os, "getloadavg"):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def report(root: Path, specs: Sequence[RunSpec], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write table.md/.csv, curves.png/.svg (and group_sweep.* for a G sweep) and summary.json."""
    from grpo.experiments import plots, table
    from grpo.utils.io import write_json

    runs = load_runs(root, specs)
    if not runs:
        raise FileNotFoundError(f"{root}: no finished run to report")
    rows = table.table(runs)
    curves = table.curves(runs)
    (root / "table.md").write_text(table.to_markdown(rows))
    (root / "table.csv").write_text(table.to_csv(rows))
    figures = plots.plot_curves(curves, root / "curves", title=f"{', '.join(dict.fromkeys(c.label for c in curves))}")
    sweep = [c.label for c in curves if c.label.startswith("grpo G=")]
    if len(set(sweep)) > 1:
        figures += plots.plot_group_sweep([c for c in curves if c.label in sweep],
                                          [r for r in rows if r.label in sweep], root / "group_sweep")
    result = {
        "meta": meta or {},
        "rows": [dataclasses.asdict(r) for r in rows],
        "runs": [{"label": r.label, "folder": r.folder, "stable_solve_step_table": table.solve_step(r), **r.summary}
                 for r in runs],
        "curves": [dataclasses.asdict(c) for c in curves],
        "figures": [str(p.relative_to(root)) for p in figures],
    }
    write_json(root / "summary.json", result)
    return result


def compare(specs: Sequence[RunSpec], root: Path, jobs: int, progress: bool = True, resume: bool = False,
            meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plan -> run -> report, recording the host and its load before and after.

    With ``resume``, the meta of the first invocation is kept under ``first`` (its load and
    time are those of the runs it did).
    """
    validate(specs)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {}, jobs=jobs, host_before=host_info())
    if resume and (root / "plan.json").exists():
        from grpo.utils.io import read_json

        previous = read_json(root / "plan.json")["meta"]
        meta["first"] = previous.get("first", previous)
    save_plan(root, specs, meta)
    t0 = time.perf_counter()
    execute(specs, root, jobs, progress, resume)
    meta.update(wall_s=round(time.perf_counter() - t0, 1), host_after=host_info())
    return report(root, specs, meta)
