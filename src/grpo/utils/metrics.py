"""Averaging per-minibatch metrics without a device sync per value."""

from __future__ import annotations

import torch


def mean_metrics(history: list[dict[str, torch.Tensor | float]]) -> dict[str, float]:
    """Mean of each metric over the minibatches that reported it.

    >>> mean_metrics([{"a": torch.tensor(1.0)}, {"a": torch.tensor(3.0), "b": 2.0}])
    {'a': 2.0, 'b': 2.0}
    """
    keys: dict[str, list] = {}
    for record in history:
        for k, v in record.items():
            keys.setdefault(k, []).append(torch.as_tensor(v, dtype=torch.float32).detach().reshape(()))
    return {k: float(torch.stack(v).mean()) for k, v in keys.items()}
