"""``grpo llm sft``: a supervised warm start on an environment's own demonstrations (or your transcripts), before GRPO.

GRPO can only reinforce what the model samples: a model that never writes a tool call (SmolLM2-135M-
Instruct on ``calculator``) gets no gradient towards one. The field's answer is a short supervised
"cold start" first (DeepSeek-R1). Here the demonstrations are episodes of the environment played by
its scripted ``expert`` (:mod:`grpo.llm.rollout.demonstrations`), laid out token for token as GRPO's
rollout will lay out the model's own, and the loss is the mean negative log-likelihood of the
assistant's tokens only (end-of-turn tokens included; the environment's and the tools' tokens are
context). The result is a model folder for ``grpo llm train --model OUT/final``. With ``--data FILE``
the demonstrations are your own conversations instead, laid out the same way
(:mod:`grpo.llm.rollout.transcripts`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from grpo.llm.config import _help
from grpo.utils.runfolder import RunFiles

if TYPE_CHECKING:  # torch is imported by the functions that use it: `grpo --help` does not load it
    import torch

DEMO_STEP = -2  # the demonstrations' reset seeds: group_seeds(seed, DEMO_STEP, n), apart from every training step's
SFT_FILES = RunFiles(("sft_config.json", "demonstrations.jsonl", "sft_metrics.jsonl", "summary.json", "final"),
                     config="sft_config.json", foreign=("run_config.json", "config.json"))  # grpo llm train's, grpo train's


@dataclass
class SFTConfig:
    env: str = field(default="calculator", metadata=_help("text environment with an expert(messages) method: a "
                                                          "built-in name, MODULE:CLASS or a gymnasium id"))
    data: str | None = field(default=None, metadata=_help(
        "a JSONL file of your own transcripts to learn instead of --env's expert: one {\"messages\": [...], "
        "\"tools\": [JSON schemas, optional]} per line, OpenAI/TRL chat messages; every assistant message is trained on"))
    model: str | None = field(default=None, metadata=_help(
        "model folder, hub id, .gguf file or smollm2-135m-instruct (default: the built-in tiny model)"))
    episodes: int = field(default=256, metadata=_help("demonstration episodes the expert plays (not with --data)"))
    epochs: int = field(default=1, metadata=_help("passes over the demonstrations"))
    batch_size: int = field(default=8, metadata=_help("episodes per optimizer step"))
    lr: float = field(default=1e-5, metadata=_help("AdamW learning rate (constant)"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient-norm clip"))
    max_turns: int = field(default=8, metadata=_help("assistant turns per demonstration at most"))
    seed: int = field(default=0, metadata=_help("seed of the demonstrations' reset seeds and of the order"))
    device: str = field(default="auto", metadata=_help("auto (a GPU when there is one), cpu, cuda, cuda:1, mps"))
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (default: torch's)"))
    keep_freed_memory: bool = field(default=True, metadata=_help(
        "CPU under glibc: freed memory stays in the process and is reused (as grpo llm train's option)"))
    out: str = field(default="runs/sft", metadata=_help("run folder; the model goes to OUT/final"))
    overwrite: bool = field(default=False, metadata=_help("replace this command's files in --out"))

    def __post_init__(self) -> None:
        for name in ("episodes", "epochs", "batch_size", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0 (got {self.lr})")


def demonstration_batch(episodes: list[Any], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and trained mask [n, T] of ``episodes``.

    >>> from types import SimpleNamespace as E
    >>> ids, att, trained = demonstration_batch([E(ids=[5, 6, 7], trained=[False, True, True]),
    ...                                          E(ids=[5, 8], trained=[False, True])], pad_id=0)
    >>> ids.tolist(), att.tolist(), trained.tolist()
    ([[5, 6, 7], [5, 8, 0]], [[1, 1, 1], [1, 1, 0]], [[False, True, True], [False, True, False]])
    """
    import torch

    T = max(len(e.ids) for e in episodes)
    ids = torch.full((len(episodes), T), pad_id, dtype=torch.long)  # [n, T]
    att = torch.zeros((len(episodes), T), dtype=torch.long)  # [n, T]
    trained = torch.zeros((len(episodes), T), dtype=torch.bool)  # [n, T] tokens the loss is on
    for i, e in enumerate(episodes):
        n = len(e.ids)
        ids[i, :n], att[i, :n], trained[i, :n] = torch.tensor(e.ids), 1, torch.tensor(e.trained)
    return ids, att, trained


def sft_loss(model: Any, ids: torch.Tensor, att: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the ``trained`` tokens [n, T], each given the tokens before it; the
    float32 logits exist only for those tokens, a chunk at a time when the head allows
    (:func:`grpo.llm.modeling.logprobs.head_logprobs`)."""
    from grpo.llm.modeling.hf import position_ids_of
    from grpo.llm.modeling.hidden import LMForward, lm_head_of
    from grpo.llm.modeling.logprobs import head_logprobs, selective_log_softmax

    target = trained[:, 1:]  # [n, T - 1]: the token at t + 1 is predicted from position t
    kw = dict(input_ids=ids, attention_mask=att, position_ids=position_ids_of(att), use_cache=False)
    head = lm_head_of(model)
    if head is not None:
        hidden, _ = LMForward(model)(**kw)  # [n, T, H]
        logp = head_logprobs(head, hidden[:, :-1][target][None], ids[:, 1:][target][None]).logp  # [1, k]
    else:
        logits = model(**kw).logits[:, :-1].float()  # [n, T - 1, V]
        logp = selective_log_softmax(logits[target], ids[:, 1:][target])  # [k]
    return -logp.mean()


def demonstration_source(cfg: SFTConfig) -> tuple[str, Callable[[Any, Any, int], list[Any]]]:
    """What ``cfg`` learns from, named, and a function (model, tokenizer, end-of-turn id) -> its episodes:
    ``cfg.data``'s transcripts, or ``cfg.episodes`` episodes of ``cfg.env`` played by its expert. A bad file
    or an env without ``expert`` is refused here, before any model is loaded."""
    if cfg.data:
        from grpo.llm.modeling.models import context_length
        from grpo.llm.rollout.transcripts import read_transcripts, transcript_episode

        transcripts = read_transcripts(cfg.data)

        def lay_out(model: Any, tok: Any, eos: int) -> list[Any]:
            episodes, ctx = [transcript_episode(tok, m, t, eos) for m, t in transcripts], context_length(model)
            long = next((n for n, e in enumerate(episodes, 1) if ctx and len(e.ids) > ctx), None)
            if long:
                raise ValueError(f"--data {cfg.data}: transcript {long} is {len(episodes[long - 1].ids)} tokens, "
                                 f"longer than the model's context ({ctx}); shorten or drop it")
            return episodes

        return f"--data {cfg.data}", lay_out
    from grpo.llm.algorithms.multiturn import DEFAULT_EPISODE_TOKENS
    from grpo.llm.envs.base import env_factory
    from grpo.llm.modeling.models import context_length
    from grpo.llm.rollout.demonstrations import expert_episodes, expert_of
    from grpo.llm.rollout.episodes import EpisodeRunner, Limits
    from grpo.llm.rollout.seeding import group_seeds

    name, make_env = env_factory(cfg.env)
    probe = make_env()
    try:
        expert_of(probe, name)
    finally:
        if callable(getattr(probe, "close", None)):
            probe.close()

    def play(model: Any, tok: Any, eos: int) -> list[Any]:
        limits = Limits(cfg.max_turns, context_length(model) or DEFAULT_EPISODE_TOKENS, max_new_tokens=1)
        runner = EpisodeRunner(name, make_env, tok, limits, generate=None, seed=cfg.seed)
        return expert_episodes(runner, group_seeds(cfg.seed, DEMO_STEP, cfg.episodes), eos)

    return name, play


def train_sft(cfg: SFTConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Play ``cfg.episodes`` expert episodes (or read ``cfg.data``'s transcripts), fit the model to their
    assistant tokens, save OUT/final."""
    import torch
    from tqdm.auto import tqdm

    from grpo.llm.config import GRPOConfig
    from grpo.llm.infra.checkpoint import save_model
    from grpo.llm.infra.cpu_memory import keep_freed_memory
    from grpo.llm.modeling.models import load_model, load_tokenizer, pick_device
    from grpo.llm.rollout.generation import eos_ids_of
    from grpo.llm.run import model_path
    from grpo.utils.config import to_dict
    from grpo.utils.io import JsonlWriter, atomic_write, write_json

    out = Path(cfg.out)
    SFT_FILES.prepare(out, resume=False, overwrite=cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    name, demonstrations = demonstration_source(cfg)  # a bad file or an env without expert: refused here
    path = model_path(GRPOConfig(model=cfg.model), log)
    model, tok = load_model(path, device=pick_device(cfg.device)), load_tokenizer(path)
    if cfg.keep_freed_memory:
        keep_freed_memory(next(model.parameters()).device.type)
    episodes = demonstrations(model, tok, eos_ids_of(tok, model)[0])  # <|im_end|> ends a ChatML turn
    write_json(out / "sft_config.json", to_dict(cfg) | {"model_path": path})

    def write_demos(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for e in episodes:
                played = {} if cfg.data else {"seed": e.seed, "return": e.ret, "stop": e.stop}
                fh.write(json.dumps(played | {"messages": e.messages, "trained_text": tok.decode(
                    [t for t, k in zip(e.ids, e.trained) if k])}) + "\n")

    atomic_write(out / "demonstrations.jsonl", write_demos)
    kept = [e for e in episodes if e.terminated]  # an expert episode cut by the limits teaches a cut-off
    trained_tokens = sum(sum(e.trained) for e in kept)
    demo_return = None if cfg.data else sum(e.ret for e in episodes) / len(episodes)  # transcripts have none
    source = f"{len(episodes)} transcripts of {name}" if cfg.data else (
        f"{len(episodes)} episodes of {name} by its expert, mean return {demo_return:.3f}; {len(kept)} that ended "
        "on their own")
    log(f"demonstrations: {source} are trained on ({trained_tokens:,} assistant tokens of "
        f"{sum(len(e.ids) for e in kept):,})")
    if not kept:
        raise ValueError(f"env {name!r}: no expert episode ended within --max-turns {cfg.max_turns}; raise it")

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    order = torch.Generator().manual_seed(cfg.seed)
    batches = [[kept[i] for i in perm[k:k + cfg.batch_size]]
               for _ in range(cfg.epochs) for perm in [torch.randperm(len(kept), generator=order).tolist()]
               for k in range(0, len(kept), cfg.batch_size)]
    losses: list[float] = []
    device = next(model.parameters()).device
    start = time.perf_counter()
    with JsonlWriter(out / "sft_metrics.jsonl", mode="w") as metrics:
        for step, batch in enumerate(tqdm(batches, desc="grpo llm sft", unit="step")):
            loss = sft_loss(model, *(t.to(device) for t in demonstration_batch(batch, tok.pad_token_id)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            losses.append(loss.item())
            metrics.write({"step": step, "loss": losses[-1], "grad_norm": float(grad_norm)})
    seconds = time.perf_counter() - start
    save_model(out / "final", model, tok)
    summary = {"env": name, "model_path": path, "demonstrations": len(episodes), "trained_on": len(kept),
               "demonstration_return_mean": demo_return, "trained_tokens": trained_tokens, "steps": len(batches),
               "loss_first": losses[0], "loss_last": losses[-1], "seconds": seconds, "final_model": str(out / "final")}
    write_json(out / "summary.json", summary)
    log(f"{len(batches)} steps in {seconds:.0f} s: loss {losses[0]:.3f} -> {losses[-1]:.3f}; model: {out / 'final'}")
    return summary


def register(llm_sub: argparse._SubParsersAction) -> None:
    """``grpo llm sft``."""
    from grpo.utils.config import add_config_option, add_dataclass_args

    p = llm_sub.add_parser("sft", help="supervised warm start on an environment's expert demonstrations "
                           "or on your own transcripts (--data)")
    add_dataclass_args(p, SFTConfig)
    add_config_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from grpo.utils.bounds import check_out_dir
    from grpo.utils.config import dataclass_from_args

    cfg = dataclass_from_args(SFTConfig, args)
    check_out_dir(cfg.out)
    train_sft(cfg)
    return 0
