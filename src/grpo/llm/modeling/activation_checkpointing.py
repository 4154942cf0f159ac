"""Gradient checkpointing (activation recomputation) with dropout still off.

transformers checkpoints a decoder layer only when that layer is in training mode, but the trainer
keeps the policy in eval mode (dropout off, so the ratio is exactly 1 at mu = 1). So the checkpointed
layers are switched to training mode on their own, only while gradients are recorded, by a hook on the
module that calls them (the decoder stack): transformers up to 5.1x reads the flag in the layer's
``__call__``, before the layer's own hooks run, later versions in its ``forward``. Their submodules
(attention, MLP, their dropout) stay in eval mode. Under checkpointing the layers
drop the KV cache, so log-probs with gradients use one plain forward pass per sequence instead of
sharing each prompt's encoding (:func:`grpo.llm.modeling.logprobs.completion_logprobs` checks
:func:`recomputes`).
"""

from __future__ import annotations

from typing import Any

import torch

from grpo.llm.modeling.hf import inner_model


def _checkpointed_layers(stack: torch.nn.Module) -> list[torch.nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in stack.modules() if isinstance(m, GradientCheckpointingLayer)]


def _train_flags_while_grad(stack: torch.nn.Module, args: Any) -> None:
    grad = torch.is_grad_enabled()
    for layer in _checkpointed_layers(stack):  # found from the module called: a deep copy keeps working
        layer.training = grad


def _eval_flags_after(stack: torch.nn.Module, args: Any, output: Any) -> None:
    for layer in _checkpointed_layers(stack):  # the backward's recomputation does not read the flag
        layer.training = False


def _stack_of(model: torch.nn.Module, layer_name: str) -> str:
    """The name of the module that calls the layer ``layer_name``: its nearest ancestor that is not a
    container (``model.layers.3`` -> ``model``)."""
    modules = dict(model.named_modules())
    name = layer_name
    while name:
        name = name.rpartition(".")[0]
        if not isinstance(modules[name], (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)):
            return name
    return name


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
    layers = [name for name, m in inner.named_modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(inner).__name__} has no checkpointable layers")
    for name in dict.fromkeys(_stack_of(inner, layer) for layer in layers):  # each calling module once
        stack = inner.get_submodule(name)
        stack.register_forward_pre_hook(_train_flags_while_grad)
        stack.register_forward_hook(_eval_flags_after)


def recomputes(model: Any) -> bool:
    """True when ``model`` checkpoints activations in the current (grad-enabled) forward pass."""
    if not torch.is_grad_enabled():
        return False
    inner = inner_model(model)
    name = "is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"  # transformers < 5.x
    return bool(getattr(inner, name, False))
