"""The encoder: parameter counts, sparse = dense loss, padding, pre/post-LN."""

import pytest
import torch

from bertforge.config import ModelConfig, build_config
from bertforge.errors import ConfigError
from bertforge.model import IGNORE_INDEX, MaskedLM, count_parameters


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=300, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_seq_len=24,
                hidden_dropout=0.0, attention_dropout=0.0, pad_id=1, position_offset=2, type_vocab_size=1)
    return ModelConfig(**{**base, **kw})


def test_kantai_preset_counts_exactly_83_504_416_parameters():
    model = MaskedLM(build_config(preset="kantai").model)
    assert count_parameters(model) == 83_504_416


def test_small_preset_has_the_seed_model_shape():
    cfg = build_config(preset="small").model
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size, cfg.max_seq_len) == (
        4, 256, 8, 1024, 16000, 128)


def test_decoder_is_tied_to_the_token_embedding():
    model = MaskedLM(tiny())
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)
    with torch.no_grad():
        model.encoder.embeddings.tokens.weight[5].fill_(3.0)
    ids = torch.randint(5, 300, (1, 8))
    logits = model(ids).logits
    h = model.head.norm(model.head.act(model.head.dense(model.encoder(ids))))
    assert torch.allclose(logits[..., 5], h @ torch.full((32,), 3.0) + model.head.bias[5], atol=1e-5)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_sparse_loss_equals_dense_loss(norm):
    torch.manual_seed(0)
    ids = torch.randint(5, 300, (4, 24))
    labels = torch.full_like(ids, IGNORE_INDEX)
    chosen = torch.rand(ids.shape) < 0.2
    labels[chosen] = ids[chosen]
    sparse = MaskedLM(tiny(norm=norm, sparse_prediction=True))
    dense = MaskedLM(tiny(norm=norm, sparse_prediction=False))
    dense.load_state_dict(sparse.state_dict())
    a, b = sparse(ids, labels=labels), dense(ids, labels=labels)
    assert abs(a.loss.item() - b.loss.item()) < 1e-5
    assert a.logits.shape == (int(chosen.sum()), 300)
    a.loss.backward()
    b.loss.backward()
    for (name, pa), (_, pb) in zip(sparse.named_parameters(), dense.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), name


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    model = MaskedLM(tiny()).eval()
    ids = torch.randint(5, 300, (1, 10))
    padded = torch.cat([ids, torch.full((1, 6), 1)], dim=1)
    mask = (padded != 1).long()
    short = model(ids).logits
    long = model(padded, attention_mask=mask).logits[:, :10]
    assert torch.allclose(short, long, atol=1e-5)


def test_pre_ln_has_a_final_norm_and_post_ln_does_not():
    assert MaskedLM(tiny(norm="pre")).encoder.final_norm is not None
    assert MaskedLM(tiny(norm="post")).encoder.final_norm is None


def test_padding_row_starts_at_zero():
    model = MaskedLM(tiny())
    assert torch.count_nonzero(model.encoder.embeddings.tokens.weight[1]) == 0


@pytest.mark.parametrize(
    "bad, field",
    [(dict(num_heads=5), "num_heads"), (dict(norm="middle"), "model.norm"), (dict(activation="swish"), "activation"),
     (dict(hidden_dropout=1.5), "hidden_dropout"), (dict(pad_id=300), "pad_id")],
)
def test_bad_model_values_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        tiny(**bad)
