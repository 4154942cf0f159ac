"""``grpo llm chat`` (through stdin) and ``grpo llm sample`` on the session's tiny model."""

from __future__ import annotations

import io

import pytest
import torch

from grpo.cli import main
from grpo.llm import chat as chat_module
from grpo.llm.chat import Sampling, chat_loop
from grpo.llm.rollout.generation import encode_prompts, generate


def _greedy(model, tok, prompts, max_new=8):
    ids, mask = encode_prompts(tok, prompts, torch.device("cpu"), None, max_new)
    return generate(model, tok, ids, mask, 1, max_new, greedy=True).completions


def _session(model, tok, lines, sampling):
    """Run the REPL on ``lines``; returns (pieces written, number of replies)."""
    feed = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    pieces: list[str] = []
    return pieces, chat_loop(model, tok, sampling, read, pieces.append)


def test_greedy_replies_stream_token_by_token(tiny):
    model, tok = tiny
    pieces, replies = _session(model, tok, ["12+34=", "", "/reset", "45+11="], Sampling(8, greedy=True))
    assert replies == 2
    expected = _greedy(model, tok, ["12+34=", "45+11="])
    text = "".join(pieces)
    assert text == f"{expected[0]}\n(new conversation)\n{expected[1]}\n\n"  # the last newline: end of input
    # the character tokenizer has one character per token: each arrives as its own piece
    assert pieces[:len(expected[0])] == list(expected[0])


def test_quit_and_sampling_options(tiny):
    model, tok = tiny
    _, replies = _session(model, tok, ["12+34=", "/quit", "45+11="], Sampling(8, greedy=True))
    assert replies == 1
    torch.manual_seed(0)
    pieces, _ = _session(model, tok, ["12+34="] * 3, Sampling(3, temperature=5.0, top_k=1))
    assert "".join(pieces).split("\n")[:3] == [_greedy(model, tok, ["12+34="], 3)[0]] * 3  # top-k 1 is greedy
    pieces, _ = _session(model, tok, ["12+34="], Sampling(2, temperature=1.0))
    assert len("".join(pieces).split("\n")[0]) <= 2  # at most max_new_tokens characters


def test_chat_template_keeps_the_conversation_until_reset(tiny, monkeypatch):
    model, tok = tiny
    tok.chat_template = "{% for m in messages %}{{ m['content'] }};{% endfor %}"
    seen = []
    real = chat_module.stream_reply
    monkeypatch.setattr(chat_module, "stream_reply", lambda m, t, prompt, s, w: seen.append(prompt) or real(m, t, prompt, s, w))
    pieces, _ = _session(model, tok, ["1+1=", "2+2=", "/reset", "3+3="], Sampling(3, greedy=True))
    first = "".join(pieces).split("\n")[0]
    assert seen == ["1+1=;", f"1+1=;{first};2+2=;", "3+3=;"]


def test_chat_command_reads_stdin_until_eof(tiny_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("12+34=\n"))
    assert main(["llm", "chat", "--model", str(tiny_path), "--greedy"]) == 0
    out = capsys.readouterr().out
    assert "no chat template" in out and "/reset" in out
    from grpo.llm.modeling.models import load_model, load_tokenizer

    reply = _greedy(load_model(str(tiny_path)), load_tokenizer(str(tiny_path)), ["12+34="])[0]
    assert f"> {reply}\n" in out
    with pytest.raises(SystemExit):  # argparse: the sampling flags are checked like training's
        main(["llm", "chat", "--top-k", "x"])
    assert main(["llm", "chat", "--model", str(tiny_path), "--temperature", "0"]) == 2
    assert "temperature=0.0" in capsys.readouterr().err


def _columns(text: str) -> tuple[list[str], list[dict[str, str]]]:
    lines = text.rstrip("\n").split("\n")
    header = lines[0].split()
    starts = [lines[0].index(f"{h}") if i < 3 else None for i, h in enumerate(header)]
    rows = []
    for line in lines[1:]:
        tail = line[starts[2]:].split()  # completion (maybe empty), then the numbers
        numbers = tail[-(len(header) - 3):]
        completion = line[starts[2]:].rsplit(None, len(numbers))[0].strip() if len(tail) > len(numbers) else ""
        rows.append({"#": line[:starts[1]].strip(), "prompt": line[starts[1]:starts[2]].strip(),
                     "completion": completion, **dict(zip(header[3:], numbers))})
    return header, rows


def test_sample_prints_prompts_completions_and_rewards(tiny_path, tmp_path, monkeypatch, capsys):
    from grpo.llm.data.tasks import load_rows

    assert main(["llm", "sample", "--model", str(tiny_path), "--n", "3", "--samples", "2", "--greedy",
                 "--max-new-tokens", "4", "--reward", "exact", "format:0.5"]) == 0
    header, rows = _columns(capsys.readouterr().out)
    assert header == ["#", "prompt", "completion", "exact", "format", "total"]
    answers = {r["prompt"]: r["answer"] for r in load_rows("addition", "test", limit=3)}
    assert [r["prompt"] for r in rows] == [p for p in answers for _ in range(2)]
    for r in rows:
        assert float(r["exact"]) == float(r["completion"] == answers[r["prompt"]])
        fmt = 0.0 if r["format"] == "-" else float(r["format"])
        assert float(r["total"]) == pytest.approx(float(r["exact"]) + 0.5 * fmt, abs=1e-3)

    (tmp_path / "sample_rw.py").write_text("def per_sample(completion):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["llm", "sample", "--model", str(tiny_path), "--reward", "sample_rw:per_sample"]) == 2
    err = capsys.readouterr().err
    assert "sample_rw:per_sample" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh interpreter (torch, transformers): some seconds
def test_chat_in_a_pseudo_terminal(tiny_path):
    """The real command on a terminal: the prompt appears, a reply streams back, /quit ends it."""
    import os
    import pty
    import select
    import subprocess
    import sys

    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "grpo", "llm", "chat", "--model", str(tiny_path), "--greedy"],
                            stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env, close_fds=True)
    os.close(child_fd)

    def read_until(marker: bytes, timeout: float = 120.0) -> bytes:
        seen = b""
        while marker not in seen:
            ready, _, _ = select.select([main_fd], [], [], timeout)
            assert ready, f"no {marker!r} in {seen!r}"
            seen += os.read(main_fd, 4096)
        return seen

    try:
        assert b"/reset" in read_until(b"> ")
        os.write(main_fd, b"12+34=\r")
        after = read_until(b"> ").replace(b"\r", b"")
        from grpo.llm.modeling.models import load_model, load_tokenizer

        reply = _greedy(load_model(str(tiny_path)), load_tokenizer(str(tiny_path)), ["12+34="])[0]
        assert f"12+34=\n{reply}\n> ".encode() in after  # the terminal echoes the line typed
        os.write(main_fd, b"/quit\r")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(main_fd)


def test_sample_env_prints_whole_episodes_and_their_summary(capsys):
    """`grpo llm sample --env guess-number` with the shipped player: one block per episode, its turns as
    the header says, and a summary whose mean return is the mean of the episodes' returns."""
    argv = ["llm", "sample", "--env", "guess-number", "--n", "4", "--greedy"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert main(argv) == 0 and capsys.readouterr().out == out  # greedy: the same episodes again
    lines = out.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("episode ")]
    assert [lines[i].split(" (seed ")[1].split(")")[0] for i in heads] == ["10000", "10001", "10002", "10003"]
    returns = []
    for i, end in zip(heads, heads[1:] + [len(lines) - 1]):
        turns = int(lines[i].split(" turns")[0].rsplit(" ", 1)[1])
        assert sum(line.strip().startswith("assistant:") for line in lines[i + 1:end]) == turns
        returns.append(float(lines[i].split("return ")[1].split(",")[0]))
    summary = lines[-1]
    assert summary.startswith("4 episodes: mean return ") and "; solved " in summary
    assert float(summary.split("mean return ")[1].split(",")[0]) == pytest.approx(sum(returns) / 4, abs=2e-3)


def test_sample_env_shows_tool_calls_and_results():
    from grpo.llm.chat import Sampling
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.sample import env_episodes, episode_lines
    from multiturn_helpers import FakeModel, char_tokenizer, scripted

    tok = char_tokenizer()
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>'
    model = FakeModel(tok.eos_token_id)
    model.config.max_position_embeddings = 4000  # the tools' description alone is 716 characters
    eps = env_episodes(model, tok, "calculator", 2, Sampling(100), 0, 4,
                       generate=scripted(tok, [call, "5"]), make_env=CalculatorEnv)
    text = episode_lines(eps, tok, 200)
    assert text.count("<call calculator({'expression': '2+3'})>") == 2
    assert text.count("     tool: 5\n") == 2
    assert text.splitlines()[-1].startswith("2 episodes: mean return ") and "tool calls 1.00 (errors 0.00)" in text
    assert "ended: terminated 2" in text


def test_sample_env_shows_a_cut_turn_as_sampled():
    from grpo.llm.chat import Sampling
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.sample import env_episodes, episode_lines
    from multiturn_helpers import FakeModel, char_tokenizer, scripted

    tok = char_tokenizer()
    model = FakeModel(tok.eos_token_id)
    model.config.max_position_embeddings = 4000
    eps = env_episodes(model, tok, "calculator", 1, Sampling(6), 0, 4, generate=scripted(tok, ["12345678"]),
                       make_env=CalculatorEnv)
    lines = episode_lines(eps, tok, 200).splitlines()
    assert lines[0].endswith("ended: no end of turn") and lines[-2:-1] == ["             (no end of turn)"]
    assert "assistant: 123456" in lines[-3]  # the 6 tokens it sampled before the cap
