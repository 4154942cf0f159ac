"""Setting up and running a GRPO training run from a GRPOConfig (what ``grpo llm train`` calls)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import torch

from grpo.llm.modeling.adapters import AdapterOffReference, check_adapter_options, load_policy, save_merged
from grpo.llm.algorithms.registry import build_trainer
from grpo.llm.bounds import check_memory
from grpo.llm.infra.checkpoint import load_trainer_state, prepare_run_dir, save_checkpoint, save_model
from grpo.llm.infra.cpu_memory import keep_freed_memory
from grpo.llm.config import GRPOConfig
from grpo.llm.infra.distributed import Runtime, make_runtime
from grpo.llm.data.heldout import eval_set
from grpo.llm.infra.fsdp import DDP, FSDP2, state_mb
from grpo.llm.data.tasks import default_rewards, load_rows
from grpo.llm.evaluation import greedy_accuracy
from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer
from grpo.llm.modeling.activation_checkpointing import enable_gradient_checkpointing
from grpo.llm.data.rewards import RewardSet, SequenceClassifierReward
from grpo.llm.data.rewards.plugins import reward_set
from grpo.llm.infra.runlog import RunLog
from grpo.llm.infra.schedules import lr_factor, set_learning_rates
from grpo.llm.infra.time_budget import out_of_time, process_elapsed_s, steps_in_time
from grpo.llm.rollout.batch import sample_records
from grpo.llm.algorithms.multiturn import EVAL_SEED_BASE, GREEDY
from grpo.utils.config import to_dict
from grpo.utils.io import write_json
from grpo.utils.optim import make_optimizer
from grpo.utils.runtime import peak_gpu_mb, peak_rss_mb, seed_everything


def build_rewards(cfg: GRPOConfig, device: torch.device) -> RewardSet:
    """The run's rewards: --reward names (or the task's own), plus the reward model if given."""
    specs = cfg.reward if cfg.reward is not None else list(default_rewards(cfg.task) or [])
    extra = {"model": SequenceClassifierReward(cfg.reward_model, device)} if cfg.reward_model else {}
    if not specs and not extra:
        raise ValueError(f"task {cfg.task!r} has no default reward: pass --reward NAME (e.g. math, numeric, format)")
    return reward_set(specs, extra, on_failure=cfg.reward_failure, timeout_s=cfg.reward_timeout_s)


def model_path(cfg: GRPOConfig, log: Callable[[str], None] = print) -> str:
    """The folder (or hub id) of ``cfg.model``: the tiny model, a named model or a GGUF file converted
    once, or the folder as given (:func:`grpo.llm.modeling.pretrained.resolve_model`)."""
    from grpo.llm.modeling.pretrained import resolve_model

    return resolve_model(cfg.model, log)


def check_scale_out(cfg: GRPOConfig, rt: Runtime, log: Callable[[str], None] = print) -> None:
    """Refuse the scale-out options this algorithm or strategy cannot honour, saying what to change."""
    check_adapter_options(cfg)
    if cfg.generation == "vllm":
        from grpo.llm.rollout.vllm_engine import import_vllm

        import_vllm()  # not installed: say how, before loading anything
    if cfg.env:
        # Several processes: DDP or FSDP2 (whose collective forward passes the episode loop keeps in step: a turn
        # is played while any process has an episode going). DeepSpeed's generation is not kept in step here.
        fix = f"drop --accelerate-config {cfg.accelerate_config}" if cfg.accelerate_config else "launch with DDP"
        not_ddp = f"several processes under {rt.strategy} (DDP or FSDP2 only; {fix})"
        given = {"--algo ppo": getattr(cfg, "algo", "grpo") == "ppo",
                 not_ddp: rt.world_size > 1 and bool(getattr(rt, "deepspeed", False)),
                 "--generation vllm": cfg.generation == "vllm",
                 "--truncated-reward (episodes: --truncated)": cfg.truncated_reward is not None}
        if any(given.values()):
            raise ValueError(f"--env (multi-turn) does not support {', '.join(k for k, on in given.items() if on)} "
                             "yet; see docs/multi-turn.md")
        from grpo.llm.envs.base import env_factory

        env_factory(cfg.env)  # an unknown env or a module that does not import: refused before any loading
    if getattr(cfg, "algo", "grpo") == "ppo":
        given = {"several processes": rt.world_size > 1, "--adapter": bool(cfg.adapter),
                 "--gradient-checkpointing": cfg.gradient_checkpointing,
                 "--mixed-precision fp16": cfg.mixed_precision == "fp16", "--generation vllm": cfg.generation == "vllm"}
        if any(given.values()):
            why = (" (its value model and optimizer are not wrapped for DDP/FSDP, and its whitening of advantages "
                   "is not reduced over processes)") if given["several processes"] else ""
            raise ValueError(f"--algo ppo does not support {', '.join(k for k, on in given.items() if on)} yet{why}; "
                             "GRPO does; see docs/scale-out.md")
    if rt.world_size > 1 and cfg.dynamic_sampling and not cfg.env and getattr(rt, "deepspeed", False):
        raise ValueError("--dynamic-sampling on several processes runs under DDP or FSDP2, not DeepSpeed (not "
                         "tested there); drop the DeepSpeed --accelerate-config or --dynamic-sampling")
    if (getattr(rt, "fsdp", False) and rt.world_size > 1 and (cfg.dynamic_sampling or cfg.env) and cfg.micro_batch
            and cfg.micro_batch % cfg.group_size):
        # The processes' batches differ in size (groups kept) or width (episodes): they fill up to the same number
        # of micro-batches (every forward is collective), whole groups each so that every pass takes the same path.
        what = "--dynamic-sampling" if cfg.dynamic_sampling else "--env"
        raise ValueError(f"{what} under {rt.strategy} needs whole groups per micro-batch: "
                         f"--micro-batch {cfg.micro_batch} is not a multiple of --group-size {cfg.group_size}")
    if getattr(rt, "deepspeed", False) and cfg.micro_batch:
        raise ValueError("DeepSpeed runs one backward per step here: leave micro_batch unset "
                         "(use --gradient-checkpointing or ZeRO offload to save memory)")
    if getattr(rt, "deepspeed", False) and (cfg.save_every or cfg.resume):
        raise ValueError("checkpoints and --resume under DeepSpeed are not supported yet (the final model is "
                         "saved); use DDP or FSDP2 for resumable runs")
    if getattr(rt, "fsdp", False) and cfg.ref_reset_every:
        raise ValueError("--ref-reset-every under FSDP is not supported yet (the reference would need the gathered "
                         "policy every reset); use DDP, or leave it at 0")
    if rt.collective_forward and not getattr(rt, "fsdp", False) and cfg.generation == "cached":
        # Forward passes are collective: ranks must step together (transformers' synced generation).
        log("ZeRO-3: sampling with --generation hf (synchronised across processes)")
        cfg.generation = "hf"


def preflight(cfg: GRPOConfig) -> None:
    """Checks that need no model, run before starting several processes, so that a bad option fails
    once, in one line, instead of in every process."""
    from grpo.llm.infra.distributed import autocast_dtype
    from grpo.llm.modeling.models import pick_device

    from grpo.llm.infra.launch import check_launch_config

    autocast_dtype(cfg.mixed_precision, pick_device(cfg.device))
    kind = check_launch_config(cfg.accelerate_config, pick_device(cfg.device).type)  # the file, read once
    # The adapter options, vLLM's presence and every option the processes about to start cannot honour
    planned = Runtime(torch.device("cpu"))  # a stand-in for those processes: only their number and kind
    planned.world_size, planned.fsdp, planned.deepspeed = cfg.num_processes, kind == "FSDP", kind == "DEEPSPEED"
    planned.strategy = FSDP2 if planned.fsdp else "DeepSpeed" if planned.deepspeed else DDP
    check_scale_out(copy.copy(cfg), planned, log=lambda _: None)  # a copy: it may switch the generation engine
    if not (cfg.resume or cfg.overwrite):
        prepare_run_dir(Path(cfg.out), False, False)  # only checks: raises if a run is already there


class _NoLog:
    """RunLog of the processes that are not the main one: they write nothing."""

    def log(self, *args: Any) -> None: ...
    def log_samples(self, *args: Any) -> None: ...
    def close(self) -> None: ...


def train(cfg: GRPOConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run GRPO (PPO for a PPOConfig) as ``cfg`` says; returns (and writes to ``summary.json``) accuracy
    before/after and timings. Under a multi-process launch every process trains its share; only the main
    one logs, writes files and returns the summary (the others return {})."""
    out = Path(cfg.out)
    rt = make_runtime(cfg.device, cfg.mixed_precision)
    log = log if rt.is_main else (lambda *_: None)
    check_scale_out(cfg, rt, log)
    with rt.main_first():  # the main process checks (and with --overwrite clears) the folder first
        resume_from = prepare_run_dir(out, cfg.resume, cfg.overwrite)
    if cfg.resume and resume_from is None:
        log(f"--resume: {out} holds no checkpoint yet; starting the run again from step 0")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = rt.device
    if cfg.keep_freed_memory:
        keep_freed_memory(device.type)
    with rt.main_first():  # the tiny model is built, a GGUF file converted, once and cached
        path = model_path(cfg, log)
    check_memory(cfg, path, device)  # a batch that cannot fit: refused before anything big loads
    tok = load_tokenizer(path)
    # Multi-turn (--env): episodes of the environment instead of prompt rows scored by rewards.
    rows = [] if cfg.env else load_rows(cfg.task, cfg.split, cfg.prompt_column)
    evalset = None
    if not cfg.env:  # never the training rows: the eval split, --eval-task, or a slice held out of `rows`
        evalset, rows = eval_set(cfg.task, cfg.eval_split, split=cfg.split, rows=rows, eval_task=cfg.eval_task,
                                 holdout=cfg.eval_holdout, prompt_column=cfg.prompt_column, limit=cfg.eval_limit)
    eval_rows = evalset.rows if evalset else None
    rewards = None if cfg.env else build_rewards(cfg, device)
    policy = load_policy(cfg, path, resume_from, device)  # with its adapter when --adapter
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(policy)
    ref = None
    if cfg.beta > 0 and cfg.adapter:  # the base with adapters off: no second copy of the weights
        ref = AdapterOffReference(policy)
    elif cfg.beta > 0:  # beta = 0 loads no reference model
        saved_ref = resume_from / "reference" if resume_from else None
        ref = frozen_copy(load_model(str(saved_ref), cfg.dtype, device)) if saved_ref and saved_ref.exists() else (
            frozen_copy(load_model(path, cfg.dtype, device)) if resume_from else frozen_copy(policy))
    opt = make_optimizer(cfg.optimizer, [p for p in policy.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay)
    policy, opt = rt.prepare(policy, opt)  # DDP/FSDP/DeepSpeed wrappers (identity in one process)
    # GRPO, or PPO for a PPOConfig (which builds its own optimizer and runs in one process)
    trainer = build_trainer(cfg, policy, tok, rows, rewards, ref, resume_from, opt, rt)
    # Read before a resumed optimizer state brings back the last step's (scheduled) rates.
    base_lrs = [group["lr"] for group in trainer.opt.param_groups]
    state = load_trainer_state(resume_from, trainer.opt, lambda sd: rt.load_optimizer_state(policy, trainer.opt, sd)
                               ) if resume_from else {}
    start = int(state.get("step", 0))
    check = rewards.fns.get(rewards.accuracy_name) if rewards and rewards.accuracy_name else None
    records = getattr(trainer, "sample_records", sample_records)  # whole transcripts for --env
    if cfg.env:
        eval_source = f"episodes of {cfg.env} (env/ metrics)"
    else:
        eval_source = evalset.source if check else "none: no reward checks answers (exact, numeric, math)"
        if eval_rows is None or check is None:
            log(f"evaluation: {eval_source}")

    def evaluate_env() -> dict[str, float] | None:
        # The main process only, unless forward passes are collective (FSDP): then all, on the same episodes.
        if not (cfg.env and cfg.env_eval_episodes and (rt.is_main or rt.collective_forward)):
            return None
        with rt.autocast():
            return trainer.evaluate(cfg.env_eval_episodes)

    def evaluate() -> float | None:
        # The main process only, unless forward passes are collective (FSDP): then all, on the same rows.
        if eval_rows is None or check is None or not (rt.is_main or rt.collective_forward):
            return None
        with rt.autocast():
            return greedy_accuracy(rt.unwrap(policy), tok, eval_rows, cfg.max_new_tokens, check)

    last_eval_s = 0.0  # the latest evaluation's seconds: --time-limit's guess for the next one

    def timed(evaluation: Callable[[], Any]) -> Any:
        nonlocal last_eval_s
        t = time.perf_counter()
        result = evaluation()
        if result is not None:  # None: nothing was evaluated (no eval set, or not this process)
            last_eval_s = time.perf_counter() - t
        return result

    before = state.get("accuracy_before") if resume_from else timed(evaluate)
    if before is not None:
        log(f"greedy accuracy before: {before:.1%} on {eval_source}")
    env_before = state.get("env_eval_before") if resume_from else timed(evaluate_env)
    if env_before is not None:
        log(f"env episodes before: {_env_line(env_before)}")
    layout = rt.describe(policy)  # the strategy in force: {"distributed": "FSDP2", "processes": 2, ...}
    log(f"distributed: {layout['distributed']}, {layout['processes']} process(es), "
        f"{layout['parameters_per_process']:,} parameters per process")
    if rt.is_main:
        write_json(out / "run_config.json", {**to_dict(cfg), "model_path": path, "world_size": rt.world_size})
    runlog = RunLog(out, cfg.tensorboard, start, cfg.report_to, to_dict(cfg)) if rt.is_main else _NoLog()
    keep_ref = ref if cfg.ref_reset_every else None
    t_train = time.perf_counter()
    bar = _progress(range(start, cfg.steps), cfg.progress and rt.is_main)  # one bar, one log
    done, step_s = start, []  # steps completed; seconds of each trainer step of this process (generation, update)
    # Under --time-limit the schedule's horizon is re-guessed every step (and before a resumed run's first
    # step nothing is known), so a decaying rate could rise again when steps get faster: past the warmup,
    # the rate factor never exceeds the lowest one taken so far (kept in checkpoints for a resume).
    lr_cap = float(state.get("lr_factor", 1.0)) if cfg.time_limit is not None else 1.0
    acc_at, env_at = None, None  # the latest in-loop evaluation's results

    def evaluates_after(step: int) -> bool:  # --eval-every's evaluation follows this step
        return bool(cfg.eval_every) and (step + 1) % cfg.eval_every == 0

    def logs_at(step: int) -> bool:  # --log-every logs this step (and the last one always)
        return step % cfg.log_every == 0 or step == cfg.steps - 1

    try:
        for step in bar:
            horizon = cfg.steps  # the steps the learning-rate schedule decays over
            if cfg.time_limit is not None:  # every process decides alike (the max of their votes)
                elapsed, limit_s = process_elapsed_s(), cfg.time_limit * 60
                due = evaluates_after(step) and step + 1 < cfg.steps
                if float(rt.max(float(out_of_time(elapsed, limit_s, step_s, last_eval_s, due)))) > 0:
                    log(f"time limit ({cfg.time_limit:g} min): training stops after {done} of {cfg.steps} steps")
                    break
                if cfg.lr_schedule != "constant":  # a decaying schedule ends where the limit will stop training
                    fit = steps_in_time(elapsed, limit_s, done, cfg.steps, step_s, last_eval_s, cfg.eval_every)
                    horizon = int(-float(rt.max(-float(fit))))  # the slowest process's guess, the same for all
            t_step = time.perf_counter()
            factor = lr_factor(cfg.lr_schedule, step, horizon, cfg.warmup_steps)
            if step >= cfg.warmup_steps:
                factor = lr_cap = min(factor, lr_cap)
            lr = set_learning_rates(trainer.opt, base_lrs, factor)
            with rt.autocast():
                metrics, groups = trainer.step(step)
            step_s.append(time.perf_counter() - t_step)
            metrics["train/lr"] = lr
            if evaluates_after(step):
                if cfg.env:
                    env_at = timed(evaluate_env)
                    metrics.update({f"eval/{k}": v for k, v in (env_at or {}).items()})
                else:
                    acc_at = timed(evaluate)  # None (no eval set, or not this process): NaN; 0% stays 0
                    metrics["eval/greedy_accuracy"] = float("nan") if acc_at is None else acc_at
            if logs_at(step):
                runlog.log(step, metrics)
            if step % cfg.samples_every == 0:
                runlog.log_samples(records(groups, step, cfg.log_samples))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(reward=f"{metrics['reward/total/mean']:.3f}", kl=f"{metrics.get('kl/ref', 0):.4f}")
            if cfg.save_every and (step + 1) % cfg.save_every == 0:  # gathering is collective under FSDP
                whole, opt_state = rt.savable(policy), rt.optimizer_state(policy, trainer.opt)
                if rt.is_main:
                    save_checkpoint(out, step + 1, whole, tok, opt_state,
                                    {"accuracy_before": before, "env_eval_before": env_before, "lr_factor": lr_cap},
                                    keep_ref, cfg.keep_checkpoints, trainer.checkpoint_modules())
            done = step + 1
        if done > start and not logs_at(done - 1):  # the time limit ended training on a skipped step: log it
            runlog.log(done - 1, metrics)
    finally:
        runlog.close()
    train_s = time.perf_counter() - t_train
    final = rt.savable(policy)  # collective under FSDP/DeepSpeed (gathers the full weights)
    in_sync = rt.replicas_in_sync(policy)  # collective: every process's parameters compared
    peak = float(rt.max(peak_rss_mb()))
    gpu = peak_gpu_mb(device)
    gpu = None if gpu is None else float(rt.max(gpu))
    if rt.is_main:
        save_model(out / "final", final, tok)  # an adapter run saves the adapter (peft folder)
        if cfg.save_merged:
            save_merged(out / "final-merged", rt.unwrap(policy), tok)
    # The weights of the last step's own evaluation, if it had one, are the final weights: not evaluated twice.
    last_evaluated = done > start and evaluates_after(done - 1)
    after = acc_at if last_evaluated and not cfg.env else evaluate()
    if after is not None:
        log(f"greedy accuracy after {done} steps: {after:.1%}")
    env_after = env_at if last_evaluated and cfg.env else evaluate_env()
    if env_after is not None:
        log(f"env episodes after {done} steps: {_env_line(env_after)}")
    if env_before is not None and env_after is not None:
        log(f"before -> after ({cfg.env_eval_episodes} episodes, seeds {EVAL_SEED_BASE}+): "
            + _env_change(env_before, env_after))
        if cfg.env_eval_greedy:
            log(f"before -> after, greedy (the same {cfg.env_eval_episodes} seeds): "
                + _env_change(*({k[len(GREEDY):]: v for k, v in m.items() if k.startswith(GREEDY)}
                                for m in (env_before, env_after))))
    summary: dict[str, Any] = {}
    if rt.is_main:
        summary = {"model": path, "steps": done, "accuracy_before": before, "accuracy_after": after,
                   "eval_source": eval_source, "eval_prompts": len(eval_rows) if eval_rows and check else 0,
                   "train_seconds": round(train_s, 2),
                   "seconds_per_step": round(train_s / max(done - start, 1), 4),
                   "peak_rss_mb": round(peak, 1), "peak_gpu_mb": None if gpu is None else round(gpu, 1),
                   "final_model": str(out / "final"), "world_size": rt.world_size,
                   "replicas_in_sync": in_sync, **layout, "state_mb_per_process": state_mb(policy, trainer.opt),
                   **({"env_eval_before": env_before, "env_eval_after": env_after} if cfg.env else {}),
                   "trainable_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad)}
        write_json(out / "summary.json", summary)
    rt.finish()
    return summary


def _env_line(m: dict[str, float]) -> str:
    shown = ("episode/return_mean", "episode/turns_mean", "episode/truncated_frac")
    return ", ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in m.items() if k in shown or k.startswith("env/"))


def _env_change(before: dict[str, float], after: dict[str, float]) -> str:
    """``return_mean -0.7 -> 0.2, solved 0.48 -> 0.9, ...``: the episode return and every env/ mean
    that changed (guess-number's ``guesses`` is over solved games only)."""
    keys = ["episode/return_mean"] + [k for k in after if k.startswith("env/") and before.get(k) != after[k]]
    return ", ".join(f"{k.split('/', 1)[1]} {before[k]:.3g} -> {after[k]:.3g}" for k in keys if k in before)


def _progress(it: range, enabled: bool) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc="grpo llm", unit="step", initial=0, total=len(it))
