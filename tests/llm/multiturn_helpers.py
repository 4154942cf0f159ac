"""Shared pieces of the multi-turn tests: a chat template, tokenizers, a scripted sampler and toy envs."""

from __future__ import annotations

import torch

# Short enough for the tiny model's 64-token context; the assistant turn ends with <eos> and a newline,
# which the model does not sample (the rollout appends it as environment text).
TEMPLATE = ("{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}{% if m['role'] == 'assistant' %}<eos>"
            "{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}a:{% endif %}")


def merging_tokenizer():
    """Characters plus one merged token "ab": sampling "a" then "b" and re-encoding the text gives "ab"."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from grpo.llm.modeling.tiny import CHARS, SPECIALS

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    vocab["ab"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, [("a", "b")], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                  padding_side="left")
    out.chat_template = TEMPLATE
    return out


def chat_tiny_folder(tmp_path, monkeypatch, module: str, source: str):
    """The shipped tiny model copied with :data:`TEMPLATE` as its chat template, and ``source`` written as
    ``module``.py on the import path (the caller pops ``module`` from ``sys.modules`` afterwards)."""
    import shutil
    import sys
    import textwrap

    from grpo.llm.modeling.models import load_tokenizer
    from grpo.llm.modeling.tiny import SHIPPED

    folder = tmp_path / "tiny-chat"
    shutil.copytree(SHIPPED, folder)
    tok = load_tokenizer(str(folder))
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(module, None)
    return folder


def char_tokenizer():
    from grpo.llm.modeling.tiny import char_tokenizer as make

    tok = make()
    tok.chat_template = TEMPLATE
    return tok


class FakeModel(torch.nn.Module):
    """Only what the runner reads from a model: a parameter (device) and the generation config (EOS)."""

    def __init__(self, eos_id: int):
        from transformers import GenerationConfig

        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.generation_config = GenerationConfig(eos_token_id=eos_id)
        self.config = type("C", (), {"max_position_embeddings": 256})()


def scripted(tok, turns):
    """A generation engine that answers turn t of every episode with ``turns[t]``: a list of token ids,
    or a string encoded one character per token; EOS appended unless the entry is a list."""
    from grpo.llm.rollout.generation import eos_ids_of, finish_rollout

    calls = []

    def generate(model, tokenizer, ids, mask, G, max_new, *args):
        t = len(calls)
        calls.append(ids.clone())
        want = turns[min(t, len(turns) - 1)]
        row = list(want) if isinstance(want, list) else \
            [tok.convert_tokens_to_ids(c) for c in want] + [tok.eos_token_id]
        row = row[:max_new]
        comp = torch.full((ids.shape[0], max(len(row), 1)), tok.pad_token_id, dtype=torch.long)
        comp[:, :len(row)] = torch.tensor(row)
        return finish_rollout(tokenizer, ids, mask, comp, eos_ids_of(tokenizer, model), 1)

    generate.calls = calls
    return generate


class TwoTurnEnv:
    """User says "go"+seed digit; each answer gets "x" back and reward 1 if it is "ab"; ends after 2 turns."""

    def reset(self, seed=None, options=None):
        self.t = 0
        return [{"role": "user", "content": f"go{(seed or 0) % 10}"}], {}

    def step(self, message):
        self.t += 1
        reward = float(message["content"] == "ab")
        return [{"role": "user", "content": "x"}], reward, self.t >= 2, False, {"hits": reward}


# The structure of Qwen2.5's template (ChatML; tools in the system turn; calls rendered from tool_calls;
# consecutive tool results grouped in one user turn), written out here since no model is downloaded.
QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\n<tools>' }}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nCall a function with <tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- else %}{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}"
    "{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' }}{{- tool_call.name }}{{- '\", \"arguments\": ' }}"
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def chatml_tokenizer():
    """Characters plus ChatML's <|im_start|> and <|im_end|> (the end of turn), with QWEN_LIKE."""
    tok = char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = QWEN_LIKE
    return tok
