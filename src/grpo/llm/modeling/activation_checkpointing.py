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


CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)


def _train_flags_while_grad(stack: torch.nn.Module, args: Any) -> None:
    grad = torch.is_grad_enabled()
    for layer in stack.grpo_checkpointed_layers:  # an attribute of the module called: a deep copy has its own
        layer.training = grad


def _eval_flags_after(stack: torch.nn.Module, args: Any, output: Any) -> None:
    for layer in stack.grpo_checkpointed_layers:  # the backward's recomputation does not read the flag
        layer.training = False


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
    modules = dict(inner.named_modules())
    stacks: dict[str, list[torch.nn.Module]] = {}  # calling module's name -> the layers it calls
    for name, module in modules.items():
        if isinstance(module, GradientCheckpointingLayer):
            caller = name.rpartition(".")[0]  # nearest ancestor that is not a container: model.layers.3 -> model
            while caller and isinstance(modules[caller], CONTAINERS):
                caller = caller.rpartition(".")[0]
            stacks.setdefault(caller, []).append(module)
    if not stacks:
        raise ValueError(f"{type(inner).__name__} has no checkpointable layers")
    for name, layers in stacks.items():
        stack = modules[name]
        stack.grpo_checkpointed_layers = tuple(layers)  # read by the hooks on every forward: no walk of the tree
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
