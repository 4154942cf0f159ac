"""Sampling with vLLM (``--generation vllm``), colocated: the engine lives in the trainer's process
and on its GPU, and the policy's weights are pushed into it after every update.

Written against vLLM's documented offline API: ``LLM(model=..., ...)``, ``LLM.generate(prompts,
sampling_params)`` with token-id prompts (``{"prompt_token_ids": [...]}``) and one
``SamplingParams`` per prompt (``n`` = G samples, ``seed`` = the prompt's key, so samples are
reproducible per prompt as with the ``cached`` engine), and ``LLM.collective_rpc(fn, args=...)``,
which runs ``fn(worker, *args)`` in each worker; there ``worker.model_runner.model.load_weights``
takes (name, tensor) pairs in the Hugging Face naming. The engine runs in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the pushed tensors are passed by reference, not pickled.
After a push the prefix cache is reset: cached prompt encodings were computed with old weights.
An adapter run pushes the merged weights (adapters merged in place, then unmerged).

Each sampled token's log-prob is returned (``SamplingParams(logprobs=0)``) as ``Rollout.sampling_logp``,
so ``--rollout-correction`` compares the engine's distribution with the trainer's. The engine is asked
for ``logprobs_mode="processed_logprobs"`` (after temperature and top-k/top-p, the distribution the
token was drawn from, as the trainer's log-probs are); a vLLM without that option gives raw log-probs,
which are the sampling distribution's only at temperature 1 without top-k/top-p, so only then are they kept.

vLLM is imported only here, only when asked for; it is not installable on a CPU-only machine.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor

from grpo.errors import MissingDependency
from grpo.llm.modeling.adapters import merged_weights
from grpo.llm.rollout.generation import Rollout, eos_ids_of, finish_rollout
from grpo.llm.modeling.hf import inner_model

INSTALL_HINT = "pip install 'grpo-lab[vllm]'"


def import_vllm() -> Any:
    """The ``vllm`` module, or MissingDependency saying how to install it."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process (see module doc)
    try:
        import vllm
    except ImportError:
        raise MissingDependency(f"--generation vllm needs vLLM, which is not installed: {INSTALL_HINT} "
                                "(Linux with a CUDA GPU); or use --generation cached (the default)") from None
    return vllm


def _load_weights(worker: Any, weights: list[tuple[str, Tensor]]) -> int:
    """Runs inside a vLLM worker: copy the given weights into its model."""
    worker.model_runner.model.load_weights(weights=weights)
    return len(weights)


class VLLMGenerator:
    """A generation engine (the signature of :func:`grpo.llm.rollout.generation.generate_cached`) backed by
    ``vllm.LLM``; :meth:`push_weights` copies the policy into it."""

    def __init__(self, cfg: Any, model: Any, tokenizer: Any, runtime: Any = None):
        self.vllm = import_vllm()
        if runtime is not None and getattr(runtime, "collective_forward", False):
            raise ValueError("--generation vllm with FSDP or DeepSpeed ZeRO-3 is not supported: the engine needs the "
                             "full weights on each process; use DDP or ZeRO-1/2, or --generation hf")
        hf = inner_model(model)
        kwargs: dict[str, Any] = {}
        if runtime is not None and runtime.world_size > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"  # one engine per training process
        if cfg.vllm_max_model_len:
            kwargs["max_model_len"] = cfg.vllm_max_model_len
        common = dict(model=hf.config._name_or_path, tokenizer=hf.config._name_or_path,
                      dtype=str(next(hf.parameters()).dtype).removeprefix("torch."), seed=cfg.seed,
                      gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, enable_prefix_caching=True, **kwargs)
        try:
            self.llm = self.vllm.LLM(logprobs_mode="processed_logprobs", **common)
            self.processed_logprobs = True
        except TypeError:  # an older vLLM: raw log-probs only (see the module docstring)
            self.llm = self.vllm.LLM(**common)
            self.processed_logprobs = False
        self.pushes = 0
        self.push_weights(model)  # a resumed run or an adapter run differs from the folder vLLM loaded

    @torch.no_grad()
    def push_weights(self, model: Any) -> None:
        """Copy the policy's current weights (adapters merged) into the engine."""
        with merged_weights(model) as weights:
            self.llm.collective_rpc(_load_weights, args=(weights,))
        self.llm.reset_prefix_cache()
        self.pushes += 1

    def __call__(self, model: Any, tokenizer: Any, prompt_ids: Tensor, prompt_mask: Tensor, group_size: int,
                 max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 greedy: bool = False, prompt_keys: Tensor | None = None) -> Rollout:
        eos = eos_ids_of(tokenizer, inner_model(model))
        n = 1 if greedy else group_size  # greedy: one completion, repeated G times
        prompts = [{"prompt_token_ids": ids[m.bool()].tolist()} for ids, m in zip(prompt_ids, prompt_mask)]
        params = [self.vllm.SamplingParams(
            n=n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
            top_k=-1 if greedy or not top_k else top_k, max_tokens=max_new_tokens, stop_token_ids=eos,
            # stated, not left to defaults: the log-probs assume no penalty and no min-p filter
            min_p=0.0, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
            seed=None if prompt_keys is None else int(prompt_keys[b]) % (2 ** 31 - 1), detokenize=False,
            logprobs=None if greedy else 0)  # 0: the sampled token's log-prob only
            for b in range(len(prompts))]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rows: list[list[int]] = []
        lps: list[list[float]] = []
        for out in outputs:
            for c in out.outputs:
                ids = list(c.token_ids)
                lp = [d[t].logprob if d and t in d else math.nan for d, t in zip(getattr(c, "logprobs", None) or [], ids)]
                lp += [math.nan] * (len(ids) - len(lp))
                if c.finish_reason == "stop" and (not ids or ids[-1] not in eos):
                    ids.append(eos[0])  # stopped at EOS but returned without it: restore it for the mask
                    lp.append(math.nan)  # its log-prob is unknown: the correction leaves that token alone
                rows.extend([ids] * (group_size // n))
                lps.extend([lp] * (group_size // n))
        C = max(1, max(len(r) for r in rows))
        completion = torch.full((len(rows), C), tokenizer.pad_token_id, dtype=torch.long)
        sampling_logp = torch.zeros(len(rows), C)  # [N, C]
        for i, (r, lp) in enumerate(zip(rows, lps)):
            completion[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            sampling_logp[i, :len(lp)] = torch.tensor(lp, dtype=torch.float32)
        exact = self.processed_logprobs or (temperature == 1.0 and top_p == 1.0 and not top_k)
        return finish_rollout(tokenizer, prompt_ids, prompt_mask, completion.to(prompt_ids.device), eos, group_size,
                              sampling_logp.to(prompt_ids.device) if exact and not greedy else None)
