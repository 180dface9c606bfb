"""Report numbers, plots, saliency and embeddings."""

import numpy as np
import pytest
import torch
from PIL import Image

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.evaluate import plots
from xtalscreen.evaluate.embedding import features, tsne_2d
from xtalscreen.evaluate.report import classification_metrics, markdown_report
from xtalscreen.evaluate.saliency import saliency_map, saliency_png, three_sigma_display

KE = ("hit", "maybe", "miss")


def test_classification_metrics_collapse_by_hand():
    # rows: true hit, true maybe, true miss, true miss
    probs = np.array([[0.7, 0.2, 0.1],
                      [0.3, 0.3, 0.4],   # 3-class: miss (wrong); collapsed: hit+maybe 0.6 (right)
                      [0.1, 0.1, 0.8],
                      [0.45, 0.1, 0.45]])  # argmax hit; collapsed 0.55 vs 0.45 -> positive (wrong)
    labels = np.array([0, 1, 2, 2])
    m = classification_metrics(probs, labels, KE, target="ke", groups=["a", "a", "b", "b"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["confusion"] == [[1, 0, 0], [0, 0, 1], [1, 0, 1]]
    b = m["binary"]
    assert b["positive"] == ["hit", "maybe"] and b["confusion"] == [[2, 0], [1, 1]]
    assert b["sensitivity"] == 1.0 and b["specificity"] == 0.5
    assert m["per_group"]["a"]["sensitivity"] == 1.0 and m["per_group"]["b"]["specificity"] == 0.5
    # P(hit+maybe) = .9 .6 .2 .55 ; positives .9 .6: AUC 1 (both above every negative? .55 < .6) -> 1
    assert m["roc"]["auc"] == pytest.approx(1.0)
    assert m["roc"]["threshold"] == pytest.approx(0.6) and m["roc"]["specificity"] == 1.0
    md = markdown_report(m)
    assert "| maybe | 0 | 0 | 1 | 0.00 % |" in md and "AUC 1.0000" in md


def test_classification_metrics_diffranet_binary_form():
    classes = ("blank", "no-crystal", "weak", "good", "strong")
    probs = np.eye(5)[[0, 1, 2, 3, 4, 2]]
    m = classification_metrics(probs, np.array([0, 1, 2, 3, 4, 1]), classes, target="diffranet")
    assert m["binary"]["negative"] == ["blank", "no-crystal"]
    assert m["binary"]["sensitivity"] == 1.0 and m["binary"]["specificity"] == pytest.approx(2 / 3)
    assert m["calibration"]["ece"] == pytest.approx(1 / 6)


def test_classification_metrics_bad_input():
    with pytest.raises(ParameterError):
        classification_metrics(np.ones((2, 2)), np.array([0, 1]), KE, target="ke")
    with pytest.raises(InputError, match="no readable frame"):
        classification_metrics(np.ones((0, 3)), np.array([], int), KE, target="ke")


def test_plots_write_pngs(tmp_path):
    p = plots.confusion_png(np.array([[3, 1], [0, 4]]), ["hit", "miss"], tmp_path / "cm.png")
    assert Image.open(p).size[0] > 100
    p = plots.roc_png([0, 0, 1], [0, 1, 1], tmp_path / "roc.png", auc=1.0, point=(0, 1, 0.5))
    img = np.asarray(Image.open(p))
    assert img.ndim == 3 and (img != 255).any()
    rel = {"edges": np.linspace(0, 1, 3), "accuracy": np.array([np.nan, 0.8]), "count": np.array([0, 5])}
    assert plots.reliability_png(rel, tmp_path / "rel.png", ece=0.1).is_file()
    assert plots.scatter_png(np.random.default_rng(0).random((9, 2)), np.arange(9) % 3, KE,
                             tmp_path / "sc.png").is_file()


class _Tiny(torch.nn.Module):
    """Logit 0 = mean of the left half, logit 1 = mean of the right half."""
    num_features = 2

    def forward_features(self, x):
        return torch.stack([x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))], 1)

    def forward_head(self, x, *, pre_logits=False):
        return x

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def parameters(self, recurse=True):
        yield torch.nn.Parameter(torch.zeros(1))


def test_saliency_is_where_the_model_looks():
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4] = 1.0  # predicted class 0
    sal = saliency_map(_Tiny(), x)
    assert sal.shape == (1, 8, 8)
    # the gradient of the loss reaches both halves equally in magnitude, never outside the image
    np.testing.assert_allclose(sal[0, :, :4], sal[0, 0, 0])
    assert sal.min() > 0
    with pytest.raises(ParameterError):
        saliency_map(_Tiny(), torch.zeros(8, 8))


def test_three_sigma_display():
    s = np.zeros((10, 10))
    s[0, 0] = 1000.0  # one outlier: clipped, the rest stays 0
    d = three_sigma_display(s)
    assert d.max() == 1.0 and d.min() == 0.0 and d.dtype == np.float32
    rng = np.random.default_rng(0)
    g = np.abs(rng.normal(size=(50, 50)))
    d = three_sigma_display(g)
    top = g.mean() + 3 * g.std()
    assert np.isclose(d[g < top], g[g < top] / top).all() and (d[g >= top] == 1).all()
    assert (three_sigma_display(np.zeros((3, 3))) == 0).all()


def test_saliency_png_and_embedding(tmp_path):
    rng = np.random.default_rng(0)
    assert saliency_png(rng.random((16, 16)), rng.random((16, 16)), tmp_path / "s.png", caption="x").is_file()
    x = rng.random((12, 1, 8, 8)).astype(np.float32)
    f = features(_Tiny(), x)
    assert f.shape == (12, 2)
    # inputs of two sizes (a small detector at full resolution): each size in its own batches
    mixed = [x[0], rng.random((1, 16, 16)).astype(np.float32), x[1]]
    fm = features(_Tiny(), mixed, batch_size=1)
    np.testing.assert_allclose(fm[[0, 2]], f[:2], rtol=1e-6)
    np.testing.assert_allclose(fm[1], [mixed[1][..., :4].mean(), mixed[1][..., 4:].mean()], rtol=1e-5)
    xy = tsne_2d(f, rng=0)
    assert xy.shape == (12, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy, tsne_2d(f, rng=0))
    with pytest.raises(ParameterError, match="at least 3"):
        tsne_2d(f[:2])
