"""Class-balanced mini-batches (paper 001: "all mini-batches have approximately equal numbers
of images per class").

:class:`BalancedBatchSampler` draws each batch with ``batch_size / n_classes`` items of every
class present (the remainder goes to classes chosen at random), cycling through a fresh
shuffle of each class's items, so a rare class is repeated and a common one is visited in
full over the epochs. The order depends only on ``(seed, epoch)``.

:class:`GroupedBatchSampler` keeps every batch inside one group of items (e.g. one detector
preset) when the groups give network inputs of different sizes (small detectors kept at full
resolution, :attr:`~xtalscreen.preprocess.PreprocessConfig.unbinned_up_to`); inside a group
it samples like the sampler it wraps. :func:`group_batches` does the same for a fixed pass
(evaluation), and :func:`collate` stacks a batch, giving an unreadable item (label -1) the
batch's input size.
"""

from __future__ import annotations

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["BalancedBatchSampler", "RandomBatchSampler", "GroupedBatchSampler", "group_batches",
           "collate"]


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


class GroupedBatchSampler:
    """Batches that never mix groups: each batch is drawn from one group, chosen at random in
    proportion to its number of usable items, by a ``sampler_cls`` over that group alone.

    Parameters
    ----------
    sampler_cls : type
        :class:`BalancedBatchSampler` or :class:`RandomBatchSampler`.
    labels : array of int, shape (N,)
    groups : sequence, shape (N,)
        Group of each item (any hashable values, e.g. preset names).
    batch_size, batches_per_epoch, seed : keyword-only
        As for ``sampler_cls`` (``batches_per_epoch`` counts all groups together).

    Examples
    --------
    >>> s = GroupedBatchSampler(RandomBatchSampler, [0, 1] * 6, ["a"] * 4 + ["b"] * 8,
    ...                         batch_size=2, batches_per_epoch=6)
    >>> all(len({"a" if i < 4 else "b" for i in b}) == 1 for b in s)
    True
    """

    def __init__(self, sampler_cls, labels, groups, *, batch_size: int = 64,
                 batches_per_epoch: int | None = None, seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        groups = np.asarray(groups, dtype=object)
        if groups.shape != self.labels.shape:
            raise ParameterError(f"groups must give one group per item ({len(self.labels)}), "
                                 f"got {groups.shape[0] if groups.ndim else 0}")
        self.batch_size, bpe = _check(batch_size, batches_per_epoch)
        self.names = [g for g in dict.fromkeys(groups.tolist())
                      if np.any((groups == g) & (self.labels >= 0))]
        if not self.names:
            raise ParameterError("labels: no usable item to sample")
        self.sizes = np.array([int(np.sum((groups == g) & (self.labels >= 0))) for g in self.names])
        n = int(self.sizes.sum())
        self.batches_per_epoch = bpe or max(1, -(-n // self.batch_size))
        self.samplers = [sampler_cls(np.where(groups == g, self.labels, -1), batch_size=self.batch_size,
                                     batches_per_epoch=self.batches_per_epoch, seed=seed + 7919 * k)
                         for k, g in enumerate(self.names)]
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for s in self.samplers:
            s.set_epoch(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 0x6E0]))
        which = rng.choice(len(self.samplers), size=self.batches_per_epoch, p=self.sizes / self.sizes.sum())
        iters = [iter(s) for s in self.samplers]  # each yields up to batches_per_epoch batches
        for k in which:
            yield next(iters[k])


def group_batches(groups, batch_size: int) -> list[list[int]]:
    """Index batches of a fixed pass over ``len(groups)`` items: consecutive items of one group
    per batch (groups in order of first appearance, items in order inside a group).

    >>> group_batches(["a", "b", "a", "a", "b"], 2)
    [[0, 2], [3], [1, 4]]
    """
    batch_size, _ = _check(batch_size, None)
    by: dict = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    return [idx[k:k + batch_size] for idx in by.values() for k in range(0, len(idx), batch_size)]


def collate(batch):
    """Stack ``(x, y, i)`` items into a batch; an unreadable item (``y == -1``, a zero input)
    takes the size of the readable ones. Readable items of different sizes are an error: batch
    them by group (:class:`GroupedBatchSampler`)."""
    import torch

    shapes = {tuple(x.shape) for x, y, _ in batch if y >= 0}
    if len(shapes) > 1:
        raise ParameterError(f"one batch holds inputs of different sizes {sorted(shapes)}: items of "
                             "detectors kept at full resolution (unbinned_up_to) and binned ones "
                             "must be batched apart; give the items a 'preset' or 'group' column")
    if shapes:
        ref = shapes.pop()
        batch = [(x if tuple(x.shape) == ref else torch.zeros(ref, dtype=x.dtype), y, i)
                 for x, y, i in batch]
    return (torch.stack([b[0] for b in batch]), torch.as_tensor([b[1] for b in batch]),
            torch.as_tensor([b[2] for b in batch]))
