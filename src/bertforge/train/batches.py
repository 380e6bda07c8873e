"""The order in which training sequences are visited, as a pure function of the batch index.

Batch k of a run is the same whether the run was interrupted or not: epoch e shuffles with
`default_rng([seed, e])`, and the position in the data is just the number of batches consumed.

Under torchrun, global batch k is the same `world_size x batch_size` sequences of the shuffle
whatever the number of ranks, and rank r reads only its own slice of them: the ranks' slices
are disjoint and together make up the global batch. A run can therefore continue on another
number of ranks, as long as the global batch stays the same.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError


class BatchOrder:
    """Shuffled, epoch-based batches of sequence indices; resumable from a batch counter."""

    def __init__(self, num_sequences: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        """`batch_size` sequences per rank, so a global batch holds batch_size x world_size."""
        if num_sequences < batch_size * world_size:
            ranks = f" ({batch_size} per rank x {world_size} ranks)" if world_size > 1 else ""
            raise DataError(
                f"the training split has {num_sequences} sequences, fewer than one batch of "
                f"{batch_size * world_size}{ranks}; lower train.batch_size or add text"
            )
        self.num_sequences = num_sequences
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = num_sequences // (batch_size * world_size)
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def epoch_of(self, batch_index: int) -> int:
        return batch_index // self.batches_per_epoch

    def indices(self, batch_index: int) -> np.ndarray:
        """Sorted sequence indices of this rank's part of global batch `batch_index`."""
        epoch, j = divmod(batch_index, self.batches_per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_sequences)
            self._epoch = epoch
        start = (j * self.world_size + self.rank) * self.batch_size
        # Sorted reads are faster on a memmap; order inside a batch does not matter to the loss.
        return np.sort(self._perm[start : start + self.batch_size])


def batch_order(cfg, num_sequences: int, world) -> BatchOrder:
    """This rank's share of every global micro-batch: batch_size / world size sequences."""
    if cfg.batch_size % world.size:
        b, n = cfg.batch_size, world.size
        raise ConfigError(
            f"train.batch_size {b} (the global micro-batch) is not divisible by the {n} ranks; "
            f"use a multiple of {n}, e.g. {max(n, b - b % n)} or {b - b % n + n}"
        )
    return BatchOrder(num_sequences, cfg.batch_size // world.size, cfg.seed, world.rank, world.size)
