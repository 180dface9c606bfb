"""Class-balanced batches and learning-rate schedules."""

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.train.samplers import BalancedBatchSampler, RandomBatchSampler
from xtalscreen.train.schedules import learning_rate


def test_balanced_batches_have_equal_class_counts_despite_imbalance():
    labels = np.array([0] * 500 + [1] * 30 + [2] * 6 + [-1] * 10)
    s = BalancedBatchSampler(labels, batch_size=63, batches_per_epoch=20, seed=0)
    assert len(s) == 20
    counts = np.array([np.bincount(labels[b], minlength=3) for b in s])
    assert (counts == 21).all()  # 63 / 3 classes exactly
    # the rare class is repeated, every item of it is used, unusable items never drawn
    drawn = np.concatenate(list(s))
    assert set(np.flatnonzero(labels == 2)) <= set(drawn) and not (labels[drawn] < 0).any()


def test_balanced_remainder_spread_and_statistics():
    labels = np.array([0] * 100 + [1] * 10)
    s = BalancedBatchSampler(labels, batch_size=11, batches_per_epoch=400, seed=1)
    counts = np.array([np.bincount(labels[b], minlength=2) for b in s])
    assert set(counts[:, 0].tolist()) <= {5, 6}
    assert abs(counts[:, 1].mean() - 5.5) < 0.1  # the odd item goes to either class evenly


def test_batches_depend_only_on_seed_and_epoch():
    labels = np.arange(40) % 4
    a = BalancedBatchSampler(labels, batch_size=8, seed=3)
    b = BalancedBatchSampler(labels, batch_size=8, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    assert len(a) == 5  # default: one pass


def test_random_batches_cover_the_data():
    s = RandomBatchSampler(np.zeros(50, int), batch_size=10, seed=0)
    batches = list(s)
    assert len(batches) == 5 and sorted(np.concatenate(batches)) == list(range(50))
    tiny = list(RandomBatchSampler(np.zeros(3, int), batch_size=10, batches_per_epoch=2))
    assert [len(b) for b in tiny] == [3, 3]


@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batch_size=2.5), dict(batches_per_epoch=0)])
def test_sampler_bad_arguments(kw):
    with pytest.raises(ParameterError):
        BalancedBatchSampler([0, 1], **kw)
    with pytest.raises(ParameterError, match="no usable item"):
        BalancedBatchSampler([-1, -1])


def test_exponential_schedule_endpoints_paper001():
    lrs = [learning_rate("exponential", e, epochs=120) for e in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1e-4)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    assert np.allclose(ratios, ratios[0]) and ratios[0] < 1  # geometric decay
    assert learning_rate("exponential", 500, epochs=120) == pytest.approx(1e-4)  # held at the end
    assert learning_rate("exponential", 0, epochs=1, lr=0.3) == 0.3


def test_step_schedule_paper002():
    lr0 = 8.4474e-4
    assert learning_rate("step", 9, epochs=180, lr=lr0) == pytest.approx(lr0)
    assert learning_rate("step", 10, epochs=180, lr=lr0) == pytest.approx(lr0 / 10)
    assert learning_rate("step", 179, epochs=180, lr=lr0) == pytest.approx(lr0 * 1e-17)
    assert learning_rate("constant", 50, epochs=100, lr=0.01) == 0.01


@pytest.mark.parametrize("kw", [dict(schedule="cosine"), dict(lr=0), dict(epochs=0), dict(step_size=0),
                                dict(schedule="exponential", lr_end=-1)])
def test_schedule_bad_arguments(kw):
    args = dict(schedule="step", epoch=1, epochs=10) | kw
    with pytest.raises(ParameterError):
        learning_rate(args.pop("schedule"), args.pop("epoch"), **args)


def test_grouped_batches_never_mix_groups_and_follow_group_sizes():
    from xtalscreen.train.samplers import (BalancedBatchSampler, GroupedBatchSampler,
                                           RandomBatchSampler, group_batches)

    labels = np.array([0, 1] * 30 + [-1])
    groups = ["a"] * 20 + ["b"] * 40 + ["a"]
    for cls in (RandomBatchSampler, BalancedBatchSampler):
        s = GroupedBatchSampler(cls, labels, groups, batch_size=4, batches_per_epoch=300, seed=3)
        batches = list(s)
        assert len(batches) == 300 and all(len(b) == 4 for b in batches)
        kinds = [{groups[i] for i in b} for b in batches]
        assert all(len(k) == 1 for k in kinds)
        assert 60 <= sum(k == {"a"} for k in kinds) <= 140  # ~1/3 of the batches (20 of 60 items)
        assert 60 not in {i for b in batches for i in b}    # unusable item never drawn
        s.set_epoch(1)
        assert list(s) != batches
        s.set_epoch(0)
        assert list(s) == batches                           # (seed, epoch) decide the order
    assert group_batches(["x", "y", "x"], 8) == [[0, 2], [1]]
    with pytest.raises(ParameterError, match="one group per item"):
        GroupedBatchSampler(RandomBatchSampler, labels, ["a"], batch_size=4)


def test_collate_gives_a_bad_item_its_batch_size():
    import torch

    from xtalscreen.train.samplers import collate

    x, y, i = collate([(torch.ones(1, 8, 8), 1, 0), (torch.zeros(1, 4, 4), -1, 1)])
    assert x.shape == (2, 1, 8, 8) and y.tolist() == [1, -1] and i.tolist() == [0, 1]
    assert float(x[1].abs().sum()) == 0.0
    with pytest.raises(ParameterError, match="different sizes"):
        collate([(torch.ones(1, 8, 8), 1, 0), (torch.ones(1, 4, 4), 0, 1)])
