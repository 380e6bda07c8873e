"""MLM masking: exact statistics on large samples, specials never touched, determinism."""

import numpy as np
import torch

from bertforge.config import MaskingConfig
from bertforge.masking import MaskingVocab, mask_tokens, sequence_seeds
from bertforge.model import IGNORE_INDEX

V = 1000
SPECIALS = [0, 1, 2, 3, 4]  # <s> <pad> </s> <unk> <mask>


def vocab(word_start=None) -> MaskingVocab:
    return MaskingVocab.build(V, SPECIALS, mask_id=4, word_start=word_start)


def batch(rows=256, length=128, seed=0) -> torch.Tensor:
    """Sequences shaped like packed data: <s> ... </s> with a few padded tails."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (rows, length), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    ids[::7, 100:] = 1  # padding
    ids[::7, 99] = 2
    return ids


def test_masking_rate_and_80_10_10_split_on_100k_tokens():
    ids = batch(rows=1024)  # 131k tokens
    inputs, labels = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(0, 0, range(len(ids))))
    maskable = ids >= 5
    chosen = labels != IGNORE_INDEX
    assert maskable.sum() > 100_000
    rate = chosen.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.004  # 3.5 sigma for ~120k Bernoulli draws
    n = chosen.sum().item()
    masked = (inputs[chosen] == 4).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    randomised = 1 - masked - kept
    assert abs(masked - 0.80) < 0.01
    assert abs(kept - 0.10) < 0.01
    assert abs(randomised - 0.10) < 0.01


def test_labels_hold_originals_at_chosen_positions_and_minus_100_elsewhere():
    ids = batch()
    inputs, labels = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(1, 0, range(len(ids))))
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_special_and_padding_tokens_are_never_chosen_nor_drawn_as_replacements():
    ids = batch(rows=512)
    inputs, labels = mask_tokens(ids, vocab(), MaskingConfig(mask_prob=0.5), sequence_seeds(2, 0, range(len(ids))))
    assert not (labels[ids < 5] != IGNORE_INDEX).any()
    replaced = (labels != IGNORE_INDEX) & (inputs != ids) & (inputs != 4)
    assert replaced.sum() > 1000
    assert (inputs[replaced] >= 5).all()


def test_every_sequence_gets_at_least_one_mask():
    ids = torch.randint(5, V, (5000, 4))
    ids[:, 0], ids[:, -1] = 0, 2  # two maskable tokens: Bernoulli alone leaves ~72% empty
    _, labels = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(3, 0, range(len(ids))))
    assert ((labels != IGNORE_INDEX).sum(dim=1) >= 1).all()


def test_same_seed_same_masks_and_new_step_new_masks():
    ids = batch()
    a = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(7, 10, range(len(ids))))
    b = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(7, 10, range(len(ids))))
    c = mask_tokens(ids, vocab(), MaskingConfig(), sequence_seeds(7, 11, range(len(ids))))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_whole_word_masking_takes_every_piece_of_a_word():
    starts = np.zeros(V, dtype=bool)
    starts[5:500] = True  # ids 500.. continue a word (like '##ing' pieces)
    ids = batch(rows=512)
    inputs, labels = mask_tokens(ids, vocab(starts), MaskingConfig(whole_word=True), sequence_seeds(4, 0, range(len(ids))))
    chosen = labels != IGNORE_INDEX
    continuation = (ids >= 500)
    # A continuation piece is chosen exactly when the piece before it is (same word),
    # unless the piece before it is special (then the continuation starts its own word).
    prev_chosen = torch.zeros_like(chosen)
    prev_chosen[:, 1:] = chosen[:, :-1]
    prev_special = torch.zeros_like(chosen)
    prev_special[:, 1:] = ids[:, :-1] < 5
    inside = continuation & ~prev_special
    assert torch.equal(chosen[inside], prev_chosen[inside])
    rate = chosen.sum().item() / (ids >= 5).sum().item()
    assert 0.12 < rate < 0.18
