"""2-D embeddings of a model's features coloured by class (paper 001 Fig. 11): the
pre-logits vector of :meth:`forward_head` for each input, mapped to 2-D by t-SNE."""

from __future__ import annotations

import numpy as np

from xtalscreen.errors import ParameterError

__all__ = ["features", "tsne_2d"]


def features(model, x, *, batch_size: int = 64) -> np.ndarray:
    """Pre-logits embedding vectors, shape (N, model.num_features), of inputs (N, C, H, W)."""
    import torch

    dev = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.asarray(x[i:i + batch_size]), dtype=torch.float32).to(dev)
            out.append(model.forward_head(model.forward_features(xb), pre_logits=True).flatten(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_features), np.float32)


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
