"""Counter-based randomness for sampling: each sample's random numbers depend only on its keys.

A global RNG stream gives a row different numbers depending on which rows share its batch, so a
run split over several processes (or micro-batches, or dynamic-sampling rounds) would sample
differently from the same run in one process. Here the uniform that picks token t of sample j of
a prompt is a hash of (run seed, step, round, the prompt's place in the step's global batch, j,
t), so the same prompt gets the same samples on whichever rank it lands.

The hash is splitmix64 (Steele et al., "Fast splittable pseudorandom number generators", 2014)
on int64 tensors; token choice is inverse-CDF sampling, one uniform per row and step.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    """A 64-bit constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    c &= _MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _M1, _M2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _srl(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (``>>`` is arithmetic on signed tensors)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """splitmix64 of each int64 (wrapping arithmetic); equal inputs give equal outputs anywhere.

    >>> splitmix64(torch.tensor([0, 1])).tolist() == splitmix64(torch.tensor([0, 1])).tolist()
    True
    >>> int(splitmix64(torch.tensor([0]))[0]) & 0xFFFFFFFFFFFFFFFF == 0xE220A8397B1DCDAF  # reference value
    True
    """
    x = x.long() + _GOLDEN
    x = (x ^ _srl(x, 30)) * _M1
    x = (x ^ _srl(x, 27)) * _M2
    return x ^ _srl(x, 31)


def combine(key: Tensor, value: int | Tensor) -> Tensor:
    """A new key from ``key`` and ``value`` (order matters)."""
    return splitmix64(splitmix64(key) + torch.as_tensor(value, dtype=torch.long, device=key.device))


def prompt_keys(seed: int, step: int, round_: int, indices: list[int]) -> Tensor:
    """One key per prompt [B] from the run seed, the step, the sampling round and the prompts' places
    in the step's global batch (not their places on this process)."""
    base = combine(combine(combine(torch.tensor([seed]), step), round_), 0)  # [1]
    return combine(base.expand(len(indices)), torch.tensor(indices, dtype=torch.long))


def sample_keys(keys: Tensor, group_size: int) -> Tensor:
    """Keys [B] of prompts -> keys [B * G] of their samples (prompt-major)."""
    return combine(keys.repeat_interleave(group_size), torch.arange(group_size).repeat(len(keys)))


def uniforms(keys: Tensor, t: int) -> Tensor:
    """A uniform in [0, 1) per key [n] for token ``t`` (float64, 53 random bits)."""
    return _srl(combine(keys, t), 11).double() * 2.0 ** -53


def sample_from(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: index i where cdf[i-1] <= u * total < cdf[i]. [n, V], [n] -> [n].

    A token of probability 0 is never picked (its cdf step is empty).

    >>> sample_from(torch.tensor([[0.0, 0.5, 0.0, 0.5]]), torch.tensor([0.0])).tolist()
    [1]
    >>> sample_from(torch.tensor([[0.0, 0.5, 0.0, 0.5]]), torch.tensor([0.75])).tolist()
    [3]
    """
    cdf = probs.double().cumsum(-1)  # [n, V]
    target = (u.to(cdf) * cdf[:, -1]).unsqueeze(-1)  # [n, 1]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)


def group_seeds(seed: int, step: int, n: int) -> list[int]:
    """Reset seeds (31-bit) of a step's ``n`` groups of episodes: distinct, derived from the run seed
    and the step, so that a group's G episodes share one and different groups never do.

    >>> a = group_seeds(0, 3, 4); a == group_seeds(0, 3, 4), len(set(a)), a == group_seeds(1, 3, 4)
    (True, 4, False)
    """
    base = combine(combine(torch.tensor([seed]), step), -1)  # -1: apart from prompt_keys' rounds (>= 0)
    out: list[int] = []
    i = 0
    while len(out) < n:
        s = int(combine(base, i)[0]) & 0x7FFFFFFF
        i += 1
        if s not in out:
            out.append(s)
    return out
