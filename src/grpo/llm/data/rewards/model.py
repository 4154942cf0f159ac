"""A model-based reward: the score of a sequence-classification reward model."""

from __future__ import annotations

from typing import Any

import torch


class SequenceClassifierReward:
    """Scores ``prompt + completion`` with an ``AutoModelForSequenceClassification`` (logit 0).

    Works with any reward model that has one output label (the usual RM head). Inputs are
    truncated from the left to the model's context.
    """

    accuracy = False
    columns: tuple[str, ...] = ()

    def __init__(self, name_or_path: str, device: str | torch.device = "cpu", batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = "left"
        self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path).to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device, self.batch_size = torch.device(device), batch_size
        self.__name__ = f"model:{name_or_path}"

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        scores: list[float] = []
        texts = [p + c for p, c in zip(prompts, completions)]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                 truncation=limit is not None, max_length=limit).to(self.device)
            logits = self.model(**enc).logits  # [b, labels]
            scores.extend(logits[:, 0].float().tolist())
        return scores
