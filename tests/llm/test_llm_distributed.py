"""Scale-out: several processes give the one-process result.

- the real thing: ``grpo llm train --num-processes 2`` (accelerate launch, DDP over gloo on CPU)
  against the same run in one process;
- every aggregation mode, with two ranks as threads of this process (collectives through a barrier,
  gradients averaged as DDP does), cheap enough to cover the options;
- sampling keyed per prompt does not depend on the prompt's batch-mates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grpo.llm.config import GRPOConfig
from grpo.llm.infra.distributed import Runtime
from grpo.llm.infra.launch import launch_command
from grpo.llm.rollout.generation import encode_prompts, generate
from grpo.llm.data.rewards import RewardSet
from grpo.llm.run import check_scale_out, train
from grpo.llm.rollout.seeding import prompt_keys, sample_from, uniforms
from grpo.llm.algorithms.grpo import GRPOTrainer
from grpo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def test_seeded_sampling_does_not_depend_on_batch_mates(random_tiny):
    model, tok = random_tiny
    texts = ["12+34=", "9+9=", "50+50=", "1+2="]
    keys = prompt_keys(7, 3, 0, [0, 1, 2, 3])

    def sample(idx: list[int]) -> list[str]:
        ids, mask = encode_prompts(tok, [texts[i] for i in idx], torch.device("cpu"), None, 6)
        return generate(model, tok, ids, mask, 4, 6, prompt_keys=keys[idx]).completions

    together = sample([0, 1, 2, 3])
    assert sample([0, 1]) + sample([2, 3]) == together  # as if on two ranks
    assert sample([2]) == together[8:12]
    other = prompt_keys(8, 3, 0, [0, 1, 2, 3])  # another run seed: other samples
    ids, mask = encode_prompts(tok, texts, torch.device("cpu"), None, 6)
    assert generate(model, tok, ids, mask, 4, 6, prompt_keys=other).completions != together


def test_keyed_uniforms_sample_the_distribution():
    keys = prompt_keys(0, 0, 0, list(range(20_000)))
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).expand(len(keys), 4)
    freq = torch.bincount(sample_from(probs, uniforms(keys, 5)), minlength=4).float() / len(keys)
    assert freq[1] == 0 and torch.allclose(freq, probs[0], atol=0.015)


def test_shard_keeps_whole_prompts_and_says_what_to_change():
    rt = Runtime(torch.device("cpu"))
    rt.world_size, rt.rank = 2, 1
    assert rt.shard(8) == slice(4, 8)
    with pytest.raises(ValueError, match="multiple of 2"):
        rt.shard(5)


@pytest.mark.parametrize("options, message", [
    ({"env": "guess-number", "truncated_reward": 0.0}, "--env .multi-turn. does not support --truncated-reward"),
    ({"dynamic_sampling": True, "accelerate_config": "examples/accelerate/fsdp.yaml", "micro_batch": 3},
     "--dynamic-sampling under FSDP2 needs whole groups per micro-batch: --micro-batch 3 is not a multiple of "
     "--group-size 8"),
])
def test_several_processes_are_refused_once_before_they_start(tmp_path, options, message):
    """What the processes would each refuse is refused by the launching command, before any starts."""
    from grpo.llm.run import preflight

    with pytest.raises(ValueError, match=message):
        preflight(GRPOConfig(num_processes=2, out=str(tmp_path / "run"), **options))
    preflight(GRPOConfig(num_processes=2, out=str(tmp_path / "run")))  # negative control: nothing to refuse
    # the step's rounds are every process's (prompts and --env episodes alike): dynamic sampling runs under DDP,
    # and under FSDP2 with whole groups per micro-batch
    preflight(GRPOConfig(num_processes=2, dynamic_sampling=True, out=str(tmp_path / "run")))
    preflight(GRPOConfig(num_processes=2, dynamic_sampling=True, accelerate_config="examples/accelerate/fsdp.yaml",
                         micro_batch=16, out=str(tmp_path / "run")))
    preflight(GRPOConfig(num_processes=2, env="guess-number", dynamic_sampling=True, out=str(tmp_path / "run")))


def test_unsupported_combinations_are_refused():
    rt = Runtime(torch.device("cpu"))
    rt.world_size, rt.strategy, rt.deepspeed = 2, "DeepSpeed ZeRO-2", True
    with pytest.raises(ValueError, match="runs under DDP or FSDP2, not DeepSpeed"):
        check_scale_out(GRPOConfig(dynamic_sampling=True), rt)
    rt.strategy, rt.deepspeed = "DDP", False
    check_scale_out(GRPOConfig(dynamic_sampling=True), rt)  # control: DDP keeps every process's groups in step
    from grpo.llm.ppo_config import PPOConfig

    with pytest.raises(ValueError, match="several processes.*value model and optimizer are not wrapped"):
        check_scale_out(PPOConfig(), rt)
    with pytest.raises(ValueError, match="--adapter"):
        check_scale_out(PPOConfig(adapter="lora"), Runtime(torch.device("cpu")))


def test_launch_command_is_accelerate_launch_of_grpo():
    cmd = launch_command(4, None, "no", ["llm", "train", "--config", "c.yaml"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[-5:] == ["grpo", "llm", "train", "--config", "c.yaml"]
    with_file = launch_command(8, "examples/accelerate/fsdp.yaml", "bf16", ["llm", "train"])
    assert with_file[with_file.index("--config_file") + 1] == "examples/accelerate/fsdp.yaml"
    assert "--multi_gpu" not in with_file


class ThreadRank(Runtime):
    """Rank ``rank`` of ``world`` ranks run as threads: collectives through a barrier, gradients
    averaged before clipping as DDP's all-reduce does."""

    def __init__(self, rank: int, world: int, shared: dict):
        super().__init__(torch.device("cpu"))
        self.rank, self.world_size, self.is_main, self.shared = rank, world, rank == 0, shared

    def _exchange(self, value):
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = value
        barrier.wait()
        everyone = list(slots)
        barrier.wait()
        return everyone

    def sum(self, x):
        return sum(torch.as_tensor(v, dtype=torch.float64) for v in self._exchange(torch.as_tensor(x, dtype=torch.float64)))

    def max(self, x):
        return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in self._exchange(x)]).max()

    def cat(self, x):
        return torch.cat(self._exchange(x))

    def gather_objects(self, obj):
        return self._exchange(obj)

    def unscale(self, optimizer):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = self._exchange([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params])
        for i, p in enumerate(params):
            p.grad = sum(g[i] for g in grads) / self.world_size


def _trainer(cfg, tiny_path, runtime=None):
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer

    policy, tok = load_model(str(tiny_path)), load_tokenizer(str(tiny_path))
    return GRPOTrainer(cfg, policy, tok, load_rows("addition"), RewardSet.from_specs(["exact", "digits:0.5"]),
                       frozen_copy(policy), runtime=runtime)


def _in_two_thread_ranks(make, steps: int) -> tuple[list, list, list]:
    """``make(runtime)`` trainers on two ThreadRanks, stepped ``steps`` times; the two trainers, rank
    0's metrics of each step, and each rank's batch of each step."""
    shared = {"slots": [None, None], "barrier": threading.Barrier(2)}
    ranks = [make(ThreadRank(r, 2, shared)) for r in range(2)]
    errors: list[BaseException] = []
    metrics: list[dict] = []
    batches: list[list] = [[None] * steps, [None] * steps]

    def run(t):
        try:
            for step in range(steps):
                m, batches[t.rt.rank][step] = t.step(step)
                if t.rt.rank == 0:
                    metrics.append(m)
        except BaseException as err:  # surfaced below; a dead rank would leave the other at the barrier
            errors.append(err)
            shared["barrier"].abort()

    threads = [threading.Thread(target=run, args=(t,)) for t in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return ranks, metrics, batches


def dynamic_one_vs_two_ranks(make, steps: int, kept, keys: tuple[str, ...]) -> tuple[Any, list, int]:
    """Dynamic sampling on one process and on two ThreadRanks: per step the same kept groups (``kept(batch)``,
    a sorted list; the ranks' joined) and metrics ``keys``; the same weights after ``steps`` (replicas
    identical). Returns the one-process trainer, its (metrics, batch) of each step and the stand-ins counted."""
    one = make()
    one_out = [one.step(step) for step in range(steps)]
    ranks, metrics, batches = _in_two_thread_ranks(make, steps)
    stand_ins = 0
    for step, (m, b) in enumerate(one_out):
        parts = [batches[r][step] for r in (0, 1)]
        stand_ins += sum(p.stand_in for p in parts)
        assert kept(b) == sorted(kept(parts[0]) + kept(parts[1]))  # the same groups, split between the ranks
        for key in keys:
            assert metrics[step].get(key) == pytest.approx(m.get(key), rel=1e-4, abs=1e-6), key
    for p1, p0, p in zip(ranks[1].policy.parameters(), ranks[0].policy.parameters(), one.policy.parameters()):
        assert torch.equal(p0, p1)  # replicas identical
        torch.testing.assert_close(p0, p, atol=1e-6, rtol=1e-5)  # = the one-process run
    assert any(float((p - q).detach().abs().max()) > 0 for p, q in zip(one.policy.parameters(), make().policy.parameters()))
    return one, one_out, stand_ins


@pytest.mark.parametrize("aggregation,reward_scale", [("sequence-mean", "group"), ("token-mean", "batch"),
                                                      ("constant", "none")])
def test_two_ranks_give_the_one_process_update(tiny_path, aggregation, reward_scale):
    # SGD with momentum: weights linear in the gradients (AdamW turns float noise on near-zero ones into +-lr)
    cfg = GRPOConfig(model=str(tiny_path), prompts_per_step=4, group_size=4, micro_batch=3, mu=2, max_new_tokens=4,
                     aggregation=aggregation, reward_scale=reward_scale, entropy_coef=0.01, seed=3, optimizer="sgd",
                     lr=0.05)
    one = _trainer(cfg, tiny_path)
    for step in range(2):
        one.step(step)
    ranks, _, _ = _in_two_thread_ranks(lambda rt: _trainer(cfg, tiny_path, rt), 2)
    for p1, p0, p in zip(ranks[1].policy.parameters(), ranks[0].policy.parameters(), one.policy.parameters()):
        assert torch.equal(p0, p1)  # replicas identical
        torch.testing.assert_close(p0, p, atol=1e-6, rtol=1e-5)  # = the one-process run
    moved = [float((p - q).detach().abs().max()) for p, q in zip(one.policy.parameters(), _trainer(cfg, tiny_path).policy.parameters())]
    assert max(moved) > 1e-3  # the update moved the weights well past the tolerance


def test_multi_turn_on_two_ranks_gives_the_one_process_update():
    """Each rank plays its share of the step's groups (episodes sampled by their place in the global
    batch): the same episodes, the same update and the same episode metrics as one process."""
    from grpo.llm.algorithms.multiturn import MultiTurnTrainer
    from grpo.llm.modeling.guess_tiny import guess_model_path
    from grpo.llm.modeling.models import frozen_copy, load_model, load_tokenizer

    path = str(guess_model_path())
    # micro_batch 3 divides both ranks' 6 episodes: the same micro-batches as one process (metrics are means of theirs)
    cfg = GRPOConfig(model=path, env="guess-number", prompts_per_step=4, group_size=3, max_turns=4, max_new_tokens=9,
                     micro_batch=3, mu=2, temperature=1.0, env_advantage="turn", seed=11)

    def make(runtime=None):
        policy = load_model(path)
        # SGD: the weights move by the gradient itself (Adam would magnify float noise on near-zero gradients).
        return MultiTurnTrainer(cfg, policy, load_tokenizer(path), frozen_copy(policy),
                                torch.optim.SGD(policy.parameters(), lr=0.05), runtime=runtime)

    one = make()
    one_out = [one.step(step) for step in range(2)]
    one_metrics = [m for m, _ in one_out]
    ranks, metrics, batches = _in_two_thread_ranks(make, 2)
    for step, (_, b) in enumerate(one_out):  # the same episodes, split by group between the ranks
        split = [e.ids for r in (0, 1) for e in batches[r][step].episodes]
        assert [e.ids for e in b.episodes] == split and len(batches[0][step].episodes) == 6
    for p1, p0, p in zip(ranks[1].policy.parameters(), ranks[0].policy.parameters(), one.policy.parameters()):
        assert torch.equal(p0, p1)  # replicas identical
        torch.testing.assert_close(p0, p, atol=1e-6, rtol=1e-5)  # = the one-process run
    assert one_metrics[0]["policy/grad_norm"] > 0  # the update moved something
    for x, y in zip(one_metrics, metrics):
        for key in ("episode/return_mean", "episode/return_std", "episode/turns_mean", "env/solved",
                    "groups/used", "groups/zero_std_frac", "kl/ref", "loss/policy"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key


def test_multi_turn_runs_on_ddp_and_fsdp2_not_deepspeed():
    rt = Runtime(torch.device("cpu"))
    rt.world_size, rt.strategy, rt.deepspeed = 2, "DeepSpeed ZeRO-2", True
    with pytest.raises(ValueError, match="several processes under DeepSpeed ZeRO-2 \\(DDP or FSDP2 only; launch with DDP\\)"):
        check_scale_out(GRPOConfig(env="guess-number"), rt)
    rt.strategy, rt.deepspeed, rt.fsdp = "FSDP2", False, True
    check_scale_out(GRPOConfig(env="guess-number"), rt)  # control: FSDP2 keeps the episode loop in step
    with pytest.raises(ValueError, match="--env under FSDP2 needs whole groups per micro-batch: --micro-batch 3 "):
        check_scale_out(GRPOConfig(env="guess-number", micro_batch=3, group_size=4), rt)
    rt.strategy = "DDP"
    check_scale_out(GRPOConfig(env="guess-number"), rt)
    # before any process starts: an FSDP accelerate config with micro-batches cutting groups is refused in one line
    from grpo.llm.run import preflight

    fsdp = GRPOConfig(env="guess-number", num_processes=2, device="cpu", overwrite=True, micro_batch=3,
                      accelerate_config=str(REPO / "examples" / "accelerate" / "fsdp.yaml"))
    with pytest.raises(ValueError, match="--env under FSDP2 needs whole groups per micro-batch"):
        preflight(fsdp)
    fsdp.micro_batch = None
    preflight(fsdp)
    preflight(GRPOConfig(env="guess-number", num_processes=2, device="cpu", overwrite=True,
                         accelerate_config=str(REPO / "examples" / "accelerate" / "ddp.yaml")))


def test_two_gloo_processes_equal_one_process(tiny_path, tmp_path):
    """accelerate launch, DDP over gloo: parameters identical on both ranks (checked by the run itself,
    ``replicas_in_sync``) and equal to one process with the same global batch and seed; one progress
    bar, one log, one writer."""
    opts = {"model": str(tiny_path), "steps": 3, "prompts_per_step": 4, "group_size": 4, "micro_batch": 4,
            "mu": 2, "max_new_tokens": 4, "aggregation": "token-mean", "reward_scale": "batch",
            "eval_split": None, "tensorboard": False, "threads": 1, "device": "cpu", "seed": 5,
            "optimizer": "sgd", "lr": 0.05}  # weights linear in the gradients (AdamW magnifies float noise)
    one = train(GRPOConfig(**opts, out=str(tmp_path / "one"), progress=False), log=lambda *_: None)

    flags = [f"--{k.replace('_', '-')}={'none' if v is None else v}" for k, v in opts.items()]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "grpo", "llm", "train", "--num-processes", "2",
                           "--out", str(tmp_path / "two"), *flags], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_in_sync"] is True
    a = load_file(tmp_path / "one" / "final" / "model.safetensors")
    b = load_file(tmp_path / "two" / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-5)
    # one writer, one log, one bar
    m1, m2 = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [m["step"] for m in m2] == [0, 1, 2]
    for x, y in zip(m1, m2):  # metrics reduced over ranks = the one-process metrics
        for key in ("reward/total/mean", "reward/exact/std", "train/accuracy", "completions/mean_length",
                    "kl/ref", "groups/used", "loss/policy"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key
    assert proc.stdout.count("run folder:") == 1
    assert proc.stderr.count("0/3 [00:00<?, ?step/s]") == 1  # the bar is created once
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_bad_options_fail_once_before_processes_start(tmp_path, capsys):
    from grpo.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert main(["llm", "train", "--num-processes", "2", "--device", "cpu", "--out", str(tmp_path / "run")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["llm", "train", "--num-processes", "2", "--device", "cpu", "--mixed-precision", "fp16",
                 "--out", str(tmp_path / "new")]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
