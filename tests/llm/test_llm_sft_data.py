"""``grpo llm sft --data FILE``: your own transcripts laid out token for token as the rollout lays out an
episode; bad files refused in one line naming the line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from multiturn_helpers import chatml_tokenizer
from test_llm_sft import _runner, word_tiny  # noqa: F401 (a fixture)


def _openai_form(messages):
    """The expert's transcript as OpenAI writes it: arguments as a JSON string, content None beside calls."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{"type": "function", "function": {"name": c["function"]["name"],
                                                       "arguments": json.dumps(c["function"]["arguments"])}}
                     for c in m["tool_calls"]]
            m = {"role": "assistant", "content": None, "tool_calls": calls}
        out.append(m)
    return out


def _text_form(messages):
    """The same with each call written out in the assistant's text, as a raw transcript holds it."""
    from grpo.llm.rollout.transcripts import assistant_text

    return [{"role": "assistant", "content": assistant_text(m)} if m["role"] == "assistant" else m for m in messages]


@pytest.mark.parametrize("form", ["as recorded", "openai", "text"])
def test_a_transcript_is_laid_out_as_the_episode_it_records(form):
    """The calculator expert's episode (a tool call, the tool's reply, the answer), written as a transcript
    in three forms: the same ids and the same trained mask as the rollout's own layout of that episode."""
    from grpo.llm.envs.calculator import CalculatorEnv
    from grpo.llm.envs.tools import tool_schemas
    from grpo.llm.rollout.demonstrations import expert_episodes
    from grpo.llm.rollout.transcripts import check_transcript, transcript_episode

    tok = chatml_tokenizer()
    [demo] = expert_episodes(_runner(CalculatorEnv, tok), [7], tok.eos_token_id)
    messages = {"as recorded": list, "openai": _openai_form, "text": _text_form}[form](demo.messages)
    episode = transcript_episode(tok, check_transcript(messages, "t"), tool_schemas(CalculatorEnv.tools),
                                 tok.eos_token_id)
    assert episode.ids == demo.ids and episode.trained == demo.trained and episode.turn_of == demo.turn_of
    assert episode.messages == demo.messages and episode.terminated
    assert sum(demo.trained) > 0 and not all(demo.trained[demo.prompt_len:])  # the tool's reply is context


def test_a_transcript_without_tools_trains_every_assistant_turn_and_nothing_else():
    from grpo.llm.rollout.transcripts import transcript_episode

    tok = chatml_tokenizer()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
    e = transcript_episode(tok, messages, None, tok.eos_token_id)
    trained = tok.decode([t for t, k in zip(e.ids, e.trained) if k])
    assert trained == "hello<|im_end|>4<|im_end|>"
    assert tok.decode(e.ids) == tok.apply_chat_template(messages, tokenize=False).rstrip("\n")


@pytest.mark.parametrize("line, says", [
    ("{not json", "line 2: not JSON"),
    ('{"prompt": "x"}', "line 2: expected an object with 'messages'"),
    ('{"messages": []}', "line 2: 'messages' is [], not a non-empty list"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "line 2: no assistant message"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "line 2: starts with an assistant message"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "line 2: the message"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "tools": "calc"}',
     "line 2: 'tools' must be a list"),
])
def test_a_bad_transcript_file_is_refused_naming_the_line(tmp_path, line, says):
    from grpo.llm.rollout.transcripts import read_transcripts

    good = '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}'
    path = tmp_path / "data.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"--data {path} {says}".replace("[", r"\[").replace("]", r"\]")):
        read_transcripts(str(path))
    path.write_text(good + "\n\n")
    assert len(read_transcripts(str(path))) == 1  # the control: blank lines are skipped


def test_the_sft_command_learns_from_a_data_file(word_tiny, tmp_path):  # noqa: F811 (the fixture)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"word {i}?"},
                                                     {"role": "assistant", "content": "zebra"}]}) + "\n"
                            for i in range(4)))
    out = tmp_path / "sft"
    cmd = [sys.executable, "-m", "grpo", "llm", "sft", "--data", str(data), "--model", str(word_tiny),
           "--batch-size", "2", "--lr", "1e-3", "--threads", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["demonstrations"] == 4 and summary["trained_on"] == 4 and summary["steps"] == 2
    assert summary["demonstration_return_mean"] is None  # no environment scored them
    rows = [json.loads(ln) for ln in (out / "demonstrations.jsonl").read_text().splitlines()]
    assert [r["trained_text"] for r in rows] == ["zebra<eos>"] * 4  # the end-of-turn token is trained too
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "zebra"} and "seed" not in rows[0]
