"""The value model of LLM PPO: a scalar V(s_t) for every completion token, from a transformer backbone.

Two kinds, chosen by name (``PPOConfig.value_model``):

- ``critic``: a separate critic of the policy's size, the classic RLHF setup (InstructGPT,
  arXiv 2203.02155, trains a value model as large as the policy). Its backbone is a copy of the
  policy's backbone (the policy's weights at the start, as TRL and OpenRLHF do when no reward model
  is given) with its own gradients and optimizer state, plus a linear head to one scalar.
- ``shared``: a value head on the policy's own backbone. One forward pass gives both logits and
  values; the only extra parameters are the head's. Cheaper, but the value loss now shapes the
  policy's features too.

Positions: completion token t is predicted from state s_t = (prompt, o_<t), whose last token sits
at sequence position P + t - 1; V(s_t) is read there, where the policy's logits for o_t are read.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from grpo.core import Registry
from grpo.llm.modeling.activation_checkpointing import recomputes
from grpo.llm.modeling.hf import shares_prompts
from grpo.llm.modeling.hidden import BackboneForward, backbone_of, completion_hidden

HEAD_FILE = "value_head.safetensors"


class ValueModel(nn.Module):
    """V(s) for every position: ``backbone`` (a base transformer, no LM head) then a linear head.

    ``shared`` says that ``backbone`` is the policy's own (its parameters belong to the policy).
    """

    def __init__(self, backbone: nn.Module, hidden_size: int, shared: bool = False):
        super().__init__()
        self.backbone, self.shared = backbone, shared
        self.head = nn.Linear(hidden_size, 1)
        # Zero head: V = 0 everywhere at the start, so the first advantages are the raw returns
        # rather than returns minus noise from a random projection.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(backbone.parameters()).dtype)

    def completion_hidden(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                          completion_mask: Tensor, group_size: int = 1) -> Tensor:
        """Hidden states [N, C, H] of the states s_t that predict each completion token t.

        With rows in groups of ``group_size`` identical prompts, each prompt is encoded once and its
        KV cache repeated for the group (as the policy's log-probs are); else one plain forward pass.
        """
        share = shares_prompts(prompt_ids, prompt_mask, group_size) and not recomputes(self.backbone)
        return completion_hidden(BackboneForward(self.backbone), prompt_ids, prompt_mask, completion_ids,
                                 completion_mask, group_size, share)

    def completion_values(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                          completion_mask: Tensor, group_size: int = 1) -> Tensor:
        """V(s_t) [N, C] for each completion token t."""
        return self.values_of(self.completion_hidden(prompt_ids, prompt_mask, completion_ids, completion_mask,
                                                     group_size))

    def values_of(self, hidden: Tensor) -> Tensor:
        """[..., H] -> [...] in float32."""
        return self.head(hidden).squeeze(-1).float()

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters this model trains beyond the policy's: the head, plus the backbone if separate."""
        return list(self.head.parameters()) if self.shared else list(self.parameters())

    def save_pretrained(self, path: str | Path) -> None:
        """A folder with the head (safetensors) and, for a separate critic, its backbone (HF format)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not self.shared:
            self.backbone.save_pretrained(path, safe_serialization=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, str(path / HEAD_FILE))

    def load_saved(self, path: str | Path) -> None:
        """Restore what :meth:`save_pretrained` wrote (weights only; the structure must match)."""
        from safetensors.torch import load_file

        path = Path(path)
        device = next(self.head.parameters()).device
        self.head.load_state_dict({k: v.to(device) for k, v in load_file(str(path / HEAD_FILE)).items()})
        if not self.shared:
            from transformers import AutoModel

            saved = AutoModel.from_pretrained(str(path), dtype=next(self.backbone.parameters()).dtype)
            self.backbone.load_state_dict(saved.state_dict())


def hidden_size_of(policy: Any) -> int:
    return int(policy.config.get_text_config().hidden_size)


# Value models by name; all share (policy) -> ValueModel.
VALUE_MODELS: Registry[Callable[[Any], ValueModel]] = Registry("value model")


@VALUE_MODELS.register("critic")
def separate_critic(policy: Any) -> ValueModel:
    """A critic of the policy's size: a copy of its backbone (trainable) and a new head."""
    backbone = copy.deepcopy(backbone_of(policy)).train(policy.training)
    backbone.requires_grad_(True)
    return ValueModel(backbone, hidden_size_of(policy), shared=False)


@VALUE_MODELS.register("shared")
def shared_head(policy: Any) -> ValueModel:
    """A value head on the policy's own backbone."""
    if getattr(policy.config.get_text_config(), "final_logit_softcapping", None):
        raise ValueError("value_model=shared computes logits as lm_head(hidden); models with logit "
                         "soft-capping need value_model=critic")
    return ValueModel(backbone_of(policy), hidden_size_of(policy), shared=True)


def build_value_model(kind: str, policy: Any) -> ValueModel:
    """The value model named ``kind`` (``critic`` or ``shared``) for ``policy``, on its device."""
    return VALUE_MODELS.get(kind)(policy).to(next(policy.parameters()).device)
