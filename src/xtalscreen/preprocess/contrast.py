"""Contrast transforms: local contrast normalisation (LCN) and the simple alternatives.

LCN follows Ke et al. (2018), J. Synchrotron Rad. 25, eqs 6-9 (paper 001):

1. global standardisation ``P <- (P - mu_I) / sigma_I`` over the valid pixels (eq. 6);
2. local standardisation ``P <- (P - mu_x) / sigma_x`` (eq. 7), with ``mu_x`` and ``sigma_x`` the
   mean and (population) standard deviation of the valid pixels in the ``window x window``
   square centred on ``x`` (eqs 8-9; the centre pixel is part of its own neighbourhood).

Borders are handled by reflect padding (``numpy.pad(mode="reflect")``: ``d c b | a b c d``, the
edge pixel is not repeated); masked pixels never enter any sum, and come out as 0.

The alternatives compared in the paper's Table 8 (the viewer's linear ramp) and the usual
compressions (square root, logarithm) are here too; all take and return ``(H, W)`` arrays.
"""

from __future__ import annotations

import numba
import numpy as np

from xtalscreen.errors import ParameterError, check_positive

__all__ = ["lcn", "linear_contrast", "sqrt_contrast", "log_contrast", "apply_contrast",
           "CONTRASTS"]

#: Names accepted by :func:`apply_contrast` (and ``PreprocessConfig.contrast``).
CONTRASTS = ("lcn", "linear", "sqrt", "log", "none")


# ---------------------------------------------------------------------------- validation
def _as_image(image, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ParameterError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _valid_from(image: np.ndarray, mask) -> np.ndarray:
    """Boolean array, True where a pixel may be used: not masked and finite."""
    valid = np.isfinite(image)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != image.shape:
            raise ParameterError(f"mask shape {m.shape} does not match image shape {image.shape}")
        valid &= ~m
    return valid


def _check_window(window, shape) -> int:
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise ParameterError(f"window must be an odd integer >= 1 (pixels), got {window!r}")
    w = int(window)
    if w < 1 or w % 2 == 0:
        raise ParameterError(f"window must be an odd integer >= 1 (pixels), got {window!r}")
    r = w // 2
    if r >= min(shape):
        raise ParameterError(
            f"window {w} is too large for an image of shape {tuple(shape)}: reflect padding "
            f"needs window // 2 < min(H, W); use window <= {2 * min(shape) - 1}")
    return w


# ---------------------------------------------------------------------------- LCN
@numba.njit(cache=True, nogil=True)
def _refl(i, n):
    # numpy "reflect" (OpenCV BORDER_REFLECT_101) for one step past each edge (|i| < n)
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


# fastmath without nnan/ninf: lets LLVM reassociate and vectorise the sums; the values are
# finite by construction (invalid pixels never enter), and the tests pin the result to 1e-5 of
# the literal reference.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _lcn_core(img, valid, r, eps, out):
    h, w = img.shape
    # --- eq. 6: global mean and standard deviation of the valid pixels (two passes)
    n = 0
    s = 0.0
    for i in range(h):
        for j in range(w):
            if valid[i, j]:
                n += 1
                s += img[i, j]
    if n == 0:
        out[:, :] = 0.0
        return
    mu = s / n
    ss = 0.0
    for i in range(h):
        for j in range(w):
            if valid[i, j]:
                d = img[i, j] - mu
                ss += d * d
    sig = np.sqrt(ss / n)
    if not sig > 0.0:
        sig = 1.0
    inv = 1.0 / sig
    # globally standardised values, 0 where invalid
    g = np.empty((h, w), np.float64)
    for i in range(h):
        for j in range(w):
            g[i, j] = (img[i, j] - mu) * inv if valid[i, j] else 0.0
    # --- eqs 7-9: separable box sums of valid, g, g^2; column sums slide down the rows
    c0 = np.zeros(w, np.float64)
    c1 = np.zeros(w, np.float64)
    c2 = np.zeros(w, np.float64)
    for di in range(-r, r + 1):
        ii = _refl(di, h)
        for j in range(w):
            x = g[ii, j]
            c0[j] += valid[ii, j]
            c1[j] += x
            c2[j] += x * x
    for i in range(h):
        if i > 0:
            ia = _refl(i + r, h)
            ib = _refl(i - r - 1, h)
            for j in range(w):
                xa = g[ia, j]
                xb = g[ib, j]
                c0[j] += np.float64(valid[ia, j]) - np.float64(valid[ib, j])
                c1[j] += xa - xb
                c2[j] += xa * xa - xb * xb
        # horizontal window over the column sums
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for dj in range(-r, r + 1):
            jj = _refl(dj, w)
            s0 += c0[jj]
            s1 += c1[jj]
            s2 += c2[jj]
        for j in range(w):
            if j > 0:
                ja = _refl(j + r, w)
                jb = _refl(j - r - 1, w)
                s0 += c0[ja] - c0[jb]
                s1 += c1[ja] - c1[jb]
                s2 += c2[ja] - c2[jb]
            if valid[i, j] and s0 > 0.5:
                m = s1 / s0
                var = s2 / s0 - m * m
                sd = np.sqrt(var) if var > 0.0 else 0.0
                if sd < eps:
                    sd = eps
                out[i, j] = (g[i, j] - m) / sd
            else:
                out[i, j] = 0.0


def lcn(image, *, window: int = 9, mask=None, eps: float = 1e-3) -> np.ndarray:
    """Local contrast normalisation of paper 001 (Ke et al. 2018, eqs 6-9).

    Parameters
    ----------
    image : array_like, shape (H, W)
        Pixel values in detector units (any real dtype). Non-finite pixels count as masked.
    window : int, keyword-only
        Edge of the square neighbourhood (pixels, odd). Default 9, the default kernel of the
        Torch ``SpatialContrastiveNormalization`` the paper's implementation used; the paper
        does not state its window.
    mask : array_like of bool, shape (H, W), optional
        True where a pixel is bad; such pixels are left out of the global and local statistics
        and are 0 in the output.
    eps : float, keyword-only
        Floor of the local standard deviation, in units of the global standard deviation
        (eq. 6 makes the image unit-variance first, so this is scale-free). Flat
        neighbourhoods give ``(P - mu_x) / eps`` instead of a division by zero.

    Returns
    -------
    ndarray of float32, shape (H, W)
        The normalised image (dimensionless).

    Notes
    -----
    Borders use reflect padding (numpy ``mode="reflect"``), the mask reflected with the data.
    Runs in one fused pass with sliding box sums (O(1) work per pixel whatever the window),
    single-threaded; release of the GIL lets callers run several images in threads.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).poisson(5.0, (64, 64)).astype(np.float32)
    >>> img[30, 30] = 500.0                     # a Bragg spot
    >>> out = lcn(img, window=9)
    >>> out.shape, out.dtype, bool(out[30, 30] > 5)
    ((64, 64), dtype('float32'), True)
    """
    arr = _as_image(image)
    w = _check_window(window, arr.shape)
    eps = check_positive("eps", eps)
    img = np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype.itemsize <= 4 else np.float64)
    valid = np.ascontiguousarray(_valid_from(img, mask))
    out = np.empty(arr.shape, dtype=np.float32)
    _lcn_core(img, valid, w // 2, eps, out)
    return out


def _lcn_reference(image, *, window: int = 9, mask=None, eps: float = 1e-3) -> np.ndarray:
    """Slow, literal LCN (explicit reflect padding and per-window statistics); for tests."""
    img = np.asarray(image, dtype=np.float64)
    valid = _valid_from(img, mask)
    r = window // 2
    if not valid.any():
        return np.zeros(img.shape, np.float32)
    mu = img[valid].mean()
    sig = img[valid].std()
    if not sig > 0:
        sig = 1.0
    g = np.where(valid, (img - mu) / sig, 0.0)
    gp = np.pad(g, r, mode="reflect")
    vp = np.pad(valid, r, mode="reflect")
    win_g = np.lib.stride_tricks.sliding_window_view(gp, (window, window))
    win_v = np.lib.stride_tricks.sliding_window_view(vp, (window, window))
    out = np.zeros(img.shape, np.float64)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            if not valid[i, j]:
                continue
            vals = win_g[i, j][win_v[i, j]]
            m = vals.mean()
            sd = max(np.sqrt(max((vals ** 2).mean() - m * m, 0.0)), eps)
            out[i, j] = (g[i, j] - m) / sd
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- simple contrasts
def linear_contrast(image, *, mask=None, brightness: float = 1.0,
                    white_percentile: float = 99.5) -> np.ndarray:
    """Linear ramp of an image viewer: ``clip(brightness * (P - black) / (white - black), 0, 1)``.

    This is the "simple linear contrast adjustment" of dials.image_viewer that paper 001
    (Table 8) compares with LCN: one straight line from a black level to a white level, clipped.
    Here ``black`` is the lowest valid value clipped at 0 and ``white`` the
    ``white_percentile``-th percentile of the valid pixels, so a frame's background is visible
    and its brightest spots saturate, the way a person sets the viewer.

    Parameters
    ----------
    image : array_like, shape (H, W)
    mask : array_like of bool, optional
        Masked (and non-finite) pixels are left out of the levels and set to 0.
    brightness : float, keyword-only
        Multiplies the slope (the viewer's brightness slider / 100). > 0.
    white_percentile : float, keyword-only
        Percentile (0-100] of the valid pixels mapped to 1 at ``brightness=1``.

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1].
    """
    img = np.asarray(_as_image(image), dtype=np.float32)
    brightness = check_positive("brightness", brightness)
    if not 0 < float(white_percentile) <= 100:
        raise ParameterError(f"white_percentile must be in (0, 100], got {white_percentile!r}")
    valid = _valid_from(img, mask)
    out = np.zeros(img.shape, np.float32)
    if not valid.any():
        return out
    vals = img[valid]
    black = max(float(vals.min()), 0.0)
    white = float(np.percentile(vals, white_percentile))
    span = white - black if white > black else 1.0
    np.clip((img - black) * (brightness / span), 0.0, 1.0, out=out, where=valid)
    out[~valid] = 0.0
    return out


def sqrt_contrast(image, *, mask=None) -> np.ndarray:
    """``sqrt(max(P, 0))``: compresses the dynamic range (Poisson noise becomes ~constant).

    Negative values (dark-subtracted ADU) are clipped to 0; masked/non-finite pixels are 0.
    Returns float32 of the same shape.
    """
    img = np.asarray(_as_image(image), dtype=np.float32)
    valid = _valid_from(img, mask)
    out = np.sqrt(np.clip(np.where(valid, img, 0.0), 0.0, None)).astype(np.float32)
    return out


def log_contrast(image, *, mask=None) -> np.ndarray:
    """``log(1 + max(P, 0))`` (natural log); masked/non-finite pixels are 0. Returns float32."""
    img = np.asarray(_as_image(image), dtype=np.float32)
    valid = _valid_from(img, mask)
    return np.log1p(np.clip(np.where(valid, img, 0.0), 0.0, None)).astype(np.float32)


def apply_contrast(image, contrast: str, *, mask=None, window: int = 9,
                   eps: float = 1e-3, white_percentile: float = 99.5) -> np.ndarray:
    """Apply one of :data:`CONTRASTS` by name (``"none"`` returns float32 with masked pixels 0).

    ``window``/``eps`` go to :func:`lcn`, ``white_percentile`` to :func:`linear_contrast`.
    """
    if contrast == "lcn":
        return lcn(image, window=window, mask=mask, eps=eps)
    if contrast == "linear":
        return linear_contrast(image, mask=mask, white_percentile=white_percentile)
    if contrast == "sqrt":
        return sqrt_contrast(image, mask=mask)
    if contrast == "log":
        return log_contrast(image, mask=mask)
    if contrast == "none":
        img = np.asarray(_as_image(image), dtype=np.float32)
        return np.where(_valid_from(img, mask), img, np.float32(0.0)).astype(np.float32)
    raise ParameterError(f"contrast must be one of {', '.join(CONTRASTS)}; got {contrast!r}")
