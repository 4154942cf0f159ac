"""The built-in guess-the-number player: a tiny Llama that plays legal but random games.

It is pretrained by next-token prediction on transcripts of :class:`GuessNumberEnv` games played by
a random legal player: each guess is uniform among the integers the feedback so far still allows,
which needs 7.5 guesses on average over 1..100 (binary search: 5.8). The loss is on the assistant
tokens only. Each assistant message first restates the open interval and then guesses,
``"025<x<063:041"`` (the environment reads the last integer): the model copies the interval from its
last message and the feedback instead of recomputing it from the whole history; GRPO can then move
the guess towards the middle. Each number ``000`` .. ``101`` is one token (``number_tokens``), so a
guess is one draw from a categorical over numbers rather than three digits that must jointly land
inside the interval: with digit characters, 3,000 steps still left 46% of the guesses illegal at
temperature 1 (docs/guess-number.md). The shipped build (9,000 steps, 24 min on one core) plays, over
200 games at temperature 1, like the random legal player it imitates: 98.5% solved within 15 turns in 7.6
guesses, 6% of its guesses illegal (hidden feedback: 14% solved, 69% illegal); at temperature 0.7, the
demo's, 98.8% of 500 games solved in 7.2 guesses, 4% illegal (3,000 steps: 93.5% and 16% illegal at 1).

The chat template is a character-level one with no role markers: a user (or system) message is its
text and a newline, an assistant message its text and ``<eos>``, the token generation stops at. The
generation prompt is empty, so rendering a history and then the history plus new messages always
gives the first as a prefix of the second (sampled tokens stay as sampled across turns).

The default spec's weights ship in ``guess_tiny_model/``, built by
``python -m grpo.llm.modeling.guess_tiny --build`` (one thread, fixed step count); other specs are
built on first use and cached like :mod:`grpo.llm.modeling.tiny`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo.llm.envs.guess_number import HIGH, HIGHER, LOW, LOWER, GuessNumberEnv
from grpo.llm.modeling.tiny import (build_main, cache_dir, char_tokenizer, check_build_folder, lr_at, new_model, save_tiny,
                                    shipped_matches, torch_threads, write_build)

SHIPPED = Path(__file__).with_name("guess_tiny_model")
# User and system messages end with a newline, assistant messages with <eos>; no generation prompt.
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}<eos>"
                 "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}")
EVAL_SEEDS = range(10_000, 10_200)  # the games the build reports on (the training games are drawn from spec.seed)


@dataclass(frozen=True)
class GuessSpec:
    """Size of the guess player and its pretraining recipe (fields as in ``TinySpec``)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 256
    context: int = 384  # a 15-turn game is about 320 characters
    # 9,000 steps: at 3,000 the player still wrote 16% illegal guesses at temperature 1 (its copies of the
    # interval slipped) and GRPO spent its steps on them; at 9,000 it plays like the random legal player
    # (docs/guess-number.md, "The tiny player").
    max_steps: int = 9000
    decay_steps: int = 4500
    batch: int = 16  # games per step (16 x 1000 learnt more than 32 x 600 in a longer time)
    lr: float = 3e-3
    max_turns: int = 15  # the environment's turn limit in the training games
    # Draw this many batches of games at once and batch them by length: less padding, about 0.7x the time
    # per step (docs/guess-number.md). 1: one batch at a time.
    buckets: int = 4
    # Each number 000..101 one token (else three digit characters): a guess is one categorical draw
    # instead of three digits that must jointly land inside the interval.
    number_tokens: bool = True
    seed: int = 0

    def key(self) -> str:
        import hashlib

        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


NUMBERS = tuple(f"{n:03d}" for n in range(LOW - 1, HIGH + 2))  # the player's numbers, as it writes them


def guess_tokenizer(number_tokens: bool = True) -> Any:
    """The character tokenizer with the guess player's chat template; with ``number_tokens`` (the shipped
    player's), ``"000"`` .. ``"101"`` are one token each."""
    tok = char_tokenizer(NUMBERS if number_tokens else ())
    tok.chat_template = CHAT_TEMPLATE
    return tok


def random_game(rng: np.random.Generator, max_turns: int) -> list[dict]:
    """The messages of one game played by the random legal player (``"lo<x<hi:guess"``, bounds exclusive)."""
    env = GuessNumberEnv(max_turns=max_turns)
    messages, _ = env.reset(seed=int(rng.integers(2**31)))
    lo, hi = LOW - 1, HIGH + 1
    while True:
        guess = int(rng.integers(lo + 1, hi))  # uniform over lo < x < hi
        reply = {"role": "assistant", "content": f"{lo:03d}<x<{hi:03d}:{guess:03d}"}
        feedback, _, terminated, truncated, _ = env.step(reply)
        messages += [reply, *feedback]
        if terminated or truncated:
            return messages
        lo, hi = (guess, hi) if feedback[0]["content"] == HIGHER else (lo, guess)
        assert feedback[0]["content"] in (HIGHER, LOWER)


def encode_game(tok: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered game and its labels: the assistant tokens (with their <eos>), -100 elsewhere.

    The ids equal ``tok.apply_chat_template(messages)``'s (a test checks it); building them message by
    message gives the mask without rendering twice.
    """
    ids: list[int] = []
    labels: list[int] = []
    for m in messages:
        piece = tok(m["content"], add_special_tokens=False).input_ids
        if m["role"] == "assistant":
            piece = piece + [tok.eos_token_id]
            labels += piece
        else:
            piece = piece + tok.convert_tokens_to_ids(["\n"])
            labels += [-100] * len(piece)
        ids += piece
    return ids, labels


def _batch(tok: Any, games: list[list[dict]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T], labels [B, T] and attention mask [B, T] of ``games``."""
    enc = [encode_game(tok, g) for g in games]
    width = max(len(i) for i, _ in enc)
    pad = tok.pad_token_id
    x = torch.tensor([i + [pad] * (width - len(i)) for i, _ in enc])  # [B, T]
    y = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in enc])  # [B, T]
    m = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in enc])  # [B, T]
    return x, y, m


def _length_batches(rng: np.random.Generator, spec: GuessSpec) -> list[list[list[dict]]]:
    """``spec.buckets`` batches of fresh games, each of games of similar length, in random order.

    A batch is padded to its longest game (a game is 3 to 15 turns): grouping by length cuts the padding.
    One bucket draws the batch as the shipped build did (same games, same order, same random stream).
    """
    if spec.buckets == 1:
        return [[random_game(rng, spec.max_turns) for _ in range(spec.batch)]]
    games = sorted((random_game(rng, spec.max_turns) for _ in range(spec.batch * spec.buckets)), key=len)
    batches = [games[i:i + spec.batch] for i in range(0, len(games), spec.batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pretrain(spec: GuessSpec, log: Any = None, threads: int = 1, eval_seeds: Any = EVAL_SEEDS) -> tuple[Any, Any, dict]:
    """Next-token prediction on ``spec.max_steps`` batches of fresh random games, then :func:`evaluate`
    on ``eval_seeds`` (none: no evaluation)."""
    with torch_threads(threads):
        tok = guess_tokenizer(spec.number_tokens)
        model = new_model(spec, tok)
        rng = np.random.default_rng(spec.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
        start, pool = time.time(), []
        for step in range(1, spec.max_steps + 1):
            for group in opt.param_groups:
                group["lr"] = lr_at(spec, step)
            if not pool:
                pool = _length_batches(rng, spec)
            x, y, m = _batch(tok, pool.pop())
            loss = model(input_ids=x, attention_mask=m, labels=y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log and step % 50 == 0:
                log(f"guess player pretraining: step {step}/{spec.max_steps} loss {loss.item():.3f} "
                    f"({time.time() - start:.0f} s)")
        seconds = round(time.time() - start, 1)
        model.eval()
        figures = evaluate(model, tok, eval_seeds, spec.max_turns) if eval_seeds else {}
    return model, tok, {"spec": asdict(spec), "steps": spec.max_steps, "seconds": seconds, **figures}


def evaluate(model: Any, tok: Any, seeds: Any = EVAL_SEEDS, max_turns: int = 15) -> dict:
    """Mean guesses, solve rate and illegal rate at temperature 1, with the feedback shown and hidden."""
    from grpo.llm.envs.play import play

    out = {}
    for name, hidden in (("", False), ("hidden_", True)):
        res = play(model, tok, lambda: GuessNumberEnv(max_turns=max_turns, hide_feedback=hidden), list(seeds),
                   temperature=1.0, max_turns=max_turns)
        out.update({f"{name}{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()
                    if k in ("mean_guesses", "solve_rate", "illegal_rate", "mean_turns")})
    return out


def guess_model_path(spec: GuessSpec | None = None, log: Any = print) -> Path:
    """Folder of the guess player: the shipped one for the default spec, else built on first use and cached."""
    spec = spec or GuessSpec()
    if spec == GuessSpec() and shipped_matches(spec, SHIPPED):
        return SHIPPED
    path = cache_dir() / f"tiny-guess-{spec.key()}"
    if not (path / "config.json").exists():
        if log:
            log(f"building the guess-the-number model into {path} (once)")
        save_tiny(path, *pretrain(spec, log=log))
    return path


def build(out: Path = SHIPPED, threads: int = 1, log: Any = print, spec: GuessSpec | None = None) -> dict:
    """Pretrain ``spec`` (default: the shipped one) on ``threads`` threads and write it to ``out``."""
    check_build_folder(out)
    model, tok, info = pretrain(spec or GuessSpec(), log=log, threads=threads)
    return write_build(out, model, tok, info, threads)


def main(argv: list[str] | None = None) -> int:
    return build_main(argv, "python -m grpo.llm.modeling.guess_tiny",
                      "Build the guess-the-number player (the weights shipped in grpo/llm/modeling/guess_tiny_model).",
                      build, SHIPPED, lambda info: {k: v for k, v in info.items() if k not in ("spec", "machine")})


if __name__ == "__main__":
    raise SystemExit(main())
