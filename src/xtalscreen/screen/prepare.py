"""Frame -> network input, fast: assemble, bin and crop in one pass over the crop's pixels only.

:meth:`xtalscreen.preprocess.PreprocessConfig.apply` assembles the whole detector, bins the whole
image and then keeps a ``crop``-sized window. For screening only the window matters, so
:class:`FastPreprocess` precomputes, per detector layout and crop position, which raw pixels land
in which binned crop pixel, and sums just those (``np.bincount``), with the same rules:

- assembly: nearest assembled pixel, the last panel wins where two pixels meet (as
  :meth:`~xtalscreen.io.geometry.DetectorGeometry.assemble`);
- binning: masked and non-finite pixels left out, a block's sum scaled by ``bin**2 / n_valid``
  (``bin_reduce="sum"``) or averaged (``"mean"``), an empty block masked (as
  :func:`~xtalscreen.preprocess.bin_image`); binned image ``H // bin x W // bin``;
- crop: :func:`~xtalscreen.preprocess.crop_origin` around the beam, outside pixels masked;
- contrast and channels: :func:`~xtalscreen.preprocess.apply_contrast` as configured.

The result equals ``PreprocessConfig.apply`` (``augment=False``) to float32 rounding; the tests
check it on a multi-panel CSPAD frame and on monolithic frames. A frame without a beam centre is
cropped around the image centre and flagged (``no_beam_center``) instead of warning per frame;
the collector warns once per file.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from xtalscreen.preprocess import PreprocessConfig, apply_contrast, bin_image, crop_origin

__all__ = ["FastPreprocess", "Prepared"]


def _fingerprint(geom) -> tuple:
    """What decides the assembly of a geometry (a new object per file must hit the cache)."""
    return tuple((p.min_fs, p.max_fs, p.min_ss, p.max_ss, p.corner_x, p.corner_y, tuple(p.fs),
                  tuple(p.ss), p.res, p.slab) for p in geom.panels)


@dataclass
class Prepared:
    """One preprocessed frame.

    Attributes
    ----------
    x : ndarray of float32, shape (C, H, W)
        Network input.
    n_valid : int
        Unmasked pixels in the crop (0: nothing to look at).
    no_beam_center : bool
        The crop was centred on the image centre for lack of a beam centre.
    """

    x: np.ndarray
    n_valid: int
    no_beam_center: bool


class FastPreprocess:
    """Apply a :class:`PreprocessConfig` (no augmentation) touching only the crop's pixels.

    Parameters
    ----------
    config : PreprocessConfig
    cache_size : int
        Index maps kept (one per detector layout and crop position).
    """

    def __init__(self, config: PreprocessConfig, *, cache_size: int = 16) -> None:
        self.config = config
        self._maps: OrderedDict = OrderedDict()
        self._cache_size = int(cache_size)

    # ------------------------------------------------------------------ helpers
    def _center(self, frame, image_shape, geometry_center=None) -> tuple[tuple[float, float], bool]:
        h, w = image_shape
        if self.config.center == "image":
            return (w / 2.0, h / 2.0), False
        if frame.beam_center is not None:
            return frame.beam_center, False
        if geometry_center is not None:
            return geometry_center, False
        return (w / 2.0, h / 2.0), True

    def _cached(self, key, make):
        hit = self._maps.get(key)
        if hit is None:
            hit = self._maps[key] = make()
            if len(self._maps) > self._cache_size:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        return hit

    def _layout(self, geom, shape):
        """Assembly of one detector layout, binned: (src, binned row, binned col, (H, W), beam)."""
        b = self.config.bin

        def make():
            src, dst, (H, W), bc = geom._assembly_index(shape)
            # last write wins in assemble(): keep the source that assemble() keeps
            n = np.arange(len(dst))
            owner = np.empty(H * W, np.int64)
            owner[dst] = n
            keep = owner[dst] == n
            src, dst = src[keep], dst[keep]
            row, col = np.divmod(dst, W)
            hb, wb = H // b, W // b
            rb, cb = row // b, col // b
            inside = (rb < hb) & (cb < wb)
            return (src[inside].astype(np.intp), rb[inside].astype(np.int32),
                    cb[inside].astype(np.int32), (H, W), bc)

        return self._cached(("layout", _fingerprint(geom), shape, b), make)

    def _crop_map(self, layout_key, layout, origin):
        ch, cw = self.config.crop

        def make():
            src, rb, cb = layout[:3]
            r = rb - origin[0]
            c = cb - origin[1]
            sel = (r >= 0) & (r < ch) & (c >= 0) & (c < cw)
            return src[sel], (r[sel].astype(np.intp) * cw + c[sel])

        return self._cached(("crop", layout_key, origin, ch, cw), make)

    def _binned_crop_geometry(self, frame):
        cfg = self.config
        b = cfg.bin
        ch, cw = cfg.crop
        geom = frame.geometry
        shape = tuple(frame.data.shape)
        layout = self._layout(geom, shape)
        (H, W), bc = layout[3], layout[4]
        center, flag = self._center(frame, (H, W), bc)
        origin = crop_origin((center[0] / b, center[1] / b), cfg.crop)
        src, tgt = self._crop_map((_fingerprint(geom), shape, b), layout, origin)
        vals = frame.data.reshape(-1)[src]
        ok = np.isfinite(vals)
        if frame.mask is not None:
            ok &= ~frame.mask.reshape(-1)[src]
        t = tgt[ok]
        sums = np.bincount(t, weights=vals[ok], minlength=ch * cw)
        counts = np.bincount(t, minlength=ch * cw)
        empty = counts == 0
        scale = float(b * b) if cfg.bin_reduce == "sum" else 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(empty, 0.0, sums / np.maximum(counts, 1) * scale)
        return out.astype(np.float32).reshape(ch, cw), empty.reshape(ch, cw), flag

    def _binned_crop_2d(self, frame):
        cfg = self.config
        b = cfg.bin
        ch, cw = cfg.crop
        data = frame.data
        H, W = data.shape
        center, flag = self._center(frame, (H, W))
        r0, c0 = crop_origin((center[0] / b, center[1] / b), cfg.crop)
        hb, wb = H // b, W // b
        # binned window [r0, r0+ch) x [c0, c0+cw) clipped to the binned image
        ra, rb = max(r0, 0), min(r0 + ch, hb)
        ca, cb = max(c0, 0), min(c0 + cw, wb)
        out = np.zeros((ch, cw), np.float32)
        omask = np.ones((ch, cw), bool)
        if ra < rb and ca < cb:
            sub = data[ra * b:rb * b, ca * b:cb * b]
            msub = None if frame.mask is None else frame.mask[ra * b:rb * b, ca * b:cb * b]
            binned, bmask = bin_image(sub, b, mask=msub, reduce=cfg.bin_reduce)
            out[ra - r0:rb - r0, ca - c0:cb - c0] = binned
            omask[ra - r0:rb - r0, ca - c0:cb - c0] = bmask
        return out, omask, flag

    # ------------------------------------------------------------------ API
    def __call__(self, frame) -> Prepared:
        """Preprocess one :class:`~xtalscreen.io.frame.Frame` (see the module docstring)."""
        cfg = self.config
        if frame.geometry is not None:
            crop, cmask, flag = self._binned_crop_geometry(frame)
        elif frame.data.ndim == 2:
            crop, cmask, flag = self._binned_crop_2d(frame)
        else:  # multi-panel without geometry: the reference path (stacks panels)
            img, mask = frame.assembled()
            center, flag = self._center(frame, img.shape)
            x = cfg.apply_array(img, mask=mask, center=center)
            return Prepared(x, int(np.count_nonzero(x[0])), flag)
        n_valid = int(cmask.size - np.count_nonzero(cmask))
        if n_valid == 0:  # nothing to look at: a defined all-zero input, flagged by n_valid
            return Prepared(np.zeros(cfg.output_shape, np.float32), 0, flag)
        out = apply_contrast(crop, cfg.contrast, mask=cmask, window=cfg.lcn_window, eps=cfg.lcn_eps,
                             white_percentile=cfg.linear_percentile)
        out = np.asarray(out, dtype=np.float32)
        x = out[None] if cfg.channels == 1 else np.repeat(out[None], cfg.channels, axis=0)
        return Prepared(np.ascontiguousarray(x, dtype=np.float32), n_valid, flag)
