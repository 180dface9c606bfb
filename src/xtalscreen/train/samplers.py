"""Class-balanced mini-batches (paper 001: "all mini-batches have approximately equal numbers
of images per class").

:class:`BalancedBatchSampler` draws each batch with ``batch_size / n_classes`` items of every
class present (the remainder goes to classes chosen at random), cycling through a fresh
shuffle of each class's items, so a rare class is repeated and a common one is visited in
full over the epochs. The order depends only on ``(seed, epoch)``.
"""

from __future__ import annotations

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["BalancedBatchSampler", "RandomBatchSampler"]


def _check(batch_size, batches) -> tuple[int, int | None]:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batches is not None and (int(batches) != batches or batches < 1):
        raise ParameterError(f"batches_per_epoch must be an integer >= 1, got {batches!r}")
    return int(batch_size), None if batches is None else int(batches)


class BalancedBatchSampler:
    """Batches of item indices with (almost) equal counts per class.

    Parameters
    ----------
    labels : array of int, shape (N,)
        Class index of each item (negative = unusable, never drawn).
    batch_size : int, keyword-only
        Items per batch (paper 001: 64).
    batches_per_epoch : int, keyword-only
        Default ``ceil(N / batch_size)`` (paper 001: 100).
    seed : int, keyword-only

    Examples
    --------
    >>> s = BalancedBatchSampler([0] * 90 + [1] * 10, batch_size=10, batches_per_epoch=3)
    >>> [int((np.array([0] * 90 + [1] * 10)[b] == 1).sum()) for b in s]
    [5, 5, 5]
    """

    def __init__(self, labels, *, batch_size: int = 64, batches_per_epoch: int | None = None,
                 seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size, bpe = _check(batch_size, batches_per_epoch)
        self.classes = np.unique(self.labels[self.labels >= 0])
        if not len(self.classes):
            raise ParameterError("labels: no usable item to sample")
        self.pools = [np.flatnonzero(self.labels == c) for c in self.classes]
        n = int((self.labels >= 0).sum())
        self.batches_per_epoch = bpe or max(1, -(-n // self.batch_size))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 0xBA1]))
        k = len(self.pools)
        order = [rng.permutation(p) for p in self.pools]
        pos = [0] * k
        base, extra = divmod(self.batch_size, k)
        for _ in range(self.batches_per_epoch):
            counts = np.full(k, base)
            if extra:
                counts[rng.choice(k, extra, replace=False)] += 1
            batch = []
            for c in range(k):
                for _ in range(counts[c]):
                    if pos[c] == len(order[c]):
                        order[c] = rng.permutation(self.pools[c])
                        pos[c] = 0
                    batch.append(int(order[c][pos[c]]))
                    pos[c] += 1
            rng.shuffle(batch)
            yield batch


class RandomBatchSampler:
    """Plain shuffled batches (no balancing), same interface as :class:`BalancedBatchSampler`;
    ``batches_per_epoch`` default: one pass over the data."""

    def __init__(self, labels, *, batch_size: int = 64, batches_per_epoch: int | None = None,
                 seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size, bpe = _check(batch_size, batches_per_epoch)
        self.items = np.flatnonzero(self.labels >= 0)
        if not len(self.items):
            raise ParameterError("labels: no usable item to sample")
        self.batches_per_epoch = bpe or max(1, -(-len(self.items) // self.batch_size))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 0x5A1]))
        order, pos = rng.permutation(self.items), 0
        size = min(self.batch_size, len(self.items))
        for _ in range(self.batches_per_epoch):
            if pos + size > len(order):
                order, pos = rng.permutation(self.items), 0
            yield [int(v) for v in order[pos:pos + size]]
            pos += size
