"""Sampling, completion masks (left padding, early EOS) and completion log-probs."""

from __future__ import annotations

import torch

from grpo.llm.rollout.generation import Rollout, completion_mask, encode_prompts, generate
from grpo.llm.modeling.logprobs import completion_logprobs, selective_log_softmax


def test_completion_mask_early_eos_and_truncation():
    eos, pad = 1, 0
    ids = torch.tensor([
        [5, 6, 1, 0, 0],  # ends early: EOS kept, padding after it masked
        [1, 0, 0, 0, 0],  # EOS at once: a one-token completion
        [5, 6, 7, 8, 9],  # no EOS: truncated, every token counts
        [5, 1, 7, 1, 0],  # tokens after the first EOS never count, even a second EOS
    ])
    mask, truncated = completion_mask(ids, [eos])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert truncated.tolist() == [False, False, True, False]
    # several EOS ids (e.g. <|im_end|> and <|endoftext|>)
    mask2, _ = completion_mask(torch.tensor([[5, 2, 7]]), [1, 2])
    assert mask2.tolist() == [[1, 1, 0]]


def test_selective_log_softmax_equals_log_softmax_gather():
    logits = torch.randn(2, 3, 11)
    ids = torch.randint(0, 11, (2, 3))
    ref = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    torch.testing.assert_close(selective_log_softmax(logits, ids), ref)


def test_completion_logprobs_equal_plain_forward_with_left_padding(random_tiny):
    """Left-padded batch log-probs == an unpadded forward pass of each sequence alone."""
    model, tok = random_tiny
    texts = ["1+2=", "48+51=", "7+7+7+7="]  # different lengths -> different left padding
    ids, mask = encode_prompts(tok, texts, torch.device("cpu"), 64, 5)
    assert mask[0, 0] == 0 and mask[2].all()  # the shortest prompt is left-padded
    completion = torch.tensor([[20, 21, 1, 0, 0], [22, 1, 0, 0, 0], [23, 24, 25, 26, 27]])
    cmask, _ = completion_mask(completion, [tok.eos_token_id])
    logp, entropy, _ = completion_logprobs(model, ids, mask, completion, cmask, with_entropy=True)
    for i in range(3):
        n, c = int(mask[i].sum()), int(cmask[i].sum())
        seq = torch.cat([ids[i, -n:], completion[i, :c]])[None]  # no padding at all
        with torch.no_grad():
            plain = torch.log_softmax(model(input_ids=seq).logits[0, n - 1:n - 1 + c], -1)
        expected = plain.gather(-1, completion[i, :c, None]).squeeze(-1)
        torch.testing.assert_close(logp[i, :c].detach(), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(entropy[i, :c], -(plain.exp() * plain).sum(-1), rtol=1e-4, atol=1e-5)


def test_temperature_scales_logits(random_tiny):
    model, tok = random_tiny
    ids, mask = encode_prompts(tok, ["12+3="], torch.device("cpu"), 64, 2)
    comp, cmask = torch.tensor([[20, 21]]), torch.ones(1, 2, dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([ids, comp], 1)).logits[0, -3:-1] / 0.5
    expected = torch.log_softmax(logits, -1).gather(-1, comp[0, :, None]).squeeze(-1)
    logp, _, _ = completion_logprobs(model, ids, mask, comp, cmask, temperature=0.5)
    torch.testing.assert_close(logp[0].detach(), expected, rtol=1e-4, atol=1e-5)


def test_generate_groups_and_masks(random_tiny):
    """G samples per prompt, prompt-major; greedy results do not depend on the left padding."""
    model, tok = random_tiny
    texts = ["1+2=", "48+51="]
    ids, mask = encode_prompts(tok, texts, torch.device("cpu"), 64, 6)
    torch.manual_seed(0)
    roll = generate(model, tok, ids, mask, group_size=3, max_new_tokens=6)
    assert roll.completion_ids.shape[0] == 6 and len(roll.completions) == 6
    assert torch.equal(roll.prompt_ids[0], roll.prompt_ids[2]) and torch.equal(roll.prompt_ids[3], ids[1])
    expected_mask, truncated = completion_mask(roll.completion_ids, [tok.eos_token_id])
    assert torch.equal(roll.completion_mask, expected_mask) and torch.equal(roll.truncated, truncated)
    batch = generate(model, tok, ids, mask, 1, 6, greedy=True)
    for i, text in enumerate(texts):
        one_ids, one_mask = encode_prompts(tok, [text], torch.device("cpu"), 64, 6)
        alone = generate(model, tok, one_ids, one_mask, 1, 6, greedy=True)
        assert alone.completions[0] == batch.completions[i]


def test_rollout_cat_repads(random_tiny):
    _, tok = random_tiny
    a = Rollout(torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long), torch.tensor([[7, 1]]),
                torch.tensor([[1, 1]]), torch.tensor([False]), ["x"])
    b = Rollout(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[8, 9, 10]]),
                torch.tensor([[1, 1, 1]]), torch.tensor([True]), ["y"])
    c = Rollout.cat([a, b], pad_id=0)
    assert c.prompt_ids.tolist() == [[0, 5, 6], [5, 6, 7]] and c.prompt_mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert c.completion_ids.tolist() == [[7, 1, 0], [8, 9, 10]] and c.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert c.completions == ["x", "y"] and c.truncated.tolist() == [False, True]


def test_prompt_longer_than_context_is_a_clear_error(random_tiny):
    import pytest

    _, tok = random_tiny
    with pytest.raises(ValueError, match="exceeds the model's context of 64 tokens"):
        encode_prompts(tok, ["1" * 60], torch.device("cpu"), 64, 8)


def test_shared_prompt_logprobs_and_gradients_equal_the_plain_forward(random_tiny):
    """Encoding each prompt once for its G rows changes nothing: same log-probs, same gradient."""
    model, tok = random_tiny
    ids, mask = encode_prompts(tok, ["1+2=", "48+51="], torch.device("cpu"), 64, 5)
    G = 3
    pid, pmask = ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)  # [6, P], first prompt left-padded
    torch.manual_seed(0)
    comp = torch.randint(3, 90, (6, 5))
    comp[0, 2] = comp[4, 0] = tok.eos_token_id  # early EOS, one at once
    cmask, _ = completion_mask(comp, [tok.eos_token_id])
    comp = comp.masked_fill(cmask == 0, tok.pad_token_id)
    results = []
    for group_size in (1, G):
        model.zero_grad()
        logp, _, _ = completion_logprobs(model, pid, pmask, comp, cmask, group_size=group_size)
        (logp * cmask).sum().backward()
        results.append((logp.detach() * cmask, [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cached_and_hf_engines_agree_greedily(tiny):
    model, tok = tiny
    texts = ["12+34=", "9+90=", "77+88="]
    ids, mask = encode_prompts(tok, texts, torch.device("cpu"), 64, 6)
    a = generate(model, tok, ids, mask, 2, 6, greedy=True, engine="cached")
    b = generate(model, tok, ids, mask, 2, 6, greedy=True, engine="hf")
    assert a.completions == b.completions and torch.equal(a.completion_mask, b.completion_mask)


def test_filter_logits_top_p_keeps_the_smallest_set_reaching_p():
    from grpo.llm.modeling.logprobs import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).sum() == 1  # always at least one
