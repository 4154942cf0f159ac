"""The outer loop shared by every classic-control algorithm: budget, evaluation, logs, checkpoints.

Each algorithm is an agent with ``collect() -> batch`` and ``update(batch, progress) -> metrics``;
this module runs it for ``total_steps`` env steps and writes the run folder:

  config.json     the resolved configuration
  metrics.jsonl   one line per iteration (env steps, train wall seconds, losses, KL, clip, entropy)
  eval.jsonl      the evaluation protocol (grpo.control.evaluation), one line per evaluation
  tb/, ...        the trackers of ``report_to`` (grpo.utils.trackers; TensorBoard by default), by env step
  summary.json    algo, env, seed, total_steps, train_wall_s, final_eval, stable_solve_step, ...
  checkpoint/     model.safetensors + state.json + optim.pt, replaced atomically

``--overwrite`` deletes only these (``RUN_FILES``); ``--resume`` continues from the checkpoint with
the logs cut back to it, or, when the run died before its first checkpoint, starts it again clean.
A resumed run ends with the same weights and logs as an uninterrupted one (the RNG states, the
reset-seed stream and PPO's environments mid-episode are in the checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from grpo.control.defaults import tuned
from grpo.control.envs import EnvInfo, env_info
from grpo.control.evaluation import EVAL_EPISODES, EVAL_EVERY, EVAL_SEED0, eval_boundaries, evaluate_policy, stable_solve_step
from grpo.control.grpo import GRPOAgent, ControlGRPOConfig
from grpo.control.naive import NaiveGRPOAgent, NaiveGRPOConfig
from grpo.control.policies import Actor
from grpo.control.ppo import PPOAgent, ControlPPOConfig
from grpo.utils.io import (AtomicDir, load_tensors, read_json, read_jsonl, resolve_dir, save_tensors, torch_load, torch_save,
                           write_json)
from grpo.utils.runfolder import RunFiles
from grpo.utils.runlog import RunLog
from grpo.utils.trackers import TRACKER_FILES, check_report_to, resolve_report_to
from grpo.utils.runtime import peak_rss_mb, seed_everything

# algo name -> (config dataclass, agent class)
ALGOS: dict[str, tuple[type, type]] = {
    "grpo": (ControlGRPOConfig, GRPOAgent),
    "ppo": (ControlPPOConfig, PPOAgent),
    "naive-grpo": (NaiveGRPOConfig, NaiveGRPOAgent),
}


@dataclass
class RunConfig:
    """What every classic-control run shares, whatever the algorithm."""

    env: str = field(default="CartPole-v1", metadata={"help": "gymnasium environment id"})
    seed: int = field(default=0, metadata={"help": "seed of torch, numpy and the environments"})
    total_steps: int = field(default=100_000, metadata={"help": "training budget in env steps"})
    eval_every: int = field(default=EVAL_EVERY, metadata={"help": "evaluate the greedy policy every this many env steps (0: never)"})
    eval_episodes: int = field(default=EVAL_EPISODES, metadata={"help": "episodes per evaluation (seeds 10000..)"})
    checkpoint_every: int = field(default=10, metadata={"help": "save a checkpoint every this many iterations"})
    max_episode_steps: int | None = field(default=None, metadata={"help": "override the env's time limit"})
    torch_threads: int = field(default=1, metadata={"help": "torch CPU threads (1 is fastest for small MLPs)"})
    nonfinite_limit: int = field(default=20, metadata={"help": "stop after this many non-finite updates in a row"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    report_to: list[str] | None = field(default=None, metadata={"help": (
        "trackers for the metrics: tensorboard, wandb, trackio, mlflow (each local/offline by default), or none; "
        "default: tensorboard when installed")})

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        if self.eval_every < 0 or self.eval_episodes < 1 or self.checkpoint_every < 1:
            raise ValueError("eval_every must be >= 0, eval_episodes and checkpoint_every >= 1")
        check_report_to(self.report_to)  # a tracker that is not installed: refused before anything runs


def algo_config(algo: str, env_id: str, overrides: dict[str, Any] | None = None):
    """The algorithm's config: dataclass defaults < tuned values for ``env_id`` < ``overrides``."""
    if algo not in ALGOS:
        raise ValueError(f"algo: unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}")
    from grpo.utils.config import build

    return build(ALGOS[algo][0], tuned(algo, env_id) | (overrides or {}), f"{algo}: ")


# What a run writes into its folder (see the module docstring); nothing else there is touched.
# summary.json and metrics.jsonl are also names of grpo llm train's runs (run_config.json) and summary.json
# of grpo llm sft's (sft_config.json): --overwrite refuses a folder holding either.
RUN_FILES = RunFiles(("config.json", "metrics.jsonl", "eval.jsonl", "summary.json", "checkpoint", *TRACKER_FILES),
                     config="config.json", foreign=("run_config.json", "sft_config.json"))


def train(algo: str, run: RunConfig, algo_cfg=None, out: str | Path = "runs/default",
          resume: bool = False, overwrite: bool = False,
          on_iteration: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``algo`` on ``run.env``, write the run folder ``out`` and return the summary."""
    out = Path(out)
    info = env_info(run.env, run.max_episode_steps)
    algo_cfg = algo_cfg if algo_cfg is not None else algo_config(algo, run.env)
    RUN_FILES.prepare(out, resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(run.torch_threads)
    seed_everything(run.seed)
    agent = ALGOS[algo][1](algo_cfg, info, run.seed)
    if hasattr(agent, "step"):
        agent.step.limit = run.nonfinite_limit
    state = {"iteration": 0, "env_steps": 0, "train_wall_s": 0.0}
    config = {"algo": algo, "run": dataclasses.asdict(run), "algo_config": dataclasses.asdict(algo_cfg),
              "env_info": dataclasses.asdict(info)}
    resumed = resume and resolve_dir(out / "checkpoint") is not None
    if resumed:
        state = load_checkpoint(out, agent)
    else:
        RUN_FILES.remove(out)  # fresh, or resumed before the first checkpoint: start clean
        write_json(out / "config.json", config)
    # Logs keyed by env steps; what was logged after the checkpoint is redone, so it is cut off.
    log = RunLog(out, ("metrics.jsonl", "eval.jsonl"), resolve_report_to(run.report_to),
                 state["env_steps"] + 1 if resumed else 0, "env_steps", {"algo": algo, **config["run"], **config["algo_config"]})
    evals = read_jsonl(out / "eval.jsonl") if (out / "eval.jsonl").exists() else []
    bar = tqdm(total=run.total_steps, initial=min(state["env_steps"], run.total_steps), unit="step",
               desc=f"{algo} {run.env} seed {run.seed}", disable=not run.progress, dynamic_ncols=True)
    steps, train_wall = state["env_steps"], state["train_wall_s"]
    try:
        while steps < run.total_steps:
            t0 = time.perf_counter()
            batch = agent.collect()
            train_wall += time.perf_counter() - t0
            before, steps = steps, steps + batch.env_steps
            # The policy in effect at each crossed evaluation point is the one that collected
            # this batch, so it is evaluated before the update.
            points = eval_boundaries(before, min(steps, run.total_steps), run.eval_every) if run.eval_every else []
            if run.eval_every and before < run.total_steps <= steps and run.total_steps not in points:
                points.append(run.total_steps)  # the budget's end is always evaluated
            if points:
                returns = evaluate_policy(greedy_fn(agent.actor), run.env, run.eval_episodes, EVAL_SEED0, info.max_episode_steps)
                for p in points:
                    record = {"env_steps": p, "train_wall_s": round(train_wall, 4), "eval_return_mean": float(np.mean(returns)),
                              "eval_return_std": float(np.std(returns)), "returns": returns}
                    evals.append(record)
                    log.write("eval.jsonl", record)
                    log.track(p, {"eval/return_mean": record["eval_return_mean"], "eval/return_std": record["eval_return_std"]})
            t0 = time.perf_counter()
            metrics = agent.update(batch, progress=min(steps / run.total_steps, 1.0))
            train_wall += time.perf_counter() - t0
            record = {"iteration": agent.iteration, "env_steps": steps, "train_wall_s": round(train_wall, 4),
                      **{k: round(v, 6) for k, v in metrics.items()}}
            log.write("metrics.jsonl", record)
            log.track(steps, {k: v for k, v in record.items() if k != "env_steps"})
            if agent.iteration % run.checkpoint_every == 0 or steps >= run.total_steps:
                save_checkpoint(out, agent, algo, info, {"iteration": agent.iteration, "env_steps": steps, "train_wall_s": train_wall})
            bar.update(min(steps, run.total_steps) - bar.n)
            bar.set_postfix_str(_postfix(metrics, evals), refresh=False)
            if on_iteration is not None:
                on_iteration(steps)
    finally:
        bar.close()
        log.close()
        agent.close()
    summary = make_summary(algo, run, info, evals, steps, train_wall, agent)
    write_json(out / "summary.json", summary)
    return summary


def _postfix(metrics: dict[str, float], evals: list[dict]) -> str:
    parts = []
    if "train/episode_return_mean" in metrics:
        parts.append(f"return {metrics['train/episode_return_mean']:.1f}")
    if evals:
        parts.append(f"eval {evals[-1]['eval_return_mean']:.1f}")
    return ", ".join(parts)


def make_summary(algo: str, run: RunConfig, info: EnvInfo, evals: list[dict], steps: int,
                 train_wall: float, agent) -> dict[str, Any]:
    eval_steps = [e["env_steps"] for e in evals]
    eval_means = [e["eval_return_mean"] for e in evals]
    params = agent.param_count()
    return {
        "algo": algo,
        "env": run.env,
        "seed": run.seed,
        "total_steps": run.total_steps,
        "env_steps": steps,
        "train_wall_s": round(train_wall, 3),
        "steps_per_s": round(steps / train_wall, 1) if train_wall > 0 else None,
        "final_eval": eval_means[-1] if eval_means else None,
        "best_eval": max(eval_means) if eval_means else None,
        "stable_solve_step": stable_solve_step(eval_steps, eval_means, info.reward_threshold),
        "reward_threshold": info.reward_threshold,
        "param_count": params,
        # weights + gradients + Adam's two moments, float32
        "model_state_mb": round(params * 4 * 4 / 2**20, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def greedy_fn(actor: Actor):
    def act(obs: np.ndarray) -> np.ndarray:
        return actor.to_env(actor.greedy(torch.from_numpy(np.asarray(obs, dtype=np.float32))))

    return act


# --------------------------------------------------------------------------------------------
# Checkpoints: weights in safetensors, the rest in JSON or a weights-only torch file.
# --------------------------------------------------------------------------------------------
def save_checkpoint(out: Path, agent, algo: str, info: EnvInfo, progress: dict[str, Any]) -> None:
    tensors = {f"{name}.{k}": v for name, module in agent.modules().items() for k, v in module.state_dict().items()}
    state = {"algo": algo, "env_info": dataclasses.asdict(info), "config": dataclasses.asdict(agent.cfg), **progress}
    if hasattr(agent, "seed_rng"):
        state["seed_rng"] = agent.seed_rng.bit_generator.state
    if hasattr(agent.collector, "state"):  # PPO's environments, mid-episode
        state["collector"] = agent.collector.state()
    if hasattr(agent, "step"):
        state["skipped"] = [agent.step.skipped_in_a_row, agent.step.skipped_total]
    with AtomicDir(out / "checkpoint") as tmp:
        save_tensors(tmp / "model.safetensors", tensors)
        (tmp / "state.json").write_text(json.dumps(state, default=int))
        torch_save(tmp / "optim.pt", {"optimizer": agent.optimizer.state_dict(), "torch_rng": torch.get_rng_state()})


def load_checkpoint(out: Path, agent) -> dict[str, Any]:
    """Restore ``agent`` from the run folder's checkpoint; returns its progress counters."""
    ckpt = resolve_dir(out / "checkpoint")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {out}")
    tensors = load_tensors(ckpt / "model.safetensors")
    for name, module in agent.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    state = json.loads((ckpt / "state.json").read_text())
    extra = torch_load(ckpt / "optim.pt")
    agent.optimizer.load_state_dict(extra["optimizer"])
    torch.set_rng_state(extra["torch_rng"])
    if "seed_rng" in state:
        agent.seed_rng.bit_generator.state = state["seed_rng"]
    if "collector" in state:
        agent.collector.load_state(state["collector"])
    if "skipped" in state:
        agent.step.skipped_in_a_row, agent.step.skipped_total = state["skipped"]
    agent.iteration = state["iteration"]
    return {k: state[k] for k in ("iteration", "env_steps", "train_wall_s")}


def load_actor(checkpoint: str | Path) -> tuple[Actor, EnvInfo]:
    """The actor stored in a run folder or a checkpoint folder, for evaluation."""
    path = Path(checkpoint)
    ckpt = resolve_dir(path / "checkpoint") or resolve_dir(path)
    if ckpt is None or not (ckpt / "state.json").exists():
        raise FileNotFoundError(f"no checkpoint found at {checkpoint}")
    state = read_json(ckpt / "state.json")
    info = EnvInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["env_info"].items()})
    cfg = state["config"]
    actor = Actor(info, tuple(cfg.get("hidden", (64, 64))), cfg.get("activation", "tanh"))
    tensors = load_tensors(ckpt / "model.safetensors")
    actor.load_state_dict({k[len("actor."):]: v for k, v in tensors.items() if k.startswith("actor.")})
    return actor, info
