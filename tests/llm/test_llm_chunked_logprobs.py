"""Log-probs and entropy from the model body's hidden states, the LM head applied a chunk of tokens at
a time (issue 13): the same values and gradients as the whole batch's logits, without ever building them."""

from __future__ import annotations

import pytest
import torch

from grpo.core import categorical_entropy
from grpo.llm.modeling.hidden import lm_head_of
from grpo.llm.modeling.logprobs import completion_logprobs, head_logprobs, sampler_logits, selective_log_softmax

FILTERS = [dict(temperature=1.0), dict(temperature=0.7), dict(temperature=0.8, top_k=5),
           dict(temperature=1.3, top_p=0.8), dict(temperature=0.9, top_k=7, top_p=0.7)]


def _full(logits, ids, temperature=1.0, top_k=0, top_p=1.0):
    """The whole batch's computation: [N, C, V] logits -> log-probs and entropy [N, C]."""
    logits = sampler_logits(logits.float() / temperature, ids, top_k, top_p)
    return selective_log_softmax(logits, ids), categorical_entropy(logits)


def _batch(V, N=6, C=7, H=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, C, H, generator=g, requires_grad=True)  # [N, C, H]
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, H, generator=g))
    return hidden, head, torch.randint(0, V, (N, C), generator=g)


@pytest.mark.parametrize("filt", FILTERS)
@pytest.mark.parametrize("chunk", [1, 5, 13, 1000])  # 5 and 13 do not divide N C = 42
def test_head_logprobs_equal_the_full_computation_in_values_and_gradients(filt, chunk):
    hidden, head, ids = _batch(V=40)
    w1, w2 = torch.randn(2, *ids.shape, generator=torch.Generator().manual_seed(1))
    logp, ent, _ = head_logprobs(head, hidden, ids, with_entropy=True, entropy_grad=True, chunk=chunk, **filt)
    grads = torch.autograd.grad((w1 * logp).sum() + (w2 * ent).sum(), [hidden, head.weight])
    want_logp, want_ent = _full(head(hidden), ids, **filt)
    want = torch.autograd.grad((w1 * want_logp).sum() + (w2 * want_ent).sum(), [hidden, head.weight])
    torch.testing.assert_close(logp, want_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, want_ent, atol=1e-5, rtol=1e-5)
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-4)


def test_entropy_carries_no_gradient_unless_asked():
    hidden, head, ids = _batch(V=30)
    logp, ent, _ = head_logprobs(head, hidden, ids, with_entropy=True, chunk=4)
    assert logp.requires_grad and not ent.requires_grad
    assert head_logprobs(head, hidden, ids, chunk=4)[1] is None


def _rows(V, N=6, P=5, C=6, G=3, seed=0):
    """Left-padded prompts in groups of G identical ones, right-padded completions."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(3, V, (N // G, P), generator=g).repeat_interleave(G, 0)  # [N, P]
    pmask = torch.ones(N, P, dtype=torch.long)
    pmask[:G, :2] = 0  # the first group's prompt is shorter
    comp = torch.randint(3, V, (N, C), generator=g)  # [N, C]
    cmask = torch.ones(N, C, dtype=torch.long)
    cmask[1, 4:] = 0
    return prompts, pmask, comp, cmask


@pytest.mark.parametrize("group_size", [1, 3])  # a plain pass, and each prompt encoded once per group
@pytest.mark.parametrize("filt", [FILTERS[1], FILTERS[4]])
def test_completion_logprobs_equal_the_models_own_logits(random_tiny, group_size, filt):
    model, tok = random_tiny
    pid, pmask, comp, cmask = _rows(len(tok))
    assert lm_head_of(model) is not None  # the chunked path is the one under test
    logp, ent, _ = completion_logprobs(model, pid, pmask, comp, cmask, with_entropy=True, entropy_grad=True,
                                    group_size=group_size, chunk=5, **filt)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = (logp * cmask).sum() + 0.3 * (ent * cmask).sum()
    grads = torch.autograd.grad(loss, params)
    ids, mask = torch.cat([pid, comp], 1), torch.cat([pmask, cmask], 1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    want_logp, want_ent = _full(logits[:, pid.shape[1] - 1:-1], comp, **filt)
    want = torch.autograd.grad((want_logp * cmask).sum() + 0.3 * (want_ent * cmask).sum(), params)
    torch.testing.assert_close(logp, want_logp, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ent, want_ent, atol=1e-4, rtol=1e-4)
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp, atol=1e-4, rtol=1e-3)


def test_the_head_sees_at_most_one_chunk_and_the_model_builds_no_logits(random_tiny):
    model, tok = random_tiny
    pid, pmask, comp, cmask = _rows(len(tok))
    head_rows, lm_logits = [], []
    h1 = model.get_output_embeddings().register_forward_hook(lambda _m, a, _o: head_rows.append(a[0].shape[:-1].numel()))
    h2 = model.register_forward_hook(lambda _m, _a, out: lm_logits.append(out.logits.shape[1]))
    try:
        logp, _, _ = completion_logprobs(model, pid, pmask, comp, cmask, with_entropy=True, group_size=3, chunk=4)
        logp.sum().backward()  # the backward recomputes each chunk's logits, one chunk at a time
    finally:
        h1.remove()
        h2.remove()
    assert max(head_rows) <= 4 and sum(head_rows) >= 2 * comp.numel()  # forward + recomputation
    assert lm_logits and set(lm_logits) == {0}  # the model's own forward computed logits at no position


# ---------------------------------------------------------------- the exact KL (kl_estimator "full")
@pytest.mark.parametrize("filt", [FILTERS[0], FILTERS[2], FILTERS[3]])  # KL of the unfiltered distributions
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_head_kl_equals_the_exact_kl_of_the_whole_distributions_in_values_and_gradients(filt, chunk):
    hidden, head, ids = _batch(V=40)
    ref_hidden, ref_head, _ = _batch(V=40, H=9, seed=3)  # another model: its own width
    w = torch.rand(*ids.shape, generator=torch.Generator().manual_seed(1))
    kl = head_logprobs(head, hidden, ids, chunk=chunk, ref=(ref_head, ref_hidden), **filt).kl  # [N, C]
    assert torch.autograd.grad(kl.sum(), [ref_hidden, ref_head.weight], allow_unused=True,
                               retain_graph=True) == (None, None)  # the reference is a constant
    grads = torch.autograd.grad((w * kl).sum(), [hidden, head.weight])
    T = filt["temperature"]
    p = torch.distributions.Categorical(logits=head(hidden) / T)
    q = torch.distributions.Categorical(logits=ref_head(ref_hidden).detach() / T)
    want_kl = torch.distributions.kl_divergence(p, q)  # [N, C]
    want = torch.autograd.grad((w * want_kl).sum(), [hidden, head.weight])
    torch.testing.assert_close(kl, want_kl, atol=1e-5, rtol=1e-5)
    for got, exp in zip(grads, want):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-4)


def test_completion_kl_to_the_model_itself_is_zero_and_to_another_the_plain_forwards(random_tiny):
    model, tok = random_tiny
    other = type(model)(model.config)  # the same shape, other weights
    torch.manual_seed(5)
    for p in other.parameters():
        torch.nn.init.normal_(p, std=0.2)
    pid, pmask, comp, cmask = _rows(len(tok))
    same = completion_logprobs(model, pid, pmask, comp, cmask, group_size=3, chunk=5, kl_to=model).kl
    torch.testing.assert_close(same, torch.zeros_like(same), atol=1e-5, rtol=0)
    kl = completion_logprobs(model, pid, pmask, comp, cmask, temperature=0.7, group_size=3, chunk=5, kl_to=other).kl
    ids, mask = torch.cat([pid, comp], 1), torch.cat([pmask, cmask], 1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = [m(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, pid.shape[1] - 1:-1] / 0.7
                  for m in (model, other)]
    want = torch.distributions.kl_divergence(*(torch.distributions.Categorical(logits=x) for x in logits))
    assert float((want * cmask).sum()) > 1.0  # the two models differ: the check below can fail
    torch.testing.assert_close(kl * cmask, want * cmask, atol=1e-4, rtol=1e-4)
    assert completion_logprobs(model, pid, pmask, comp, cmask).kl is None
