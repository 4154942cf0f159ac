"""Adapters through peft (LoRA, DoRA, rsLoRA): only small low-rank matrices are trained, and the
reference policy is the same model with its adapters switched off, so no second copy of the
weights is held (the base weights never change, so the base *is* the initial policy).

Adapters are chosen by name (``--adapter``); each entry builds a ``peft.LoraConfig`` from the run's
config. A saved adapter run is a peft folder (``adapter_config.json``, ``adapter_model.safetensors``);
``--save-merged`` also writes the merged model as a normal model folder.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from grpo.core import Registry

# Adapter name -> builder of its peft config; all share (cfg) -> peft.LoraConfig.
ADAPTERS: Registry[Callable[[Any], Any]] = Registry("adapter")


def _lora_config(cfg: Any, **extra: Any) -> Any:
    from peft import LoraConfig

    target = cfg.lora_target_modules or "all-linear"
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, lora_dropout=0.0,
                      target_modules=target if isinstance(target, str) else list(target), task_type="CAUSAL_LM",
                      **extra)


ADAPTERS.register("lora")(lambda cfg: _lora_config(cfg))
ADAPTERS.register("dora")(lambda cfg: _lora_config(cfg, use_dora=True))  # weight-decomposed LoRA
ADAPTERS.register("rslora")(lambda cfg: _lora_config(cfg, use_rslora=True))  # alpha / sqrt(r) scaling


def is_peft(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def load_policy(cfg: Any, path: str, resume_from: Path | None, device: torch.device) -> Any:
    """The policy: the model at ``path`` (or the checkpoint), with a fresh or resumed adapter when
    ``cfg.adapter`` names one."""
    from grpo.llm.modeling.models import load_model

    if not cfg.adapter:
        return load_model(str(resume_from or path), cfg.dtype, device)
    from peft import PeftModel, get_peft_model

    base = load_model(path, cfg.dtype, device)
    if resume_from is not None:
        return PeftModel.from_pretrained(base, str(resume_from), is_trainable=True)
    return get_peft_model(base, ADAPTERS.get(cfg.adapter)(cfg))


class AdapterOffReference:
    """The reference policy of an adapter run: the policy's own module with adapters disabled for
    each call. Holds no weights of its own (frozen by construction: the base is not trained)."""

    def __init__(self, policy: Any):
        if not is_peft(policy):
            raise TypeError("AdapterOffReference needs a peft model")
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.policy.disable_adapter():
            return self.policy(*args, **kwargs)

    def get_base_model(self) -> Any:  # for signature checks (grpo.llm.modeling.hf.inner_model)
        return self.policy.get_base_model()

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.policy.parameters()

    def eval(self) -> "AdapterOffReference":
        return self


def hf_name(peft_name: str) -> str | None:
    """A peft parameter name as the plain model's (None for adapter weights).

    >>> hf_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight")
    'model.layers.0.self_attn.q_proj.weight'
    >>> hf_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") is None
    True
    """
    if ".lora_" in peft_name or "lora_magnitude_vector" in peft_name:
        return None
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


@contextmanager
@torch.no_grad()
def merged_weights(model: Any) -> Iterator[list[tuple[str, Tensor]]]:
    """(name, tensor) of the model as a plain model, adapters merged in, for the duration of the block.

    A peft model is merged in place and unmerged afterwards (as TRL does for vLLM): no copy of the
    weights is made. The tensors are the live parameters: copy them if they must outlive the block.
    """
    if not is_peft(model):
        yield list(model.state_dict().items())
        return
    model.merge_adapter()
    try:
        named = [(hf_name(k), v) for k, v in model.state_dict().items()]
        yield [(k, v) for k, v in named if k is not None]
    finally:
        model.unmerge_adapter()


def save_merged(path: Path, model: Any, tokenizer: Any) -> None:
    """The adapter run as a normal model folder (adapters merged into the base weights)."""
    from grpo.llm.infra.checkpoint import save_model

    with merged_weights(model) as weights:
        state = {k: v.detach().clone() for k, v in weights}
    base = model.get_base_model()  # the plain model class (with adapter layers inside), its config

    class _Merged:  # writes the merged weights under the plain model's names
        @staticmethod
        def save_pretrained(target: Any, **kwargs: Any) -> None:
            base.save_pretrained(target, state_dict=state, **kwargs)

    save_model(path, _Merged(), tokenizer)


def check_adapter_options(cfg: Any) -> None:
    """Options that an adapter run cannot honour, refused with what to change."""
    if cfg.adapter and cfg.ref_reset_every:
        raise ValueError("ref_reset_every with an adapter: the reference is the base model with adapters off "
                         "and cannot be reset; train without --adapter to reset the reference")
