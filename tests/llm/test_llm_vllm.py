"""``--generation vllm`` against a fake ``vllm`` module (vLLM needs a CUDA machine): the engine is
built from the policy's folder, sampled with one SamplingParams per prompt, and gets the policy's
weights after every update; without vLLM, a one-line error says how to install it."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from grpo.cli import main
from grpo.llm.config import GRPOConfig
from grpo.llm.data.tasks import load_rows
from grpo.llm.modeling.models import load_model, load_tokenizer
from grpo.llm.data.rewards import RewardSet
from grpo.llm.algorithms.grpo import GRPOTrainer


class FakeLLM:
    """Records what the trainer asks of vLLM; answers the right sum (stopped at EOS, which vLLM left
    out) for even samples and "1234..." (cut at max_tokens) for odd ones."""

    def __init__(self, model: str, **kwargs):
        self.kwargs = {"model": model, **kwargs}
        self.loaded: list[dict[str, torch.Tensor]] = []
        self.model = types.SimpleNamespace(load_weights=lambda weights: self.loaded.append(
            {k: v.detach().clone() for k, v in weights}))
        self.worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=self.model))
        self.calls: list[tuple] = []
        FAKE.instances.append(self)

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.calls.append(("collective_rpc",))
        return [method(self.worker, *args, **(kwargs or {}))]

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache",))

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append(("generate", prompts, sampling_params))
        tok = FAKE.tokenizer
        outs = []
        for prompt, p in zip(prompts, sampling_params):
            a, b = tok.decode(prompt["prompt_token_ids"]).rstrip("=").split("+")
            samples = []
            for j in range(p.n):
                if j % 2 == 0:
                    samples.append(types.SimpleNamespace(token_ids=tok.encode(str(int(a) + int(b)),
                                                                              add_special_tokens=False),
                                                         finish_reason="stop"))
                else:
                    samples.append(types.SimpleNamespace(
                        token_ids=tok.encode("1234567890"[:p.max_tokens], add_special_tokens=False),
                        finish_reason="length"))
            if getattr(p, "logprobs", None) == 0:  # the sampled token's log-prob: -0.25 for every token
                for c in samples:
                    c.logprobs = [{t: types.SimpleNamespace(logprob=-0.25)} for t in c.token_ids]
            outs.append(types.SimpleNamespace(outputs=samples))
        return outs


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


FAKE = types.ModuleType("vllm")
FAKE.LLM, FAKE.SamplingParams, FAKE.instances = FakeLLM, SamplingParams, []


@pytest.fixture()
def fake_vllm(monkeypatch, tiny_path):
    FAKE.instances.clear()
    FAKE.tokenizer = load_tokenizer(str(tiny_path))
    monkeypatch.setitem(sys.modules, "vllm", FAKE)
    return FAKE


def _trainer(tiny_path, **kw):
    cfg = GRPOConfig(model=str(tiny_path), generation="vllm", prompts_per_step=2, group_size=4, max_new_tokens=4,
                     seed=11, beta=0.0, **kw)
    policy, tok = load_model(str(tiny_path)), load_tokenizer(str(tiny_path))
    return GRPOTrainer(cfg, policy, tok, load_rows("addition"), RewardSet.from_specs(["exact"]), None), cfg


def test_engine_samples_with_per_prompt_params_and_gets_weights_after_each_update(fake_vllm, tiny_path):
    trainer, cfg = _trainer(tiny_path, temperature=0.7, top_p=0.9, lr=1e-2)
    (llm,) = fake_vllm.instances
    assert llm.kwargs["model"] == str(tiny_path) and llm.kwargs["dtype"] == "float32" and llm.kwargs["seed"] == 11
    assert len(llm.loaded) == 1  # the policy is pushed once at start (resumed and adapter runs differ from the folder)
    initial = llm.loaded[0]
    assert initial.keys() == trainer.policy.state_dict().keys()

    metrics, groups = trainer.step(0)
    gen = [c for c in llm.calls if c[0] == "generate"]
    assert len(gen) == 1
    _, prompts, params = gen[0]
    tok = trainer.tok
    assert [tok.decode(p["prompt_token_ids"]) for p in prompts] == groups.texts  # unpadded prompt ids
    assert [p.n for p in params] == [4, 4] and {p.temperature for p in params} == {0.7}
    assert {p.top_p for p in params} == {0.9} and {p.top_k for p in params} == {-1}
    assert {p.max_tokens for p in params} == {4} and params[0].seed != params[1].seed  # keyed per prompt
    assert params[0].stop_token_ids == [tok.eos_token_id]
    roll = groups.rollout
    assert roll.completions[0] == groups.rows[0]["answer"] and roll.completions[1] == "1234"
    assert roll.lengths[0] == len(roll.completions[0]) + 1 and roll.lengths[1] == 4  # EOS restored into the mask
    assert metrics["train/accuracy"] == 0.5
    assert roll.truncated.tolist()[:2] == [False, True]

    assert len(llm.loaded) == 2  # pushed after the update ...
    assert llm.calls[-1] == ("reset_prefix_cache",)  # ... and the prefix cache dropped
    pushed = llm.loaded[-1]
    for name, p in trainer.policy.state_dict().items():
        torch.testing.assert_close(pushed[name], p)
    assert any(not torch.equal(pushed[k], initial[k]) for k in pushed)  # the update moved the weights
    trainer.step(1)
    assert len(llm.loaded) == 3


def test_adapter_runs_push_merged_plain_weights(fake_vllm, tiny_path):
    from peft import get_peft_model

    from grpo.llm.modeling.adapters import ADAPTERS

    cfg = GRPOConfig(model=str(tiny_path), generation="vllm", adapter="lora", lora_r=4, prompts_per_step=2,
                     group_size=4, max_new_tokens=4, lr=5e-2, beta=0.0)
    policy = get_peft_model(load_model(str(tiny_path)), ADAPTERS.get("lora")(cfg))
    trainer = GRPOTrainer(cfg, policy, load_tokenizer(str(tiny_path)), load_rows("addition"),
                          RewardSet.from_specs(["exact"]), None)
    trainer.step(0)
    (llm,) = fake_vllm.instances
    pushed = llm.loaded[-1]
    plain = load_model(str(tiny_path)).state_dict()
    assert pushed.keys() == plain.keys()  # plain names, no adapter tensors
    merged = policy.merge_and_unload().state_dict()
    for name in pushed:
        torch.testing.assert_close(pushed[name], merged[name], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(pushed[k], plain[k]) for k in pushed)


def test_missing_vllm_says_how_to_install(monkeypatch, tiny_path, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    code = main(["llm", "train", "--model", str(tiny_path), "--out", str(tmp_path / "r"), "--generation", "vllm",
                 "--steps", "1", "--eval-split", "none"])
    assert code == 2
    err = capsys.readouterr().err
    assert "pip install 'grpo-lab[vllm]'" in err and "--generation cached" in err and len(err.splitlines()) == 1


def test_engine_returns_its_sampling_log_probs_for_the_correction(fake_vllm, tiny_path):
    trainer, cfg = _trainer(tiny_path, rollout_correction="token-truncate")
    (llm,) = fake_vllm.instances
    assert llm.kwargs["logprobs_mode"] == "processed_logprobs"  # after temperature and top-k/top-p
    metrics, groups = trainer.step(0)
    roll = groups.rollout
    gen = [c for c in llm.calls if c[0] == "generate"]
    assert {p.logprobs for p in gen[0][2]} == {0}
    n0 = int(roll.lengths[0])  # even sample: the sum, then the EOS vLLM left out (its log-prob unknown)
    assert roll.sampling_logp[0, :n0 - 1].tolist() == [-0.25] * (n0 - 1) and math.isnan(roll.sampling_logp[0, n0 - 1])
    assert roll.sampling_logp[1, :4].tolist() == [-0.25] * 4
    assert "rollout_is/ratio_mean" in metrics  # the correction compared them with the trainer's
