"""2-D embeddings of a model's features coloured by class (paper 001 Fig. 11): the
pre-logits vector of :meth:`forward_head` for each input, mapped to 2-D by t-SNE."""

from __future__ import annotations

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["features", "tsne_2d"]


def features(model, x, *, batch_size: int = 64) -> np.ndarray:
    """Pre-logits embedding vectors, shape (N, model.num_features), of inputs (N, C, H, W), or
    of a list of (C, H, W) inputs whose sizes may differ (models with a global head, fed small
    detectors at full resolution): each size is run in its own batches."""
    import torch

    dev = next(model.parameters()).device
    model.eval()
    items = list(x)
    out = np.zeros((len(items), model.num_features), np.float32)
    by_shape: dict = {}
    for i, a in enumerate(items):
        by_shape.setdefault(tuple(np.shape(a)), []).append(i)
    with torch.no_grad():
        for idx in by_shape.values():
            for k in range(0, len(idx), batch_size):
                sel = idx[k:k + batch_size]
                xb = torch.as_tensor(np.stack([np.asarray(items[i]) for i in sel]),
                                     dtype=torch.float32).to(dev)
                f = model.forward_head(model.forward_features(xb), pre_logits=True).flatten(1)
                out[sel] = f.cpu().numpy()
    return out


def tsne_2d(feats, *, perplexity: float = 30.0, rng=None) -> np.ndarray:
    """t-SNE of feature vectors (scikit-learn) to shape (N, 2); the perplexity is lowered to
    fit small sets (it must be < N)."""
    from sklearn.manifold import TSNE

    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 3:
        raise ParameterError(f"t-SNE needs at least 3 feature vectors (N, D), got shape {f.shape}")
    seed = int(np.random.default_rng(rng).integers(2**31 - 1))
    perp = float(min(perplexity, max(1.0, (len(f) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(f)
