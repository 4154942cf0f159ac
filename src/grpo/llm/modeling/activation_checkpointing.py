"""Gradient checkpointing (activation recomputation) with dropout still off.

transformers checkpoints a decoder layer only when that layer is in training mode, but the trainer
keeps the policy in eval mode (dropout off, so the ratio is exactly 1 at mu = 1). So each
checkpointed layer is switched to training mode on its own, only while gradients are recorded;
its submodules (attention, MLP, their dropout) stay in eval mode. Under checkpointing the layers
drop the KV cache, so log-probs with gradients use one plain forward pass per sequence instead of
sharing each prompt's encoding (:func:`grpo.llm.modeling.logprobs.completion_logprobs` checks
:func:`recomputes`).
"""

from __future__ import annotations

from typing import Any

import torch

from grpo.llm.modeling.hf import inner_model


def _train_flag_while_grad(module: torch.nn.Module, args: Any) -> None:
    module.training = torch.is_grad_enabled()


def _eval_flag_after(module: torch.nn.Module, args: Any, output: Any) -> None:
    module.training = False  # the backward's recomputation calls forward directly, not through this flag


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant checkpoints)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    inner = inner_model(model)
    if not getattr(inner, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(inner).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(inner, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name is deprecated
        inner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in inner.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(inner).__name__} has no checkpointable layers")
    for layer in layers:
        layer.register_forward_pre_hook(_train_flag_while_grad)
        layer.register_forward_hook(_eval_flag_after)


def recomputes(model: Any) -> bool:
    """True when ``model`` checkpoints activations in the current (grad-enabled) forward pass."""
    if not torch.is_grad_enabled():
        return False
    inner = inner_model(model)
    name = "is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"  # transformers < 5.x
    return bool(getattr(inner, name, False))
