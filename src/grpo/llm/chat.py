"""``grpo llm chat``: talk to a model in the terminal, its reply printed token by token.

The conversation goes through the tokenizer's chat template when it has one; without one (the
built-in tiny model), each line is a prompt of its own, as in training. Sampling takes the
training options (temperature, top-p, top-k, max new tokens) and the same logit filter
(:func:`grpo.llm.modeling.logprobs.filter_logits`). ``/reset`` starts a new conversation; ``/quit``,
end of input (Ctrl-D) or Ctrl-C ends.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

# torch and transformers are imported in the functions: building the ``grpo`` parser stays instant.


@dataclass
class Sampling:
    """The training run's sampling options (GRPOConfig's), plus greedy decoding."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """--model, the sampling flags (as ``grpo llm train`` names them), --greedy, --seed, --device."""
    parser.add_argument("--model", default=None, help="model folder, hub id, .gguf file or smollm2-135m-instruct (default: the built-in tiny model)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 256, or 8 for the tiny model")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold; 1: off")
    parser.add_argument("--top-k", type=int, default=0, help="top-k sampling; 0: off")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... or auto")


def load_for_sampling(args: argparse.Namespace) -> tuple[Any, Any, Sampling, str]:
    """(model, tokenizer, sampling options, model path) from :func:`add_sampling_args`'s flags,
    the options checked by GRPOConfig as for training."""
    import torch

    from grpo.llm.config import GRPOConfig
    from grpo.llm.modeling.models import load_model, load_tokenizer, pick_device
    from grpo.llm.run import model_path

    cfg = GRPOConfig(model=args.model, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                     top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    path = model_path(cfg)
    torch.manual_seed(cfg.seed)
    model, tok = load_model(path, device=pick_device(args.device)).eval(), load_tokenizer(path)
    return model, tok, Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k, args.greedy), path


def stream_reply(model: Any, tok: Any, prompt: str, s: Sampling, write: Callable[[str], Any]) -> str:
    """Sample one reply to ``prompt`` (text, template applied), calling ``write`` with each new piece
    of text as it is decoded; returns the reply. Stops at EOS or ``max_new_tokens``."""
    import torch

    with torch.no_grad():
        return _stream(model, tok, prompt, s, write)


def _stream(model: Any, tok: Any, prompt: str, s: Sampling, write: Callable[[str], Any]) -> str:
    import torch

    from grpo.llm.modeling.hf import cache_kwargs, cache_of
    from grpo.llm.modeling.logprobs import filter_logits
    from grpo.llm.rollout.generation import encode_prompts, eos_ids_of
    from grpo.llm.modeling.models import context_length

    device = next(model.parameters()).device
    ids, _ = encode_prompts(tok, [prompt], device, context_length(model), s.max_new_tokens)  # [1, P]
    eos = set(eos_ids_of(tok, model))
    out = model(input_ids=ids, use_cache=True)
    new: list[int] = []
    shown = ""
    for _ in range(s.max_new_tokens):
        logits = out.logits[:, -1].float()  # [1, V]
        if s.greedy:
            nxt = int(logits.argmax(-1))
        else:
            probs = torch.softmax(filter_logits(logits / s.temperature, s.top_k, s.top_p), dim=-1)
            nxt = int(torch.multinomial(probs, 1))
        if nxt in eos:
            break
        new.append(nxt)
        text = tok.decode(new, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # a character split over tokens waits for its last byte
            write(text[len(shown):])
            shown = text
        out = model(input_ids=torch.tensor([[nxt]], device=device), use_cache=True,
                    **cache_kwargs(model, cache_of(out)))
    text = tok.decode(new, skip_special_tokens=True)
    if text != shown:
        write(text[len(shown):])
    return text


def chat_loop(model: Any, tok: Any, s: Sampling, read: Callable[[str], str] = input,
              write: Callable[[str], Any] = sys.stdout.write, system: str | None = None) -> int:
    """The REPL: returns the number of replies given."""
    from grpo.llm.modeling.models import prompt_texts

    template = bool(getattr(tok, "chat_template", None))
    history: list[dict[str, str]] = []
    replies = 0
    while True:
        try:
            line = read("> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return replies
        command = line.strip()
        if command == "/quit":
            return replies
        if command == "/reset":
            history = []
            write("(new conversation)\n")
            continue
        if not command:
            continue
        if template:
            messages = ([{"role": "system", "content": system}] if system else []) + history + \
                [{"role": "user", "content": line}]
            prompt = prompt_texts(tok, [messages])[0]
        else:
            prompt = line
        try:
            reply = stream_reply(model, tok, prompt, s, write)
        except ValueError as err:  # the conversation outgrew the context
            write(f"[{err}; /reset to start again]\n")
            continue
        except KeyboardInterrupt:
            reply = ""
        write("\n")
        replies += 1
        if template:
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]


def register(llm_sub: argparse._SubParsersAction) -> None:
    """``grpo llm chat``."""
    p = llm_sub.add_parser("chat", help="talk to a model in the terminal (streamed; /reset, /quit)")
    add_sampling_args(p)
    p.add_argument("--system", default=None, help="system message (models with a chat template)")
    p.set_defaults(func=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    model, tok, s, path = load_for_sampling(args)
    how = "its chat template" if getattr(tok, "chat_template", None) else "no chat template: each line is a prompt"
    mode = "greedy" if s.greedy else f"temperature {s.temperature}, top-p {s.top_p}, top-k {s.top_k}"
    print(f"chat with {path} ({how}; {mode}; at most {s.max_new_tokens} new tokens). "
          "/reset starts again, /quit or Ctrl-D ends.", flush=True)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    chat_loop(model, tok, s, input, write, args.system)
    return 0
