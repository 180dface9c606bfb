"""Report plots drawn with Pillow (no plotting library needed): confusion matrix, ROC curve,
reliability diagram and class-coloured scatter plots. Every function writes a PNG and
returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["confusion_png", "roc_png", "reliability_png", "scatter_png", "CLASS_COLOURS"]

#: Distinct colours for up to 10 classes (tab10).
CLASS_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _save(img: Image.Image, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def confusion_png(cm, classes, path, *, title: str = "confusion matrix") -> Path:
    """Heat map of a confusion matrix (true rows, predicted columns), shaded by row fraction,
    with the counts written in the cells."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    cell, left, top = 80, 130, 70
    w, h = left + k * cell + 20, top + k * cell + 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    f, fs = _font(14), _font(12)
    d.text((10, 8), title, fill="black", font=_font(16))
    d.text((left, top - 40), "predicted (columns)", fill="black", font=fs)
    d.text((8, top + k * cell + 10), "true (rows)", fill="black", font=fs)
    rows = cm.sum(1, keepdims=True).astype(float)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    for i in range(k):
        d.text((8, top + i * cell + cell // 2 - 7), str(classes[i])[:14], fill="black", font=fs)
        d.text((left + i * cell + 4, top - 20), str(classes[i])[:11], fill="black", font=fs)
        for j in range(k):
            v = frac[i, j]
            col = tuple(int(255 - v * (255 - c)) for c in (8, 48, 107))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=col, outline=(200, 200, 200))
            d.text((x0 + 8, y0 + cell // 2 - 8), str(int(cm[i, j])),
                   fill="white" if v > 0.5 else "black", font=f)
    return _save(img, path)


class _Axes:
    """A square plot area mapping data [x0, x1] x [y0, y1] to pixels."""

    def __init__(self, title: str, xlabel: str, ylabel: str, *, size: int = 420,
                 xlim=(0.0, 1.0), ylim=(0.0, 1.0)):
        self.m, self.size = 60, size
        self.img = Image.new("RGB", (size + 2 * self.m, size + 2 * self.m), "white")
        self.d = ImageDraw.Draw(self.img)
        self.xlim, self.ylim = xlim, ylim
        m, s, fs = self.m, size, _font(12)
        self.d.rectangle([m, m, m + s, m + s], outline="black")
        self.d.text((m, 15), title, fill="black", font=_font(15))
        self.d.text((m + s // 2 - 40, m + s + 30), xlabel, fill="black", font=fs)
        self.d.text((5, m - 20), ylabel, fill="black", font=fs)
        for t in np.linspace(0, 1, 6):
            x = m + t * s
            y = m + s - t * s
            self.d.line([x, m + s, x, m + s + 5], fill="black")
            self.d.text((x - 10, m + s + 8), f"{xlim[0] + t * (xlim[1] - xlim[0]):.2g}", fill="black", font=fs)
            self.d.line([m - 5, y, m, y], fill="black")
            self.d.text((m - 35, y - 7), f"{ylim[0] + t * (ylim[1] - ylim[0]):.2g}", fill="black", font=fs)

    def px(self, x, y):
        x = (np.asarray(x, float) - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        y = (np.asarray(y, float) - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return self.m + x * self.size, self.m + self.size - y * self.size

    def line(self, x, y, *, fill=(31, 119, 180), width: int = 2):
        px, py = self.px(x, y)
        ok = np.isfinite(px) & np.isfinite(py)
        pts = list(zip(px[ok].tolist(), py[ok].tolist()))
        if len(pts) >= 2:
            self.d.line(pts, fill=fill, width=width)

    def dot(self, x, y, *, r: int = 4, fill=(214, 39, 40)):
        px, py = self.px(x, y)
        self.d.ellipse([px - r, py - r, px + r, py + r], fill=fill)

    def text(self, x, y, s, *, fill="black"):
        px, py = self.px(x, y)
        self.d.text((px, py), s, fill=fill, font=_font(12))


def roc_png(fpr, tpr, path, *, auc: float | None = None, point=None,
            title: str = "ROC") -> Path:
    """ROC curve with the chance diagonal; ``point=(fpr, tpr, threshold)`` marks the chosen
    operating point."""
    ax = _Axes(title + (f"  (AUC {auc:.4f})" if auc is not None else ""), "false-positive rate",
               "true-positive rate")
    ax.line([0, 1], [0, 1], fill=(180, 180, 180), width=1)
    ax.line(fpr, tpr)
    if point is not None:
        ax.dot(point[0], point[1])
        ax.text(point[0] + 0.03, point[1] - 0.08, f"threshold {point[2]:.3g}")
    return _save(ax.img, path)


def reliability_png(rel: dict, path, *, ece: float | None = None,
                    title: str = "reliability diagram") -> Path:
    """Accuracy vs confidence per bin (bars) with the diagonal of perfect calibration."""
    ax = _Axes(title + (f"  (ECE {ece:.4f})" if ece is not None else ""), "confidence", "accuracy")
    edges = rel["edges"]
    for lo, hi, acc, n in zip(edges[:-1], edges[1:], rel["accuracy"], rel["count"]):
        if n and np.isfinite(acc):
            x0, y0 = ax.px(lo, acc)
            x1, y1 = ax.px(hi, 0)
            ax.d.rectangle([x0 + 1, y0, x1 - 1, y1], fill=(158, 202, 225), outline=(31, 119, 180))
    ax.line([0, 1], [0, 1], fill=(214, 39, 40), width=1)
    return _save(ax.img, path)


def scatter_png(xy, labels, classes, path, *, title: str = "embedding") -> Path:
    """2-D points coloured by class, with a legend (t-SNE embeddings)."""
    xy = np.asarray(xy, float)
    labels = np.asarray(labels)
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    ax = _Axes(title, "t-SNE 1", "t-SNE 2", xlim=(lo[0] - pad[0], hi[0] + pad[0]),
               ylim=(lo[1] - pad[1], hi[1] + pad[1]))
    for k, name in enumerate(classes):
        col = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        for x, y in xy[labels == k]:
            ax.dot(x, y, r=3, fill=col)
        ax.d.rectangle([ax.m + ax.size + 8, ax.m + 18 * k, ax.m + ax.size + 18, ax.m + 18 * k + 10], fill=col)
        ax.d.text((ax.m + ax.size + 22, ax.m + 18 * k - 2), str(name)[:10], fill="black", font=_font(11))
    return _save(ax.img, path)
