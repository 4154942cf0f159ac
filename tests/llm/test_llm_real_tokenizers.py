"""Real tokenizers end to end (issue 13): BOS once whether a chat template writes it or the tokenizer
adds it, several EOS ids from the generation config, pad = EOS, and the completion mask and text
around the EOS that ended a completion."""

from __future__ import annotations

import pytest
import torch

from grpo.llm.modeling.models import bos_prefix, encode_texts, load_model, load_tokenizer, prompt_texts
from grpo.llm.rollout.generation import completion_mask, encode_prompts, eos_ids_of, generate

CPU = torch.device("cpu")


@pytest.fixture()
def bos_tokenizer():
    """A character tokenizer that adds ``<s>`` (id 1) before every text, as Llama's does, and whose
    chat template writes ``<s>`` itself."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from grpo.llm.modeling.tiny import CHARS

    vocab = {t: i for i, t in enumerate(("<pad>", "<s>", "</s>", "<unk>") + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                unk_token="<unk>", padding_side="left")
    t.chat_template = "{{ '<s>' }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    return t


def test_a_chat_template_that_writes_bos_gets_no_second_one(bos_tokenizer):
    tok = bos_tokenizer
    text = prompt_texts(tok, [[{"role": "user", "content": "ab"}]])[0]
    assert text == "<s>[ab]" and tok(text).input_ids[:2] == [1, 1]  # doubled by add_special_tokens
    ids, mask = encode_prompts(tok, [text, "cd"], CPU, None, 4)  # [2, P]
    rows = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
    assert rows[0] == tok(text, add_special_tokens=False).input_ids and rows[0].count(1) == 1
    assert rows[1] == [1] + tok("cd", add_special_tokens=False).input_ids  # plain text: the tokenizer's BOS
    assert ids[1, :2].tolist() == [0, 0] and mask[1, :2].tolist() == [0, 0]  # left padding


def test_a_tokenizer_that_adds_nothing_gets_nothing(random_tiny):
    _, tok = random_tiny
    assert bos_prefix(tok) == []
    assert encode_texts(tok, ["12+3="]) == [tok("12+3=", add_special_tokens=False).input_ids]


def test_the_completion_mask_keeps_the_first_eos_of_any_kind_and_no_padding_when_pad_is_eos():
    ids = torch.tensor([[5, 2, 2, 2],  # EOS 2, then padding that is EOS too
                        [5, 9, 2, 2],  # the second EOS id ended it
                        [5, 6, 7, 8]])  # truncated
    mask, truncated = completion_mask(ids, [2, 9])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]


def test_eos_ids_come_from_the_generation_config_then_the_tokenizer(random_tiny):
    model, tok = random_tiny
    model.generation_config.eos_token_id = [40, 41]
    assert eos_ids_of(tok, model) == [40, 41, tok.eos_token_id]
    model.generation_config.eos_token_id = tok.eos_token_id
    assert eos_ids_of(tok, model) == [tok.eos_token_id]


@pytest.mark.parametrize("engine", ["cached", "hf"])
def test_generation_stops_at_any_eos_id_and_the_text_ends_before_it(engine):
    """Greedy completions of the shipped tiny model, then the same with a second EOS id in the generation
    config (a plain character, so the tokenizer does not call it special): each row stops at its first
    EOS of either kind, keeps it in the mask, pads (with EOS: no pad token) after it, and its text
    stops before it."""
    from grpo.llm.modeling.tiny import SHIPPED

    model, tok = load_model(str(SHIPPED)), load_tokenizer(str(SHIPPED))
    tok.pad_token = tok.eos_token  # a tokenizer without a pad token gets EOS (load_tokenizer)
    texts = ["12+3=", "4+5=", "77+1=", "9+9="]
    ids, mask = encode_prompts(tok, texts, CPU, 64, 10)
    free = generate(model, tok, ids, mask, 1, 10, greedy=True, engine=engine).completion_ids.tolist()
    row = free[0]
    k = next(k for k in range(1, len(row)) if row[k] not in row[:k] and row[k] != tok.eos_token_id)
    stop = row[k]  # a token row 0 emits first at step k
    assert stop not in tok.all_special_ids  # decoding would keep it: the text must end before it
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    roll = generate(model, tok, ids, mask, 1, 10, greedy=True, engine=engine)
    ends = {tok.eos_token_id, stop}
    hit = 0
    for i, r in enumerate(free):
        n = next((j + 1 for j, t in enumerate(r) if t in ends), None)  # tokens up to the first EOS
        got = roll.completion_ids[i].tolist()
        if n is None:
            assert bool(roll.truncated[i]) and int(roll.lengths[i]) == 10
            continue
        hit += 1
        assert got[:n] == r[:n] and not bool(roll.truncated[i]) and int(roll.lengths[i]) == n
        assert roll.completion_mask[i].tolist() == [1] * n + [0] * (len(got) - n)
        assert all(t == tok.eos_token_id for t in got[n:])  # padding after it
        assert roll.completions[i] == tok.decode(r[:n - 1], skip_special_tokens=True)
    assert hit >= 1 and int(roll.lengths[0]) == k + 1 and roll.completions[0] == tok.decode(row[:k])
