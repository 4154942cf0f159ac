"""The optimiser, by name, and an optimiser step that refuses non-finite losses and gradients."""

from __future__ import annotations

import torch

from grpo.errors import NonFiniteError

__all__ = ["GuardedStep", "NonFiniteError", "OPTIMIZERS", "make_optimizer"]

# name -> (class, its own options). AdamW trains. SGD with momentum 0.9 moves the weights by a running sum of
# lr x gradient, linear in the gradients: two runs whose gradients agree to float noise end with weights that
# agree to lr x that noise, and its momentum is state a resumed run must restore. Adam divides by the
# gradient's own running size, which turns noise on a near-zero gradient into a step of +-lr.
OPTIMIZERS = {"adamw": (torch.optim.AdamW, {}), "sgd": (torch.optim.SGD, {"momentum": 0.9})}


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``OPTIMIZERS[name]`` over ``params`` (tensors or parameter groups)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    cls, options = OPTIMIZERS[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **options)


class GuardedStep:
    """``backward`` + gradient-norm clip + ``optimizer.step``, skipped when the loss or the
    gradient norm is NaN/inf. After ``limit`` skips in a row it raises :class:`NonFiniteError`,
    so a diverged run stops with a message instead of writing NaN weights.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_grad_norm: float, limit: int = 20):
        self.optimizer, self.max_grad_norm, self.limit = optimizer, max_grad_norm, limit
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.skipped_in_a_row = 0
        self.skipped_total = 0

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        """``backward`` then :meth:`finish`; returns the gradient norm before clipping (NaN/inf
        for a skipped step)."""
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return self._skip(loss.detach())
        loss.backward()
        return self.finish()

    def finish(self, bad: bool = False) -> torch.Tensor:
        """Clip and step on gradients already accumulated (e.g. over micro-batches), or skip the
        step when ``bad`` (a micro-batch loss was not finite) or the gradient norm is not."""
        params = [p for p in self.params if p.grad is not None]
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm) if params
                     else torch.zeros(()))
        if bad or not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip(torch.tensor(float("nan")) if bad else grad_norm)
        self.optimizer.step()
        self.skipped_in_a_row = 0
        return grad_norm

    def _skip(self, value: torch.Tensor) -> torch.Tensor:
        self.skipped_in_a_row += 1
        self.skipped_total += 1
        if self.skipped_in_a_row >= self.limit:
            raise NonFiniteError(
                f"{self.skipped_in_a_row} updates in a row had a non-finite loss or gradient; stopping. "
                "The last checkpoint holds the last good parameters. Check the rewards for NaN/inf, "
                "or lower the learning rate.")
        return value
