"""Dynamic MLM masking (BERT, Devlin et al. 2018; fresh masks per epoch as RoBERTa).

A pure function of (token ids, per-sequence seeds). The random numbers come from a counter-based
generator: splitmix64's mixing function (Steele et al., 2014, "Fast splittable pseudorandom
number generators") applied to (sequence seed, position, draw). So the masks of a sequence depend
only on its seed, never on the batch it sits in: a resumed run, a run with gradient accumulation
and a run split over any number of ranks all mask a sequence the same way. The training loop
derives a sequence's seed from (train.seed, epoch, sequence index), so masks change every epoch.
Everything is vectorised on int64 tensors (their multiplication wraps like uint64); there is no
Python loop over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import MaskingConfig
from .model import IGNORE_INDEX


def _int64(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN_GAMMA = _int64(0x9E3779B97F4A7C15)  # splitmix64's increment: 2^64 / golden ratio
MIX_1, MIX_2 = _int64(0xBF58476D1CE4E5B9), _int64(0x94D049BB133111EB)
DRAW_SCORE, DRAW_ACTION, DRAW_PICK = 0, 1, 2  # the independent draws made per position
NUM_DRAWS = 3


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical shift of int64 bits (torch's >> on signed integers copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser: a bijection on 64-bit words whose outputs look independent."""
    x = (x ^ _shift_right(x, 30)) * MIX_1
    x = (x ^ _shift_right(x, 27)) * MIX_2
    return x ^ _shift_right(x, 31)


def _mix_in(state: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    """One splitmix64 step keyed by `value`: hashes a tuple of integers one field at a time."""
    return mix64(state + (torch.as_tensor(value, dtype=torch.int64) + 1) * GOLDEN_GAMMA)


def sequence_seeds(seed: int, epoch: int, indices: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B,) int64 seeds of the sequences `indices` in `epoch`: the only input masking needs."""
    index = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
    state = _mix_in(_mix_in(torch.zeros((), dtype=torch.int64), seed), epoch)
    return _mix_in(state, index)


def _random_bits(seeds: torch.Tensor, draw: int, length: int) -> torch.Tensor:
    """(B, length) non-negative int64 with 63 random bits, for positions 0..length-1 of each sequence."""
    counter = torch.arange(length, dtype=torch.int64) * NUM_DRAWS + draw  # (length,)
    return _shift_right(_mix_in(seeds[:, None], counter[None, :]), 1)


def _uniform(seeds: torch.Tensor, draw: int, length: int) -> torch.Tensor:
    """(B, length) float64 uniforms in [0, 1) with 53 random bits."""
    return _shift_right(_random_bits(seeds, draw, length), 10).double() * 2.0**-53


@dataclass(frozen=True)
class MaskingVocab:
    """What masking needs to know about the vocabulary, as tensors."""

    mask_id: int
    special: torch.Tensor  # (V,) bool: special tokens (never chosen, never drawn as replacements)
    word_start: torch.Tensor  # (V,) bool: token begins a word (for whole-word masking)
    replacement_ids: torch.Tensor  # (R,) ids a chosen token may be swapped for: all non-special tokens
    byte_length: torch.Tensor | None = None  # (V,) int64 text bytes per token, for bits per byte (evaluate)

    @classmethod
    def build(
        cls, vocab_size: int, special_ids: list[int], mask_id: int, word_start: np.ndarray | None = None,
        byte_length: np.ndarray | None = None,
    ):
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[torch.tensor(sorted(special_ids), dtype=torch.long)] = True
        starts = torch.ones(vocab_size, dtype=torch.bool) if word_start is None else torch.as_tensor(word_start).bool()
        lengths = None if byte_length is None else torch.as_tensor(byte_length, dtype=torch.long)
        return cls(mask_id, special, starts, torch.nonzero(~special).flatten(), lengths)


def choose_positions(input_ids: torch.Tensor, vocab: MaskingVocab, cfg: MaskingConfig, seeds: torch.Tensor):
    """(B, T) ids -> (B, T) bool: positions to predict.

    Each maskable position (or whole word) is chosen with probability `mask_prob`; a sequence
    that drew none gets its lowest-scored maskable unit, so every sequence teaches something.
    """
    maskable = ~vocab.special[input_ids]  # (B, T)
    if cfg.whole_word:
        starts = vocab.word_start[input_ids] | ~maskable
        # A token after a special token starts a word, whatever its spelling.
        starts[:, 1:] |= ~maskable[:, :-1]
    else:
        starts = torch.ones_like(maskable)
    word_index = torch.cumsum(starts.long(), dim=1)  # (B, T) index of the word each token belongs to
    scores = _uniform(seeds, DRAW_SCORE, input_ids.shape[1] + 1)  # (B, T + 1) one per word index
    token_scores = scores.gather(1, word_index)  # every piece of a word shares its word's score
    token_scores = token_scores.masked_fill(~maskable, 2.0)
    chosen = token_scores < cfg.mask_prob
    # At least one per sequence: take the unit with the lowest score where none was chosen.
    lowest = token_scores.min(dim=1, keepdim=True).values
    fallback = (token_scores == lowest) & maskable & ~chosen.any(dim=1, keepdim=True)
    return chosen | fallback


def mask_tokens(
    input_ids: torch.Tensor, vocab: MaskingVocab, cfg: MaskingConfig, seeds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and (B,) seeds (`sequence_seeds`) -> (inputs, labels): chosen positions become
    [MASK] (80%), a random token (10%) or stay (10%); labels hold the original id there and -100
    elsewhere."""
    input_ids = input_ids.long()
    length = input_ids.shape[1]
    chosen = choose_positions(input_ids, vocab, cfg, seeds)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = _uniform(seeds, DRAW_ACTION, length)
    to_mask = chosen & (action < cfg.mask_token_prob)
    to_random = chosen & (action >= cfg.mask_token_prob) & (action < cfg.mask_token_prob + cfg.random_token_prob)
    picks = _random_bits(seeds, DRAW_PICK, length) % len(vocab.replacement_ids)  # bias < 2^-40
    inputs = torch.where(to_mask, torch.full_like(input_ids, vocab.mask_id), input_ids)
    inputs = torch.where(to_random, vocab.replacement_ids[picks], inputs)
    return inputs, labels


def causal_labels(ids: torch.Tensor, pad_id: int, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) next-token labels for a causal LM: labels[:, t] = ids[:, t + 1], -100 where nothing is
    predicted: the last position, padding, and (with a template's loss mask) prompt tokens."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    target = ids[:, 1:]
    keep = target != pad_id
    if loss_mask is not None:
        keep &= loss_mask[:, 1:].bool()
    labels[:, :-1] = torch.where(keep, target, IGNORE_INDEX)
    return labels


def masking_vocab(tokenizer) -> MaskingVocab:
    """The MaskingVocab of a TextTokenizer (its size, special ids, mask id, word starts, byte lengths)."""
    return MaskingVocab.build(
        tokenizer.vocab_size, tokenizer.special_ids, tokenizer.mask_id, tokenizer.word_start_table(),
        tokenizer.byte_length_table(),
    )
