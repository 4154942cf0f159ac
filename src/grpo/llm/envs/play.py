"""Play whole episodes of a text environment with a model, batched, and summarise them (evaluation only).

A small multi-turn loop: each turn renders every running episode with the tokenizer's chat
template (``add_generation_prompt=True``), samples one assistant message per episode with the
``cached`` engine, and steps the environments. The decoded text is what the environment reads; the
tokens are not kept (training needs the token-exact rollout, not this).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from grpo.llm.modeling.models import context_length, prompt_texts
from grpo.llm.rollout.generation import encode_prompts, generate


@torch.no_grad()
def play(model: Any, tokenizer: Any, env_factory: Callable[[], Any], seeds: Sequence[int], temperature: float = 1.0,
         max_turns: int = 15, max_new_tokens: int = 16, greedy: bool = False, sample_seed: int = 0,
         options: dict | None = None) -> dict:
    """One episode per seed (``env.reset(seed=s, options=options)``), played until it ends or ``max_turns``.

    Returns ``episodes``, ``solve_rate`` (share that terminated with ``info["solved"]``),
    ``mean_guesses`` (turns to solve, over solved episodes; None when none was), ``mean_turns`` (all
    episodes), ``mean_return``, ``truncation_rate`` and ``illegal_rate`` (share of turns whose
    ``info["legal"]`` is False; None when the environment does not report it). Sampling runs under
    ``sample_seed`` without touching torch's global random state. An episode whose next prompt
    leaves no room for ``max_new_tokens`` in the model's context ends there, truncated.
    """
    device = next(model.parameters()).device
    envs = [env_factory() for _ in seeds]
    history, returns, solved, turns = [], [0.0] * len(envs), [False] * len(envs), [0] * len(envs)
    for env, seed in zip(envs, seeds):
        messages, _ = env.reset(seed=int(seed), options=options)
        history.append(list(messages))
    running, legal, truncated, cut = list(range(len(envs))), [], [False] * len(envs), []
    context = context_length(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(sample_seed)
        for _ in range(max_turns):
            if not running:
                break
            texts = prompt_texts(tokenizer, [history[i] for i in running])
            room = [context is None or len(tokenizer(t, add_special_tokens=False).input_ids) + max_new_tokens <= context
                    for t in texts]  # an episode that fills the context ends there, truncated
            cut += [i for i, ok in zip(running, room) if not ok]
            running, texts = [i for i, ok in zip(running, room) if ok], [t for t, ok in zip(texts, room) if ok]
            if not running:
                break
            ids, mask = encode_prompts(tokenizer, texts, device, context, max_new_tokens)
            roll = generate(model, tokenizer, ids, mask, 1, max_new_tokens, temperature, greedy=greedy)
            still = []
            for i, text in zip(running, roll.completions):
                reply = {"role": "assistant", "content": text}
                messages, reward, term, trunc, info = envs[i].step(reply)
                history[i] += [reply, *messages]
                returns[i] += float(reward)
                turns[i] += 1
                if "legal" in info:
                    legal.append(bool(info["legal"]))
                if term or trunc:
                    solved[i], truncated[i] = bool(info.get("solved", False)) and term, trunc
                else:
                    still.append(i)
            running = still
    for i in running + cut:  # cut by max_turns or the context: counted as truncated
        truncated[i] = True
    n = len(envs)
    won = [t for t, s in zip(turns, solved) if s]
    return {
        "episodes": n,
        "solve_rate": sum(solved) / n,
        "mean_guesses": sum(won) / len(won) if won else None,
        "mean_turns": sum(turns) / n,
        "mean_return": sum(returns) / n,
        "truncation_rate": sum(truncated) / n,
        "illegal_rate": (legal.count(False) / len(legal)) if legal else None,
        "transcripts": history,
    }
