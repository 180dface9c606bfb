"""BatchNorm running statistics per input size (xtalscreen.models.sizebn)."""

import copy

import pytest
import torch
from torch import nn

from xtalscreen.models import create_model
from xtalscreen.models.sizebn import (batchnorm_sizes, has_split_batchnorm, recalibrate_batchnorm,
                                      restore_batchnorm_sizes, split_batchnorm)


def _batches(seed):
    """Interleaved batches of two sizes whose pixel statistics differ (like a max-binned 256 px
    input and a full-resolution 512 px one after contrast normalisation)."""
    g = torch.Generator().manual_seed(seed)
    small = [torch.randn(4, 1, 32, 32, generator=g) for _ in range(5)]
    large = [3.0 * torch.randn(4, 1, 64, 64, generator=g) + 2.0 for _ in range(5)]
    return small, large


@pytest.fixture
def trained():
    """A split spotcount model that saw both sizes in train mode, and two unsplit copies of
    the same initial weights that each saw one size only."""
    torch.manual_seed(0)
    base = create_model("spotcount", num_classes=3, img_size=32)
    split = split_batchnorm(copy.deepcopy(base))
    only_small, only_large = copy.deepcopy(base), copy.deepcopy(base)
    small, large = _batches(1)
    with torch.no_grad():
        for m in (split, only_small, only_large):
            m.train()
        for xs, xl in zip(small, large):
            split(xs)
            split(xl)
            only_small(xs)
            only_large(xl)
    for m in (split, only_small, only_large):
        m.eval()
    return split, only_small, only_large


def test_each_size_keeps_the_statistics_of_its_own_batches(trained):
    split, only_small, only_large = trained
    assert has_split_batchnorm(split) and not has_split_batchnorm(only_small)
    # each layer keys on its own input: the stem's BatchNorm sees half the network input
    sizes = batchnorm_sizes(split)
    assert sizes["features.1"] == ["16x16", "32x32"] and len(sizes) == 4
    for (name, bn), (_, bs), (_, bl) in zip(
            [(n, m) for n, m in split.named_modules() if isinstance(m, nn.BatchNorm2d)],
            [(n, m) for n, m in only_small.named_modules() if isinstance(m, nn.BatchNorm2d)],
            [(n, m) for n, m in only_large.named_modules() if isinstance(m, nn.BatchNorm2d)]):
        ks, kl = sizes[name]
        torch.testing.assert_close(getattr(bn, f"running_mean_s{ks}"), bs.running_mean)
        torch.testing.assert_close(getattr(bn, f"running_var_s{ks}"), bs.running_var)
        torch.testing.assert_close(getattr(bn, f"running_mean_s{kl}"), bl.running_mean)
    x_small, x_large = torch.randn(3, 1, 32, 32), 3.0 * torch.randn(3, 1, 64, 64) + 2.0
    with torch.no_grad():
        torch.testing.assert_close(split(x_small), only_small(x_small))
        torch.testing.assert_close(split(x_large), only_large(x_large))
        # forward_features alone selects the same statistics (each layer keys on its input)
        torch.testing.assert_close(split.forward_features(x_large), only_large.forward_features(x_large))
        # and the shared statistics of one unsplit model would not give either
        mixed = copy.deepcopy(only_small)
        mixed.train()
        for xs, xl in zip(*_batches(1)):
            mixed(xs)
            mixed(xl)
        mixed.eval()
        assert not torch.allclose(mixed(x_large), only_large(x_large), atol=1e-3)


def test_an_unseen_size_uses_the_nearest_trained_one(trained):
    split, _, only_large = trained
    x = torch.randn(2, 1, 56, 56)
    before = batchnorm_sizes(split)
    with torch.no_grad():
        torch.testing.assert_close(split(x), only_large(x))
    assert batchnorm_sizes(split) == before  # eval mode adds no size


def test_per_size_statistics_survive_a_checkpoint(trained, tmp_path):
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import load_model, save_checkpoint

    split, _, _ = trained
    save_checkpoint(tmp_path / "m.pt", split, preprocess=PreprocessConfig(crop=(32, 32), unbinned_up_to=2),
                    classes=("hit", "maybe", "miss"), target="ke")
    loaded, _, _ = load_model(tmp_path / "m.pt")
    assert has_split_batchnorm(loaded) and batchnorm_sizes(loaded) == batchnorm_sizes(split)
    with torch.no_grad():
        for x in (torch.randn(2, 1, 32, 32), torch.randn(2, 1, 64, 64)):
            torch.testing.assert_close(loaded(x), split(x))


def test_models_without_split_statistics_are_unchanged():
    m = create_model("spotcount", num_classes=3, img_size=32)
    keys = list(m.state_dict())
    assert restore_batchnorm_sizes(m, m.state_dict()) is False
    assert not has_split_batchnorm(m) and list(m.state_dict()) == keys
    plain = nn.Sequential(nn.Conv2d(1, 2, 3))
    assert split_batchnorm(plain) is plain and not has_split_batchnorm(plain)
    # splitting twice is the same as once (one pair of hooks per layer)
    s = split_batchnorm(split_batchnorm(create_model("spotcount", num_classes=3, img_size=32)))
    assert len(s.features[1]._forward_pre_hooks) == 1


def test_recalibration_averages_the_batch_statistics():
    """Precise BatchNorm: the running statistics become the mean of the batches' means and
    (unbiased) variances, whatever the momentum estimate was; mode and RNG are left alone."""
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(6, 2, 5, 5, generator=g) * (1 + k) + k for k in range(4)]
    bn = nn.BatchNorm2d(2)
    model = nn.Sequential(bn).eval()
    feed = [(b, None) for b in batches] + [torch.randn(1, 2, 5, 5)]  # a batch of one is skipped
    state = torch.get_rng_state()
    assert recalibrate_batchnorm(model, feed) == 4
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    dims = (0, 2, 3)
    torch.testing.assert_close(bn.running_mean, torch.stack([b.mean(dims) for b in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([b.var(dims) for b in batches]).mean(0))
    assert recalibrate_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1)), batches) == 0


def test_recalibration_of_a_split_model_is_per_size():
    model = split_batchnorm(nn.Sequential(nn.BatchNorm2d(1)))
    small = [torch.randn(4, 1, 8, 8) for _ in range(3)]
    large = [torch.randn(4, 1, 16, 16) * 2 + 5 for _ in range(3)]
    recalibrate_batchnorm(model, [x for pair in zip(small, large) for x in pair])
    bn = model[0]
    assert batchnorm_sizes(model) == {"0": ["8x8", "16x16"]}
    torch.testing.assert_close(bn.running_mean_s8x8, torch.stack([x.mean() for x in small]).mean().reshape(1))
    torch.testing.assert_close(bn.running_mean_s16x16, torch.stack([x.mean() for x in large]).mean().reshape(1))
    torch.testing.assert_close(bn.running_var_s16x16, torch.stack([x.var() for x in large]).mean().reshape(1))
