"""Hand-made image features of the DiffraNet baselines (paper 002, section 4.1).

Each extractor is a function ``image -> 1-D float64 feature vector``:

- :func:`glcm_features` — Haralick features of grey-level co-occurrence matrices (contrast,
  dissimilarity, homogeneity, energy, correlation, ASM) for every distance × angle;
- :func:`lbp_features` — normalised histogram of uniform local binary patterns;
- :class:`SiftBoVW` — SIFT descriptors quantised on a k-means codebook (bag of visual words),
  which must be fitted on training images first;
- :func:`raw_features` — the image area-averaged down to a small square, flattened.

Grey levels: GLCM, LBP and SIFT need 8-bit images. ``uint8`` images (DiffraNet PNGs) are used as
they are; other images are mapped by :func:`to_uint8`: ``log1p`` of the non-negative values
(diffraction intensities span decades), then linear from 0 to the 99.9th percentile onto 0-255.
This is a feature-extraction step only; frames themselves are never rescaled.

:func:`make_extractor` builds any of them from a name and keyword parameters
(:data:`EXTRACTORS`), returning an object with ``fit(images)`` and ``transform(images)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xtalscreen.errors import ParameterError

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


def _image2d(image, name: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4) and img.dtype == np.uint8:
        img = img[..., :3].mean(axis=-1).astype(np.uint8)
    if img.ndim != 2 or img.size == 0:
        raise ParameterError(f"{name} must be a non-empty 2-D array, got shape {img.shape}")
    return img


def to_uint8(image, *, log: bool = True, percentile: float = 99.9) -> np.ndarray:
    """8-bit grey levels for texture features (see module doc); uint8 input is returned as is.

    NaN/inf and negative values count as 0. A constant image maps to all zeros.
    """
    img = _image2d(image)
    if img.dtype == np.uint8:
        return img
    a = np.asarray(img, dtype=np.float32)
    a = np.where(np.isfinite(a), a, 0.0)
    a = np.maximum(a, 0.0)
    if log:
        a = np.log1p(a)
    hi = float(np.percentile(a, percentile)) if a.size else 0.0
    if not hi > 0:
        hi = float(a.max()) if a.size else 0.0
    if not hi > 0:
        return np.zeros(a.shape, np.uint8)
    return np.clip(a * (255.0 / hi), 0, 255).astype(np.uint8)


def resize(image, size: int | None) -> np.ndarray:
    """Area-average ``image`` to ``size`` x ``size`` (no-op when None or already that size)."""
    img = _image2d(image)
    if size is None or img.shape == (size, size):
        return img
    import cv2

    src = img if img.dtype == np.uint8 else np.nan_to_num(img.astype(np.float32))
    return cv2.resize(src, (int(size), int(size)), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
def glcm_features(image, *, distances=(1,), angles=(0,), levels: int = 256,
                  props=GLCM_PROPS, symmetric: bool = True) -> np.ndarray:
    """Haralick features of the grey-level co-occurrence matrices.

    Parameters
    ----------
    image : ndarray (H, W)
        uint8 image, or any numeric image (mapped by :func:`to_uint8`).
    distances : sequence of int
        Pixel pair distances (pixels), e.g. paper 002's best ``[1, 2, 5, 8]``.
    angles : sequence of float
        Pair directions in **degrees** (0, 45, 90, 135).
    levels : int
        Grey levels (the image is binned down to this many when < 256).
    props : sequence of str
        Features among :data:`GLCM_PROPS`.

    Returns
    -------
    ndarray, shape (len(props) * len(distances) * len(angles),)

    Examples
    --------
    >>> img = (np.arange(64 * 64).reshape(64, 64) % 7).astype(np.uint8)
    >>> glcm_features(img, distances=[1, 2], angles=[0, 90]).shape
    (24,)
    """
    from skimage.feature import graycomatrix, graycoprops

    distances = [int(d) for d in distances]
    if not distances or min(distances) < 1:
        raise ParameterError(f"distances must be integers >= 1 pixel, got {distances!r}")
    angles = [float(a) for a in angles]
    if not angles:
        raise ParameterError("angles must name at least one direction (degrees)")
    if not (2 <= int(levels) <= 256):
        raise ParameterError(f"levels must be 2..256, got {levels!r}")
    bad = [p for p in props if p not in GLCM_PROPS]
    if bad:
        raise ParameterError(f"unknown GLCM properties {bad}; known: {GLCM_PROPS}")
    img = to_uint8(image)
    if levels < 256:
        img = (img.astype(np.uint16) * levels // 256).astype(np.uint8)
    m = graycomatrix(img, distances, np.deg2rad(angles), levels=int(levels), symmetric=symmetric,
                     normed=True)
    feats = [graycoprops(m, p).ravel() for p in props]
    return np.nan_to_num(np.concatenate(feats).astype(np.float64))


def lbp_features(image, *, points: int = 24, radius: float = 3, method: str = "uniform") -> np.ndarray:
    """Normalised histogram of local binary patterns.

    Parameters
    ----------
    points : int
        Neighbours on the circle (P).
    radius : float
        Circle radius in pixels (R > 0).
    method : {"uniform", "default", "ror", "nri_uniform"}
        skimage LBP variant; "uniform" gives P + 2 bins.

    Returns
    -------
    ndarray, shape (P + 2,) for "uniform"
    """
    from skimage.feature import local_binary_pattern

    if isinstance(points, bool) or int(points) != points or points < 1:
        raise ParameterError(f"points must be an integer >= 1, got {points!r}")
    if not float(radius) > 0:
        raise ParameterError(f"radius must be > 0 pixels, got {radius!r}")
    img = to_uint8(image)
    codes = local_binary_pattern(img, int(points), float(radius), method=method)
    n_bins = int(points) + 2 if method == "uniform" else int(codes.max()) + 1
    if method == "nri_uniform":
        n_bins = int(points) * (int(points) - 1) + 3
    elif method in ("default", "ror"):
        n_bins = 2 ** int(points) if points <= 16 else int(codes.max()) + 1
    hist = np.bincount(codes.astype(np.int64).ravel(), minlength=n_bins)[:n_bins].astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def raw_features(image, *, size: int = 32) -> np.ndarray:
    """The image area-averaged to ``size`` x ``size`` (grey levels of :func:`to_uint8`) / 255."""
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ParameterError(f"size must be an integer >= 1 pixel, got {size!r}")
    img = resize(to_uint8(image), int(size))
    return img.astype(np.float64).ravel() / 255.0


def sift_descriptors(image, *, max_keypoints: int = 500) -> np.ndarray:
    """SIFT descriptors (N, 128) of the 8-bit image (N may be 0)."""
    import cv2

    img = to_uint8(image)
    sift = cv2.SIFT_create(nfeatures=int(max_keypoints))
    _, desc = sift.detectAndCompute(img, None)
    return np.zeros((0, 128), np.float32) if desc is None else desc.astype(np.float32)


@dataclass
class SiftBoVW:
    """SIFT + bag of visual words: a k-means codebook of SIFT descriptors, histogram per image.

    Parameters
    ----------
    n_clusters : int
        Codebook size (paper 002 searches 10 ... 5000).
    max_keypoints : int
        SIFT keypoints kept per image.
    rng : int or Generator or None
        Seed of the k-means (same seed, same codebook).
    """

    n_clusters: int = 100
    max_keypoints: int = 500
    rng: object = None
    codebook_: object = field(default=None, repr=False)

    def fit(self, images) -> "SiftBoVW":
        from sklearn.cluster import MiniBatchKMeans

        if isinstance(self.n_clusters, bool) or int(self.n_clusters) < 1:
            raise ParameterError(f"n_clusters must be an integer >= 1, got {self.n_clusters!r}")
        descs = [sift_descriptors(im, max_keypoints=self.max_keypoints) for im in images]
        alld = np.concatenate(descs) if descs else np.zeros((0, 128), np.float32)
        k = int(self.n_clusters)
        if len(alld) < k:
            # too few descriptors (diffraction images have few corners): pad with zeros so that
            # the codebook exists; images without keypoints get an all-zero histogram
            alld = np.concatenate([alld, np.zeros((k - len(alld), 128), np.float32)])
        seed = int(np.random.default_rng(self.rng).integers(2 ** 31 - 1))
        self.codebook_ = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3,
                                         batch_size=max(1024, 3 * k)).fit(alld)
        return self

    def __call__(self, image) -> np.ndarray:
        if self.codebook_ is None:
            raise ParameterError("the SIFT codebook is not fitted: call fit(train_images) first")
        d = sift_descriptors(image, max_keypoints=self.max_keypoints)
        k = int(self.n_clusters)
        if len(d) == 0:
            return np.zeros(k)
        words = self.codebook_.predict(d)
        h = np.bincount(words, minlength=k).astype(np.float64)
        return h / h.sum()


# ---------------------------------------------------------------------------------------------
@dataclass
class Extractor:
    """A named extractor with its parameters: ``fit(images)`` then ``transform(images)``."""

    name: str
    params: dict = field(default_factory=dict)
    image_size: int | None = None  # images are resized to this square first (None: as they are)
    rng: object = None
    _sift: SiftBoVW | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.name not in EXTRACTORS:
            raise ParameterError(f"unknown feature extractor {self.name!r}; known: {sorted(EXTRACTORS)}")
        allowed = EXTRACTORS[self.name]
        bad = sorted(set(self.params) - set(allowed))
        if bad:
            raise ParameterError(f"unknown parameter(s) {bad} for extractor {self.name!r}; "
                                 f"known: {sorted(allowed)}")

    def _prep(self, image):
        return resize(image, self.image_size) if self.image_size else _image2d(image)

    def fit(self, images) -> "Extractor":
        if self.name == "sift":
            self._sift = SiftBoVW(rng=self.rng, **self.params).fit([self._prep(i) for i in images])
        return self

    def transform_one(self, image) -> np.ndarray:
        img = self._prep(image)
        if self.name == "glcm":
            return glcm_features(img, **self.params)
        if self.name == "lbp":
            return lbp_features(img, **self.params)
        if self.name == "raw":
            return raw_features(img, **self.params)
        if self._sift is None:
            raise ParameterError("the SIFT extractor must be fitted on training images first")
        return self._sift(img)

    def transform(self, images) -> np.ndarray:
        rows = [self.transform_one(im) for im in images]
        if not rows:
            return np.zeros((0, 0))
        return np.vstack(rows)

    def spec(self) -> dict:
        return {"name": self.name, "params": self.params, "image_size": self.image_size}


#: Extractor names and their parameters.
EXTRACTORS = {
    "glcm": ("distances", "angles", "levels", "props", "symmetric"),
    "lbp": ("points", "radius", "method"),
    "sift": ("n_clusters", "max_keypoints"),
    "raw": ("size",),
}


def make_extractor(name: str, *, image_size: int | None = None, rng=None, **params) -> Extractor:
    """Build an :class:`Extractor` (names: :data:`EXTRACTORS`); ``image_size`` resizes first."""
    return Extractor(name=name, params=params, image_size=image_size, rng=rng)
