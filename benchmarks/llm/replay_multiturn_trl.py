"""Do we and TRL compute the same multi-turn GRPO update? Replay TRL's tool-calling batches through ours.

``multiturn_vs_trl.py`` found TRL's evaluation return after 5 warm-started steps higher than ours (0.844
vs 0.688, 3 seeds). This separates the update from the sampling: TRL's ``GRPOTrainer`` (``tools=``, the
settings of ``multiturn_vs_trl.py``) runs K steps and every batch it trains on is captured as its loss
sees it (prompt and completion ids and masks, the ``tool_mask`` of tool-result tokens, advantages,
reference log-probs), with the rewards of each step's episodes in group order. The same batches then go
through our multi-turn trainer's update (``MultiTurnTrainer.update``, loss mask = completion mask x tool
mask, as our rollout masks environment tokens) from the same starting weights. Reported per step and
overall: the largest difference of the reference log-probs on trained tokens, of the advantages (ours
from the captured rewards, ``grpo.core.group_advantages``; compared as sorted lists, since TRL shuffles
rows within a batch), of the learning rates, and the distance between the two final weights relative to
how far TRL's moved. Any difference of the masks' use, objective, per-episode aggregation across turns,
advantage scaling, KL, clipping, gradient clipping, optimizer or schedule shows up in the last figure.

What it leaves out is the sampling: which tokens each system draws, and how a malformed tool call or a
turn cut after a complete call is handled (``multiturn_vs_trl.py``'s docstring). ``--sampling-episodes N``
checks the first: the starting model plays the same N evaluation episodes (seeds 10000, ...) with our
KV-cached engine and with transformers' ``generate`` (the ``hf`` engine, TRL's sampler on CPU), same
options, independent random streams; reported per engine: mean return (solve rate), tool calls, sampled
tokens, and the return difference in standard errors.

    python benchmarks/llm/replay_multiturn_trl.py --model runs/mt-warm/sft/final --steps 3 --out runs/replay-mt
    python benchmarks/llm/replay_multiturn_trl.py --model runs/mt-warm/sft/final --steps 0 --sampling-episodes 256
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_trl as tiny  # noqa: E402  (the shared explicit settings)
import multiturn_vs_trl as mt  # noqa: E402  (TRL's trainer as the benchmark builds it)
from replay_trl import train_recording  # noqa: E402


def capture_trl(args: argparse.Namespace) -> tuple[dict, dict, list[dict], list[list[float]], list[float], list[dict]]:
    """Run TRL for args.steps steps; return start and final weights, every batch its loss saw, each
    step's rewards (group order), each step's learning rate and TRL's logged kl, entropy and grad norm."""
    rewards: list[list[float]] = []

    def recorded(eos):
        fn = mt.trl_reward(eos)

        def calculator_return(*a, **kw):
            out = fn(*a, **kw)
            rewards.append(list(out))
            return out
        return calculator_return

    trainer, _ = mt.trl_trainer(args, reward=recorded)
    start, final, batches, rates = train_recording(trainer)
    logs = [{k: h.get(k) for k in ("kl", "entropy", "grad_norm", "reward")} for h in trainer.state.log_history
            if "reward" in h]
    return start, final, batches, rewards, rates, logs


def replay(args: argparse.Namespace, start: dict, final: dict, batches: list[dict], rewards: list[list[float]],
           rates: list[float], logs: list[dict]) -> dict:
    import torch

    from grpo.core import group_advantages
    from grpo.llm.algorithms.multiturn import MultiTurnTrainer
    from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer
    from grpo.llm.rollout.generation import Rollout

    cfg = tiny.ours_config(args, env=mt.ENV, prompts_per_step=args.prompts, group_size=args.group_size,
                           max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, lr=args.lr,
                           truncated="keep", env_advantage="outcome", out=str(Path(args.out) / "ours"))
    tok = load_tokenizer(args.model)
    policy = load_model(args.model)
    missing = policy.load_state_dict(start, strict=False).missing_keys
    assert set(missing) <= {"lm_head.weight"}, missing  # tied to the embedding
    ref = frozen_copy(load_model(args.model))
    trainer = MultiTurnTrainer(cfg, policy, tok, ref)
    steps = []
    for step, b in enumerate(batches):
        N, C = b["completion_ids"].shape
        tool_mask = b.get("tool_mask", torch.ones_like(b["completion_mask"]))
        loss_mask = (b["completion_mask"] * tool_mask).float()  # [N, C] sampled tokens only
        roll = Rollout(b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"],
                       torch.zeros(N, dtype=torch.bool), [""] * N)
        ours_adv = group_advantages(torch.tensor(rewards[step]).view(-1, cfg.group_size), cfg.reward_scale).flatten()
        adv_diff = float((ours_adv.sort().values - b["advantages"].float().sort().values).abs().max())
        ref_lp = trainer._no_grad_logprobs(ref, roll)
        ref_diff = float(((ref_lp - b["ref_per_token_logps"]) * loss_mask).abs().max())
        m = trainer.update(roll, b["advantages"].float()[:, None].expand(N, C), loss_mask)
        steps.append({"step": step, "episodes": N, "columns": C, "sampled_tokens": int(loss_mask.sum()),
                      "tool_tokens": int((b["completion_mask"] * (1 - tool_mask)).sum()),
                      "max_abs_diff_ref_logprob": ref_diff, "max_abs_diff_advantage": adv_diff,
                      "lr_ours": cfg.lr, "lr_trl": rates[step], "rewards": rewards[step],
                      "our_grad_norm": m.get("policy/grad_norm"), "our_kl": m.get("kl/ref"),
                      "our_entropy": m.get("policy/entropy"), "trl_logged": logs[step] if step < len(logs) else {},
                      "first_episode": tok.decode(b["completion_ids"][0][b["completion_mask"][0].bool()])})
    moved = math.sqrt(sum(float((final[n] - start[n]).pow(2).sum()) for n in final))
    apart = math.sqrt(sum(float((p.detach() - final[n]).pow(2).sum()) for n, p in policy.named_parameters()
                          if n in final))
    return {"steps": steps, "max_abs_diff_ref_logprob": max(s["max_abs_diff_ref_logprob"] for s in steps),
            "max_abs_diff_advantage": max(s["max_abs_diff_advantage"] for s in steps),
            "max_abs_diff_lr": max(abs(s["lr_ours"] - s["lr_trl"]) for s in steps),
            "trl_weights_moved_l2": moved, "ours_minus_trl_final_l2": apart, "relative_final_difference": apart / moved if moved else None}


def sampling(args: argparse.Namespace) -> dict:
    """The starting model's episodes with our cached engine and with ``generate`` (module docstring)."""
    import time

    from grpo.llm.algorithms.multiturn import MultiTurnTrainer
    from grpo.llm.modeling.models import load_model, load_tokenizer

    model, tok = load_model(args.model).eval(), load_tokenizer(args.model)
    out = {}
    for engine in ("cached", "hf"):
        cfg = tiny.ours_config(args, env=mt.ENV, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                               generation=engine, out=str(Path(args.out) / f"sampling-{engine}"))
        t0 = time.perf_counter()
        m = MultiTurnTrainer(cfg, model, tok).evaluate(args.sampling_episodes)
        out[engine] = {"return_mean": m["episode/return_mean"], "tool_calls": m["tools/calls_per_episode"],
                       "sampled_tokens": m["episode/sampled_tokens_mean"], "truncated": m["episode/truncated_frac"],
                       "seconds": time.perf_counter() - t0}
    a, b, n = out["cached"]["return_mean"], out["hf"]["return_mean"], args.sampling_episodes
    p = (a + b) / 2
    se = math.sqrt(max(2 * p * (1 - p) / n, 1e-12))  # a 0/1 return: two binomial means of n episodes
    return {"episodes": n, **out, "return_difference_in_se": (a - b) / se}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder with the tool template (multiturn_vs_trl.py's "
                   "--out/model or --out/sft/final)")
    p.add_argument("--steps", type=int, default=3, help="TRL steps to capture and replay (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--lr-schedule", default="constant", choices=["constant"], help="ours is replayed at a constant rate")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sampling-episodes", type=int, default=0, help="also the sampling check: episodes per engine (0: none)")
    p.add_argument("--out", default="runs/replay-multiturn")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    result = {}
    if args.steps:
        result["updates"] = replay(args, *capture_trl(args))
    if args.sampling_episodes:
        result["sampling"] = sampling(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = "replay.json" if args.steps else "sampling.json"
    (Path(args.out) / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
