"""One test parametrised over the registry: every registered model is covered."""

import pytest
import torch

from xtalscreen.errors import ParameterError
from xtalscreen.models import XtalModel, create_model, list_models, register_model
from xtalscreen.preprocess import PreprocessConfig

#: Cheaper variants for the CPU smoke test; models not listed run with their defaults.
CHEAP = {
    "deepfreak": dict(filters=8),
    "inception_v3": dict(aux_logits=False, img_size=75),
    "ensemble": dict(members=[{"model_name": "spotcount", "model_kwargs": {"img_size": 64}},
                              {"model_name": "ke2018", "model_kwargs": {"img_size": 64, "num_classes": 3}}]),
}


def _make(name, **kw):
    torch.manual_seed(0)
    return create_model(name, num_classes=3, **{**CHEAP.get(name, {}), **kw})


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_no_nan_every_parameter_learns(name):
    model = _make(name)
    assert isinstance(model, XtalModel)
    c, h, w = model.default_cfg["input_size"]
    x = torch.randn(2, c, h, w)
    model.train()
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 2]))
    aux = getattr(model, "forward_with_aux", None)
    if aux is not None and getattr(model, "aux_logits", False):
        loss = loss + aux(x)[1].sum()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", list_models())
def test_features_then_head_equals_forward(name):
    model = _make(name).eval()
    c, h, w = model.default_cfg["input_size"]
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        feats = model.forward_features(x)
        emb = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    assert feats.ndim == 4 and emb.shape == (2, model.num_features)


@pytest.mark.parametrize("name", list_models())
def test_default_cfg_and_rebuild(name):
    model = _make(name)
    cfg = model.default_cfg
    assert {"input_size", "num_classes", "preprocess", "paper"} <= set(cfg)
    assert cfg["num_classes"] == 3 and len(cfg["input_size"]) == 3
    if "schema" in cfg["preprocess"]:  # X-ray models: settings a checkpoint can store
        pp = PreprocessConfig.from_dict(cfg["preprocess"])
        assert pp.output_shape == tuple(cfg["input_size"])
    again = create_model(model.model_name, **model.model_kwargs)
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    model.reset_classifier(7)
    heads = model.members if name == "ensemble" else [model]  # one classifier per member
    assert all(m.get_classifier().out_features == 7 for m in heads) and model.num_classes == 7


def test_unknown_model_lists_known_names():
    with pytest.raises(ParameterError) as err:
        create_model("resnet9000")
    for n in list_models():
        assert n in str(err.value)


def test_unknown_argument_is_named():
    with pytest.raises(ParameterError, match="img_sz"):
        create_model("ke2018", img_sz=100)


def test_wrong_channel_count_is_reported():
    model = create_model("ke2018", img_size=64)
    with pytest.raises(ParameterError, match=r"\(N, 1, H, W\)"):
        model(torch.zeros(1, 3, 64, 64))


def test_register_model_rejects_duplicates():
    def ke2018(**kw):  # same name as a registered model, different function
        raise AssertionError("never built")
    with pytest.raises(ParameterError, match="already registered"):
        register_model(ke2018)


def test_numpy_integer_arguments_accepted():
    import numpy as np
    m = create_model("ke2018", num_classes=np.int64(2), img_size=np.int64(64))
    assert m.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 2)
    with pytest.raises(ParameterError, match="num_classes"):
        create_model("ke2018", num_classes=0)
