"""Each architecture against its paper's table."""

import pytest
import torch

from xtalscreen.errors import ParameterError
from xtalscreen.models import create_model
from xtalscreen.models.deepfreak import TOPOLOGIES


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------ ke2018 (paper 001 Fig. 2)
def test_ke2018_maps_and_288_features():
    m = create_model("ke2018").eval()
    sizes = []
    for stage in m.features:
        stage.register_forward_hook(lambda mod, i, o: sizes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        feats = m.forward_features(torch.zeros(1, 1, 720, 720))
    assert sizes == [(4, 180, 180), (8, 45, 45), (16, 12, 12), (32, 3, 3)]
    assert m.num_features == 288 and m.forward_head(feats, pre_logits=True).shape == (1, 288)
    assert m.classifier.in_features == 288 and m.num_classes == 3


def test_ke2018_other_sizes():
    m = create_model("ke2018", img_size=(256, 320))
    assert m(torch.zeros(2, 1, 256, 320)).shape == (2, 3)
    with pytest.raises(ParameterError, match="img_size"):
        m(torch.zeros(2, 1, 720, 720))
    with pytest.raises(ParameterError, match="img_size must be positive"):
        create_model("ke2018", img_size=0)
    assert create_model("ke2018", img_size=16).feature_shape == (32, 1, 1)


# ------------------------------------------------------------------ li2018 (paper 003 Table I)
def test_li2018_matches_table_one_layer_by_layer():
    m = create_model("li2018")
    f = m.features
    per_layer = [sum(p.numel() for p in mod.parameters())
                 for mod in (f[0], f[2], f[5], f[6], m.fc, m.bn, m.classifier)]
    assert per_layer == [200, 688, 788, 124, 9232, 32, 34]
    assert _nparams(m) == 11098   # Table I's sum (the paper's "< 10k" is a rule of thumb)
    shapes = []
    for i in (0, 4, 5, 8, 9):
        f[i].register_forward_hook(lambda mod, a, o: shapes.append(tuple(o.shape[1:])))
    m.eval()
    with torch.no_grad():
        m(torch.zeros(2, 1, 350, 350))
    assert shapes == [(4, 344, 344), (4, 68, 68), (4, 62, 62), (4, 12, 12), (4, 12, 12)]
    assert m.fc.in_features == 576


def test_li2018_row_batchnorm_normalises_rows():
    m = create_model("li2018").train()
    bn = m.features[2]
    x = torch.randn(4, 4, 344, 344) * torch.linspace(1, 50, 344)[None, None, :, None]
    y = bn(x)
    assert torch.allclose(y.std(dim=(0, 1, 3)), torch.ones(344), atol=1e-2)


def test_li2018_wrong_size():
    with pytest.raises(ParameterError, match="img_size"):
        create_model("li2018")(torch.zeros(1, 1, 300, 300))


# ------------------------------------------------------------------ deepfreak (paper 002)
def test_deepfreak_default_is_table_one():
    assert TOPOLOGIES["B"] == TOPOLOGIES[8]
    t = TOPOLOGIES["B"]
    assert (t["filters"], t["first_kernel"], t["first_stride"], t["pool1_size"], t["pool1_stride"],
            t["pool2_size"], t["pool2_stride"], t["block_strides"]) == (64, 7, 2, 3, 2, 7, 1, (1, 2, 3, 3))
    m = create_model("deepfreak")
    # torchvision ResNet-50 (25,557,032 params) with a 1-channel stem and a 5-class head on the
    # 2 x 2 x 2048 map that Table 1's strides leave from 512 x 512 inputs
    assert m.feature_shape == (2048, 8, 8) and m.num_features == 2048 * 2 * 2
    assert _nparams(m) == 25_557_032 - 64 * 7 * 7 * 2 - 2_049_000 + (8192 * 5 + 5)


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_deepfreak_topologies_shape_arithmetic(topology):
    m = create_model("deepfreak", topology=topology, filters=4, layers=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        feats = m.forward_features(torch.zeros(1, 1, 512, 512))
        assert tuple(feats.shape[1:]) == m.feature_shape
        assert m.forward_head(feats, pre_logits=True).shape[1] == m.num_features


def test_deepfreak_bad_settings():
    with pytest.raises(ParameterError, match="topology"):
        create_model("deepfreak", topology="Z")
    with pytest.raises(ParameterError, match="pool2_size"):
        create_model("deepfreak", img_size=128, filters=4)
    with pytest.raises(ParameterError, match="same"):
        create_model("deepfreak", block_strides=(1, 2), filters=4)
    with pytest.raises(ParameterError, match="filterz"):
        create_model("deepfreak", filterz=8)


# ------------------------------------------------------------------ c4_cnn (paper 000 Table 3)
def test_c4_cnn_table_three():
    m = create_model("c4_cnn")
    assert m.feature_shape == (256, 8, 8)
    dense = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(16384, 512), (512, 512), (512, 2)]
    convs = [mod.out_channels for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert convs == [32, 64, 128, 256]


# ------------------------------------------------------------------ inception_v3 (MARCO)
def test_inception_v3_structure():
    m = create_model("inception_v3")
    # torchvision's Inception3 has 27,161,264 parameters with 1000-class main and aux heads
    assert _nparams(m) == 27_161_264 - (2048 * 996 + 996) - (768 * 996 + 996)
    names = [n for n, _ in m.named_children()]
    assert names[names.index("Mixed_5b"):names.index("Mixed_7c") + 1] == [
        "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
        "Mixed_6e", "AuxLogits", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    assert m.default_cfg["input_size"] == (3, 299, 299) and m.num_classes == 4


def test_inception_v3_small_inputs_need_no_aux():
    with pytest.raises(ParameterError, match="aux_logits=False"):
        create_model("inception_v3", img_size=150)
    m = create_model("inception_v3", img_size=75, aux_logits=False, in_chans=1).eval()
    with torch.no_grad():
        assert m.forward_features(torch.zeros(1, 1, 75, 75)).shape == (1, 2048, 1, 1)
        logits, aux = m.forward_with_aux(torch.zeros(1, 1, 75, 75))
    assert logits.shape == (1, 4) and aux is None


@pytest.mark.slow
def test_inception_v3_full_size_with_aux():
    torch.manual_seed(0)
    m = create_model("inception_v3").train()
    x = torch.randn(2, 3, 299, 299)
    logits, aux = m.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 4)
    assert m.forward_features(x).shape == (2, 2048, 8, 8)
    (logits.sum() + aux.sum()).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.reset_classifier(2)
    assert m.AuxLogits.fc.out_features == 2


# ------------------------------------------------------------------ spotcount (xtalscreen's own)
def test_spotcount_takes_any_input_size_and_counts():
    torch.manual_seed(0)
    m = create_model("spotcount").eval()
    with torch.no_grad():
        for size in ((256, 256), (200, 320), (64, 64)):
            out = m(torch.randn(2, 1, *size))
            assert out.shape == (2, 3) and torch.isfinite(out).all()
        maps = m.forward_features(torch.randn(1, 1, 256, 256))
    assert maps.shape == (1, 32, 32, 32) and (maps >= 0).all()
    assert m.forward_head(maps, pre_logits=True).shape == (1, 64)


def test_spotcount_features_do_not_depend_on_where_the_spots_are():
    """The head sums and maxes over the whole map: a pattern moved (by a multiple of the
    network's stride, away from the borders) gives the same count features."""
    torch.manual_seed(0)
    m = create_model("spotcount").eval()
    x = torch.zeros(1, 1, 256, 256)
    y = torch.zeros(1, 1, 256, 256)
    for r, c in ((40, 40), (40, 96), (100, 60)):
        x[0, 0, r, c] = 10.0
        y[0, 0, r + 64, c + 72] = 10.0
    with torch.no_grad():
        fx = m.forward_head(m.forward_features(x), pre_logits=True)
        fy = m.forward_head(m.forward_features(y), pre_logits=True)
    torch.testing.assert_close(fx, fy, rtol=1e-5, atol=1e-5)


def test_spotcount_bad_arguments_are_named():
    with pytest.raises(ParameterError, match="widths"):
        create_model("spotcount", widths=(8,))
    with pytest.raises(ParameterError, match="detectors"):
        create_model("spotcount", detectors=0)
    m = create_model("spotcount")
    with pytest.raises(ParameterError, match="detector maps"):
        m.forward_head(torch.zeros(1, 5, 4, 4))


# --------------------------------------------------------------------------- fast 2x2 pool
@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 5), (6, 3)])
def test_maxpool2x2_equals_max_pool2d(ceil_mode, hw):
    from xtalscreen.models._base import MaxPool2x2

    torch.manual_seed(0)
    x = torch.randn(3, 4, *hw)
    x[0, 0, 0, 0] = float("nan")
    x[1, 1, -1, -1] = float("inf")
    x[2, 2, 0, -1] = -float("inf")
    x[2, 3] = 0.0  # ties, as after a ReLU
    pool = MaxPool2x2(ceil_mode=ceil_mode)
    if min(hw) < 2 and not ceil_mode:  # no output: the same error as max_pool2d
        with torch.inference_mode(), pytest.raises(RuntimeError, match="too small"):
            pool(x)
        return
    ref = torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=ceil_mode)
    with torch.inference_mode():
        fast = pool(x)
    with torch.no_grad():
        fast2 = pool(x)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(fast2, ref, equal_nan=True, rtol=0, atol=0)


def test_maxpool2x2_training_uses_max_pool2d_gradient():
    from xtalscreen.models._base import MaxPool2x2

    x = torch.zeros(1, 1, 4, 4, requires_grad=True)  # all ties
    MaxPool2x2(ceil_mode=True)(x).sum().backward()
    y = torch.zeros(1, 1, 4, 4, requires_grad=True)
    torch.nn.functional.max_pool2d(y, 2, 2, ceil_mode=True).sum().backward()
    assert torch.equal(x.grad, y.grad)  # one element of each tie gets the gradient
    assert x.grad.sum().item() == 4


@pytest.mark.parametrize("name,kw,shape", [("spotcount", {"img_size": 100}, (2, 1, 100, 100)),
                                           ("ke2018", {"img_size": 100}, (2, 1, 100, 100)),
                                           ("c4_cnn", {}, (2, 3, 128, 128))])
def test_models_same_output_with_fast_pool(name, kw, shape):
    torch.manual_seed(0)
    m = create_model(name, **kw).eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        fast = m(x)
    slow = m(x.clone().requires_grad_(True))  # autograd on: max_pool2d itself
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-6, atol=1e-6)
