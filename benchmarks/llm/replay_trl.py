"""Do we and TRL compute the same GRPO update? Replay TRL's batches through our trainer and compare.

1. **Updates.** TRL's GRPOTrainer (options of ``compare_trl.py``) runs K steps; every batch it
   trains on (prompts, completions, masks, advantages, reference log-probs) is captured. The same
   batches then go through our ``GRPOTrainer.update`` from the same starting weights, with the
   learning rate set per step as ``grpo.llm.run`` sets it. Reported: the largest difference of
   the reference log-probs, of the advantages (ours recomputed from the rewards of TRL's
   completions), and the distance between the two final weights relative to how far TRL's moved.
   Any difference of objective, aggregation, advantage scaling, KL, clipping, gradient clipping,
   optimizer or schedule shows up here.
2. **Sampling.** The starting model samples G completions for the same prompts R times with our
   engine (KV-cached, keyed per prompt) and with ``generate`` under TRL's generation config;
   reported: mean reward, mean length, mean log-prob per completion, and the largest per-prompt
   accuracy difference in standard errors.

What this leaves out is only which prompts and which random numbers each run draws.

    .venv/bin/python benchmarks/llm/replay_trl.py --steps 20 --out runs/replay-trl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_trl  # noqa: E402  (same options as the benchmark)


def capture_trl(args: argparse.Namespace) -> tuple[dict, dict, list[dict], list[float]]:
    """Run TRL for args.steps steps; return start and final weights, every batch and every rate."""
    trainer = compare_trl.trl_trainer(args, logging_steps=1)
    return train_recording(trainer)


def train_recording(trainer) -> tuple[dict, dict, list[dict], list[float]]:
    """Train a TRL GRPOTrainer; return its start and final weights, every batch exactly as its loss saw
    it (tensors cloned) and the learning rate of each."""
    import torch

    batches, rates = [], []
    compute = trainer._compute_loss

    def hooked(model, inputs):
        batches.append({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        return compute(model, inputs)

    trainer._compute_loss = hooked
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    final = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    return start, final, batches, rates


def replay(args: argparse.Namespace, start: dict, final: dict, batches: list[dict], rates: list[float]) -> dict:
    import torch

    from grpo.core import group_advantages
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.rollout.generation import Rollout
    from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer
    from grpo.llm.data.rewards import RewardSet
    from grpo.llm.data.rewards.answer import exact_answer
    from grpo.llm.infra.schedules import lr_factor, set_learning_rates
    from grpo.llm.algorithms.grpo import GRPOTrainer

    cfg = compare_trl.ours_config(args)
    tok = load_tokenizer(args.model)
    policy = load_model(args.model)
    missing = policy.load_state_dict(start, strict=False).missing_keys
    assert set(missing) <= {"lm_head.weight"}, missing  # tied to the embedding
    ref = frozen_copy(load_model(args.model))
    trainer = GRPOTrainer(cfg, policy, tok, load_rows("addition", "train"), RewardSet.from_specs(["exact"]), ref)
    base = [g["lr"] for g in trainer.opt.param_groups]
    G = cfg.group_size
    ref_diff = adv_diff = rate_diff = 0.0
    norms = []
    for step, b in enumerate(batches):
        N, C = b["completion_ids"].shape
        mask = b["completion_mask"]
        roll = Rollout(b["prompt_ids"], b["prompt_mask"], b["completion_ids"], mask,
                       torch.zeros(N, dtype=torch.bool), [""] * N)
        # Our advantages from the rewards of TRL's completions (TRL shuffles rows: regroup by prompt).
        prompts = tok.batch_decode(b["prompt_ids"], skip_special_tokens=True)
        texts = tok.batch_decode(b["completion_ids"] * mask, skip_special_tokens=True)
        answers = [str(eval(p.rstrip("="))) for p in prompts]  # noqa: S307 (our own "12+34=" prompts)
        rewards = torch.tensor(exact_answer(prompts, texts, answer=answers))
        order = sorted(range(N), key=lambda i: prompts[i])
        assert all(prompts[order[k]] == prompts[order[k - k % G]] for k in range(N)), "groups of G per prompt"
        ours = torch.empty(N)
        ours[order] = group_advantages(rewards[order].view(-1, G), cfg.reward_scale).flatten()
        adv_diff = max(adv_diff, float((ours - b["advantages"]).abs().max()))
        ref_diff = max(ref_diff, float(((trainer._no_grad_logprobs(ref, roll) - b["ref_per_token_logps"])
                                        * mask).abs().max()))
        lr = set_learning_rates(trainer.opt, base, lr_factor(cfg.lr_schedule, step, len(batches)))
        rate_diff = max(rate_diff, abs(lr - rates[step]))
        m = trainer.update(roll, b["advantages"][:, None].expand(N, C).float(), mask.float())
        norms.append(m["policy/grad_norm"])
    moved = math.sqrt(sum(float((final[n] - start[n]).pow(2).sum()) for n in final))
    apart = math.sqrt(sum(float((p.detach() - final[n]).pow(2).sum()) for n, p in policy.named_parameters()
                          if n in final))
    return {"steps": len(batches), "batch": list(batches[0]["completion_ids"].shape),
            "max_abs_diff_ref_logprob": ref_diff, "max_abs_diff_advantage": adv_diff,
            "max_abs_diff_lr": rate_diff, "trl_weights_moved_l2": moved, "ours_minus_trl_final_l2": apart,
            "relative_final_difference": apart / moved, "our_grad_norms_first_last": [norms[0], norms[-1]]}


def sampling(args: argparse.Namespace, rounds: int, prompts: int) -> dict:
    import torch

    from grpo.llm.data.tasks import load_rows
    from grpo.llm.rollout.generation import encode_prompts, generate
    from grpo.llm.modeling.logprobs import completion_logprobs
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.data.rewards.answer import exact_answer
    from grpo.llm.rollout.seeding import prompt_keys

    gen_cfg = compare_trl.trl_trainer(args).generation_config  # TRL's sampling settings, as it builds them
    tok, model = load_tokenizer(args.model), load_model(args.model).eval()
    rows = load_rows("addition", "train")[:prompts]
    ids, mask = encode_prompts(tok, [r["prompt"] for r in rows], torch.device("cpu"), None, 8)
    G = compare_trl.COMMON["group_size"]
    answers = [r["answer"] for r in rows for _ in range(G)]
    out = {}
    torch.manual_seed(args.seed)
    for engine in ("ours", "trl-generate"):
        right, lengths, logps = torch.zeros(prompts), [], []
        for r in range(rounds):
            if engine == "ours":
                roll = generate(model, tok, ids, mask, G, gen_cfg.max_new_tokens, gen_cfg.temperature, gen_cfg.top_p,
                                gen_cfg.top_k, prompt_keys=prompt_keys(args.seed, r, 0, list(range(prompts))))
            else:
                from grpo.llm.rollout.generation import eos_ids_of, finish_rollout

                with torch.no_grad():
                    seq = model.generate(input_ids=ids.repeat_interleave(G, 0),
                                         attention_mask=mask.repeat_interleave(G, 0), generation_config=gen_cfg)
                roll = finish_rollout(tok, ids, mask, seq[:, ids.shape[1]:], eos_ids_of(tok, model), G)
            right += torch.tensor(exact_answer(None, roll.completions, answer=answers)).view(prompts, G).mean(1)
            with torch.no_grad():
                lp, _ = completion_logprobs(model, roll.prompt_ids, roll.prompt_mask, roll.completion_ids,
                                            roll.completion_mask, 1.0, group_size=G)
            logps.append(float((lp * roll.completion_mask).sum() / len(roll.completions)))
            lengths.append(float(roll.lengths.float().mean()))
        out[engine] = {"accuracy": right / rounds, "mean_length": statistics.mean(lengths),
                       "mean_logprob": statistics.mean(logps)}
    a, b = out["ours"]["accuracy"], out["trl-generate"]["accuracy"]
    p = (a + b) / 2
    se = (2 * p * (1 - p) / (rounds * G)).clamp(min=1e-9).sqrt()
    return {"rounds": rounds, "prompts": prompts, "G": G,
            **{f"{e}_{k}": (float(v.mean()) if k == "accuracy" else v) for e, d in out.items() for k, v in d.items()},
            "max_per_prompt_accuracy_diff_in_se": float(((a - b).abs() / se).max()),
            "expected_max_of_that_for_equal_samplers": "about 2.5-3 for 64 prompts"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="TRL steps to capture and replay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr-schedule", default=compare_trl.COMMON["lr_schedule"], choices=["constant", "linear", "cosine"])
    p.add_argument("--rounds", type=int, default=30, help="sampling check: rounds of G samples per prompt")
    p.add_argument("--prompts", type=int, default=64, help="sampling check: prompts")
    p.add_argument("--model", default=None, help="model folder (default: the built-in tiny model)")
    p.add_argument("--out", default="runs/replay-trl")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    if args.model is None:
        args.model = compare_trl.resolve_model()
    result = {"updates": replay(args, *capture_trl(args)), "sampling": sampling(args, args.rounds, args.prompts)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
