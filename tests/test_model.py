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


def test_sinusoidal_positions_are_the_transformer_table_at_the_token_rows_scale():
    """Row p, column 2i is sin(p / 10000^(2i/H)), column 2i+1 its cosine, times std * sqrt(2)."""
    cfg = tiny(position_init="sinusoidal", initializer_range=0.02)
    table = MaskedLM(cfg).encoder.embeddings.positions.weight.detach().double()
    scale = 0.02 * 2**0.5
    p, i, width = 7, 3, cfg.hidden_size
    angle = torch.tensor(p / 10000 ** (2 * i / width), dtype=torch.float64)
    assert table[p, 2 * i].item() == pytest.approx(scale * torch.sin(angle).item(), rel=1e-6)
    assert table[p, 2 * i + 1].item() == pytest.approx(scale * torch.cos(angle).item(), rel=1e-6)
    assert table[0, 0::2].abs().max() == 0  # sin(0)
    assert torch.allclose(table[0, 1::2], torch.full_like(table[0, 1::2], scale))  # cos(0)
    assert table.pow(2).mean().sqrt().item() == pytest.approx(0.02, rel=1e-6)
    # what attention can use from step 0: a row's dot product with another depends only on their offset
    gram = table @ table.T
    offset_three = torch.diagonal(gram, 3)[:10]
    assert torch.allclose(offset_three, torch.full_like(offset_three, gram[0, 3].item()), atol=1e-9)


def test_sinusoidal_positions_reach_every_encoder_and_stay_trainable():
    """ELECTRA (whose generator shares these embeddings) and a fine-tuning classifier start from the
    same table; nothing but the position rows differs from the normal init."""
    from bertforge.finetune.model import Classifier
    from bertforge.model import Electra, sinusoids

    cfg = tiny(position_init="sinusoidal", discriminator=True)
    want = sinusoids(cfg.num_positions, cfg.hidden_size, cfg.initializer_range)
    electra = Electra(cfg)
    assert torch.equal(electra.encoder.embeddings.positions.weight, want)
    classifier = Classifier(tiny(position_init="sinusoidal"), num_labels=2, task="classify")
    assert torch.equal(classifier.encoder.embeddings.positions.weight, want)
    assert classifier.encoder.embeddings.positions.weight.requires_grad
    torch.manual_seed(0)
    normal = MaskedLM(tiny())
    torch.manual_seed(0)
    sinus = MaskedLM(tiny(position_init="sinusoidal"))
    for (name, a), (_, b) in zip(normal.named_parameters(), sinus.named_parameters()):
        assert torch.equal(a, b) == ("positions" not in name), name


def test_unknown_position_init_is_refused():
    with pytest.raises(ConfigError, match="model.position_init"):
        tiny(position_init="rotary")


def test_document_positions_number_each_packed_document_as_if_read_alone():
    """Row `<s> a a eos b b b eos pad`: the first document keeps 0.. from its <s>; the second,
    which has no <s>, starts at 1, where a lone text's first word sits; padding is its own run."""
    from bertforge.model import document_offsets

    documents = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]])
    assert document_offsets(documents).tolist() == [[0, 1, 2, 3, 1, 2, 3, 4, 1], list(range(9))]


@pytest.mark.parametrize("electra", [False, True])
def test_a_packed_document_reads_the_same_wherever_the_packing_put_it(electra):
    """With documents isolated and numbered from their own start, document B's vectors (and, for
    ELECTRA, its generator's predictions, which read the same embeddings) do not depend on how long
    the document before it was; numbered along the row, they do."""
    from bertforge.evaluate import attention_mask_for
    from bertforge.model import Electra

    bos, eos = 0, 2
    b = [40, 41, 42, 43]
    short = torch.tensor([[bos, 10, 11, eos, *b, eos]])
    long = torch.tensor([[bos, 10, 11, 12, 13, 14, eos, *b, eos]])
    in_b = [torch.arange(short.shape[1]) >= 4, torch.arange(long.shape[1]) >= 7]
    for restart, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        cfg = tiny(document_positions=restart, discriminator=electra)
        model = (Electra(cfg) if electra else MaskedLM(cfg)).eval()
        with torch.no_grad():
            outs = [
                model.masked_logits(row, attention_mask_for(row.numpy(), 1, eos), where[None])
                if electra else model.encoder(row, attention_mask_for(row.numpy(), 1, eos))[0, where]
                for row, where in zip((short, long), in_b)
            ]
        assert torch.allclose(outs[0], outs[1], atol=1e-5) is same


def test_document_positions_need_isolated_documents():
    with pytest.raises(ConfigError, match="model.document_positions.*data.isolate_documents"):
        build_config(preset="tiny", overrides={"model": {"document_positions": True}})
    cfg = build_config(preset="tiny", overrides={"model": {"document_positions": True},
                                                 "data": {"isolate_documents": True}})
    assert cfg.model.document_positions
    # a CPU budget recipe isolates documents, so the setting is accepted on top of it
    from bertforge.api import run_config

    cfg, _ = run_config(budget="10m", settings=["train.device=cpu", "model.document_positions=true"])
    assert cfg.model.document_positions and cfg.data.isolate_documents
