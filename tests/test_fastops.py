"""The CPU fast paths compute the standard math: dropout statistics, attention, cross-entropy."""

import math

import pytest
import torch
import torch.nn.functional as F

from bertforge import fastops


def test_keep_mask_rate_on_a_large_sample():
    torch.manual_seed(0)
    keep = fastops.keep_mask(torch.Size([64, 256, 256]), 0.1, torch.device("cpu"))  # 4.2M draws
    assert keep.dtype == torch.bool
    assert abs(keep.float().mean().item() - 0.9) < 0.001
    rows = keep.float().mean(dim=(1, 2))  # no stripes: every slice of the draw keeps ~90%
    assert rows.min().item() > 0.89 and rows.max().item() < 0.91


def test_consecutive_masks_differ_and_seed_repeats_them():
    torch.manual_seed(3)
    a = fastops.keep_mask(torch.Size([1000]), 0.5, torch.device("cpu"))
    b = fastops.keep_mask(torch.Size([1000]), 0.5, torch.device("cpu"))
    torch.manual_seed(3)
    assert torch.equal(a, fastops.keep_mask(torch.Size([1000]), 0.5, torch.device("cpu")))
    assert 0.4 < (a != b).float().mean().item() < 0.6  # independent draws disagree half the time


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_scales_kept_values_and_its_gradient_is_the_same_mask(p):
    torch.manual_seed(1)
    x = torch.randn(8, 128, 64, requires_grad=True)
    y = fastops.dropout(x, p, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    upstream = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.allclose(grad, torch.where(kept, upstream / (1 - p), 0.0))


def test_dropout_is_identity_in_eval_and_at_zero():
    x = torch.randn(4, 5)
    assert fastops.dropout(x, 0.1, training=False) is x
    assert fastops.dropout(x, 0.0, training=True) is x
    module = fastops.Dropout(0.2).eval()
    assert module(x) is x


def test_written_out_attention_equals_sdpa_with_the_same_dropout_mask():
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 16, 8) for _ in range(3))
    pad = torch.ones(2, 16, dtype=torch.bool)
    pad[1, 11:] = False  # the second sequence has 5 padding positions
    attn_mask = pad[:, None, None, :]
    p = 0.1
    torch.manual_seed(7)
    fast = fastops.attention(q, k, v, attn_mask, p)
    torch.manual_seed(7)
    keep = fastops.keep_mask(torch.Size([2, 4, 16, 16]), p, torch.device("cpu"))
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    probs = torch.softmax(scores.masked_fill(~attn_mask, float("-inf")), dim=-1)
    expected = (probs * keep / (1 - p)) @ v
    assert torch.allclose(fast, expected, atol=1e-6)
    # no dropout: exactly SDPA
    assert torch.equal(fastops.attention(q, k, v, attn_mask, 0.0),
                       F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_and_its_gradient_equal_torch(dtype):
    torch.manual_seed(4)
    logits = (torch.randn(300, 5000) * 4).to(dtype).requires_grad_()
    targets = torch.randint(0, 5000, (300,))
    ours = fastops.cross_entropy(logits, targets)
    (ours_grad,) = torch.autograd.grad(ours * 3.0, logits)
    ref = F.cross_entropy(logits.float(), targets)
    (ref_grad,) = torch.autograd.grad(ref * 3.0, logits)
    assert ours.dtype == torch.float32
    assert abs(ours.item() - ref.item()) < 1e-5
    assert ours_grad.dtype == dtype
    tol = 1e-8 if dtype == torch.float32 else 1e-4
    assert torch.allclose(ours_grad.float(), ref_grad.float(), atol=tol)


def test_cross_entropy_refuses_a_second_backward():
    logits = torch.randn(4, 10, requires_grad=True)
    loss = fastops.cross_entropy(logits, torch.tensor([1, 2, 3, 4]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward"):
        loss.backward()
