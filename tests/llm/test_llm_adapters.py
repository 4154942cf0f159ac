"""Memory savers: peft adapters (reference = adapters off), gradient checkpointing, mixed precision."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from grpo.cli import main
from grpo.llm.modeling.adapters import ADAPTERS, AdapterOffReference, hf_name, merged_weights
from grpo.llm.config import GRPOConfig
from grpo.llm.modeling.logprobs import completion_logprobs
from grpo.llm.modeling.activation_checkpointing import enable_gradient_checkpointing
from grpo.llm.run import train

FAST = dict(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=4, eval_limit=8, progress=False,
            tensorboard=False, threads=1)


def _peft(model, kind="lora", **kw):
    from peft import get_peft_model

    cfg = GRPOConfig(adapter=kind, lora_r=4, **kw)
    return get_peft_model(model, ADAPTERS.get(kind)(cfg))


def _batch(tok):
    enc = tok(["12+34=", "5+7="], return_tensors="pt", padding=True, add_special_tokens=False)
    comp = torch.tensor([[5, 6, 1], [7, 1, 0]])
    return enc.input_ids, enc.attention_mask, comp, (comp != 0).long()


def test_reference_is_the_base_with_adapters_off_and_holds_no_copy(random_tiny):
    model, tok = random_tiny
    base = copy.deepcopy(model)
    policy = _peft(model)
    for name, p in policy.named_parameters():  # a trained-looking adapter: the policy now differs from the base
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    ref = AdapterOffReference(policy)
    ids, mask, comp, cmask = _batch(tok)
    with torch.no_grad():
        want = completion_logprobs(base, ids, mask, comp, cmask)[0]
        got = completion_logprobs(ref, ids, mask, comp, cmask, group_size=1)[0]
        moved = completion_logprobs(policy, ids, mask, comp, cmask)[0]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(moved, want)
    assert {id(p) for p in ref.parameters()} == {id(p) for p in policy.parameters()}  # no second copy


@pytest.mark.parametrize("kind", ["lora", "dora", "rslora"])
def test_merged_weights_are_the_plain_models(random_tiny, kind):
    model, tok = random_tiny
    plain = copy.deepcopy(model)
    policy = _peft(model, kind)
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    with merged_weights(policy) as weights:
        plain.load_state_dict(dict(weights))
    for k, v in policy.state_dict().items():  # unmerged again
        torch.testing.assert_close(v, before[k], atol=1e-6, rtol=1e-5)
    ids, mask, comp, cmask = _batch(tok)
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(plain, ids, mask, comp, cmask)[0],
                                   completion_logprobs(policy, ids, mask, comp, cmask)[0], atol=1e-5, rtol=1e-4)
    assert hf_name("base_model.model.lm_head.weight") == "lm_head.weight"


def test_lora_run_trains_the_adapter_saves_it_merges_and_resumes(tiny_path, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    summary = train(GRPOConfig(model=str(tiny_path), out=str(out), adapter="lora", lora_r=4, save_merged=True,
                               save_every=2, lr=1e-2, **FAST), log=lambda *_: None)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_path))
    assert summary["trainable_parameters"] < sum(p.numel() for p in base.parameters()) / 5
    final = out / "final"
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert not (final / "model.safetensors").exists()
    adapter = load_file(final / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # the adapter was trained
    merged = AutoModelForCausalLM.from_pretrained(str(out / "final-merged"))
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_path)), str(final))
    ids = torch.tensor([[20, 21, 15, 22, 23, 33]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, policy(ids).logits, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits)
    assert (out / "checkpoint-000002" / "adapter_model.safetensors").exists()
    resumed = train(GRPOConfig(model=str(tiny_path), out=str(out), adapter="lora", lora_r=4, resume=True,
                               **{**FAST, "steps": 3}), log=lambda *_: None)
    assert resumed["steps"] == 3


def test_adapter_run_refuses_reference_reset():
    with pytest.raises(ValueError, match="cannot be reset"):
        from grpo.llm.modeling.adapters import check_adapter_options

        check_adapter_options(GRPOConfig(adapter="lora", ref_reset_every=5))
    with pytest.raises(ValueError, match="adapter runs"):
        GRPOConfig(save_merged=True)


def test_gradient_checkpointing_gives_the_same_logprobs_and_gradients_with_dropout_off(random_tiny):
    model, tok = random_tiny
    model.config.attention_dropout = 0.5  # would change the result if dropout were switched on
    ckpt = copy.deepcopy(model)
    enable_gradient_checkpointing(ckpt)
    ids, mask, comp, cmask = _batch(tok)
    ids, mask = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)  # groups of 2: the shared-prompt path
    comp, cmask = torch.cat([comp, comp.flip(0)]), torch.cat([cmask, cmask.flip(0)])
    calls = []
    ckpt.model.layers[0].self_attn.register_forward_hook(lambda *_: calls.append(1))
    results = []
    for m in (model, ckpt):
        logp, _, _ = completion_logprobs(m, ids, mask, comp, cmask, group_size=2)
        forward_calls = len(calls)
        (logp * cmask).sum().backward()
        results.append((logp.detach(), [p.grad.clone() for p in m.parameters()]))
    assert forward_calls == 1 and len(calls) == 2  # one plain pass, recomputed once in the backward
    torch.testing.assert_close(results[1][0], results[0][0])
    for g1, g0 in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(g1, g0, atol=1e-6, rtol=1e-5)
    assert not ckpt.training and not any(m.training for m in ckpt.modules())  # eval mode outside the pass


def test_lora_with_checkpointing_and_bf16_autocast_trains(tiny_path, tmp_path):
    summary = train(GRPOConfig(model=str(tiny_path), out=str(tmp_path / "r"), adapter="lora", lora_r=4,
                               gradient_checkpointing=True, mixed_precision="bf16", device="cpu", **FAST),
                    log=lambda *_: None)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss/total"])) for r in rows)
    assert summary["accuracy_after"] is not None


def test_fp16_on_cpu_is_refused_with_what_to_use(tiny_path, tmp_path, capsys):
    code = main(["llm", "train", "--model", str(tiny_path), "--out", str(tmp_path / "r"), "--device", "cpu",
                 "--mixed-precision", "fp16", "--steps", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "fp16 needs a CUDA device" in err and "bf16" in err
    assert main(["llm", "train", "--model", str(tiny_path), "--out", str(tmp_path / "s"),
                 "--mixed-precision", "bf16", "--dtype", "bfloat16", "--steps", "1"]) == 2
    assert "dtype float32" in capsys.readouterr().err


def test_loss_scaling_skips_an_overflowing_step_and_lowers_the_scale(tiny_path):
    """The fp16 sequence (scaled backward, unscale, clip, step or skip, update the scale), run on CPU
    with a scale so large that the first step's gradients overflow."""
    from grpo.llm.data.tasks import load_rows
    from grpo.llm.infra.distributed import Runtime
    from grpo.llm.modeling.models import load_model, load_tokenizer
    from grpo.llm.data.rewards import RewardSet
    from grpo.llm.algorithms.grpo import GRPOTrainer

    rt = Runtime(torch.device("cpu"))
    rt.scaler = torch.amp.GradScaler("cpu", init_scale=3e38, backoff_factor=1e-30)
    cfg = GRPOConfig(model=str(tiny_path), prompts_per_step=4, group_size=4, max_new_tokens=4, beta=0.0, lr=1e-2)
    policy = load_model(str(tiny_path))
    trainer = GRPOTrainer(cfg, policy, load_tokenizer(str(tiny_path)), load_rows("addition"),
                          RewardSet.from_specs(["exact", "digits"]), None, runtime=rt)
    before = [p.detach().clone() for p in policy.parameters()]
    m0, _ = trainer.step(0)
    assert m0["train/skipped_updates"] == 1 and all(torch.equal(a, p) for a, p in zip(before, policy.parameters()))
    assert rt.scaler.get_scale() < 1e10  # lowered after the overflow
    m1, _ = trainer.step(1)
    assert m1["train/skipped_updates"] == 1  # this one stepped
    assert any(not torch.equal(a, p) for a, p in zip(before, policy.parameters()))
