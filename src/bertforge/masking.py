"""Dynamic MLM masking (BERT, Devlin et al. 2018; fresh masks per batch as RoBERTa).

A pure function of (token ids, generator): the training loop seeds a generator per step, so the
masks of step N are the same in an uninterrupted run and in a resumed one, and different in
every epoch. Everything is vectorised on tensors; there is no Python loop over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import MaskingConfig
from .model import IGNORE_INDEX


@dataclass(frozen=True)
class MaskingVocab:
    """What masking needs to know about the vocabulary, as tensors."""

    mask_id: int
    special: torch.Tensor  # (V,) bool: special tokens (never chosen, never drawn as replacements)
    word_start: torch.Tensor  # (V,) bool: token begins a word (for whole-word masking)
    replacement_ids: torch.Tensor  # (R,) ids a chosen token may be swapped for: all non-special tokens

    @classmethod
    def build(cls, vocab_size: int, special_ids: list[int], mask_id: int, word_start: np.ndarray | None = None):
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[torch.tensor(sorted(special_ids), dtype=torch.long)] = True
        starts = torch.ones(vocab_size, dtype=torch.bool) if word_start is None else torch.as_tensor(word_start).bool()
        return cls(mask_id, special, starts, torch.nonzero(~special).flatten())


def choose_positions(input_ids: torch.Tensor, vocab: MaskingVocab, cfg: MaskingConfig, generator: torch.Generator):
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
    scores = torch.rand(input_ids.shape[0], input_ids.shape[1] + 1, generator=generator)
    token_scores = scores.gather(1, word_index)  # every piece of a word shares its word's score
    token_scores = token_scores.masked_fill(~maskable, 2.0)
    chosen = token_scores < cfg.mask_prob
    # At least one per sequence: take the unit with the lowest score where none was chosen.
    lowest = token_scores.min(dim=1, keepdim=True).values
    fallback = (token_scores == lowest) & maskable & ~chosen.any(dim=1, keepdim=True)
    return chosen | fallback


def mask_tokens(
    input_ids: torch.Tensor, vocab: MaskingVocab, cfg: MaskingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids -> (inputs, labels): chosen positions become [MASK] (80%), a random token (10%)
    or stay (10%); labels hold the original id there and -100 elsewhere."""
    input_ids = input_ids.long()
    chosen = choose_positions(input_ids, vocab, cfg, generator)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (action < cfg.mask_token_prob)
    to_random = chosen & (action >= cfg.mask_token_prob) & (action < cfg.mask_token_prob + cfg.random_token_prob)
    picks = torch.randint(len(vocab.replacement_ids), input_ids.shape, generator=generator)
    inputs = torch.where(to_mask, torch.full_like(input_ids, vocab.mask_id), input_ids)
    inputs = torch.where(to_random, vocab.replacement_ids[picks], inputs)
    return inputs, labels


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator that depends only on (seed, step): masks are reproducible and resumable."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
