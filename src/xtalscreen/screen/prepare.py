"""Frame -> network input, fast: assemble, bin and crop in one pass over the crop's pixels only.

:meth:`xtalscreen.preprocess.PreprocessConfig.apply` assembles the whole detector, bins the whole
image and then keeps a ``crop``-sized window. For screening only the window matters, so
:class:`FastPreprocess` precomputes, per detector layout and crop position, which raw pixels land
in which binned crop pixel, and reduces just those (one compiled pass over the pixels in
source order), with the same rules:

- assembly: nearest assembled pixel, the last panel wins where two pixels meet (as
  :meth:`~xtalscreen.io.geometry.DetectorGeometry.assemble`);
- binning and output size: :meth:`~xtalscreen.preprocess.PreprocessConfig.plan` (fixed, or
  ``"auto"``: fit the assembled detector into the crop; small detectors at full resolution
  with ``unbinned_up_to``); masked and non-finite pixels left out,
  a block's sum scaled by ``bin**2 / n_valid`` (``bin_reduce="sum"``), averaged (``"mean"``) or
  its maximum kept (``"max"``), an empty block masked (as
  :func:`~xtalscreen.preprocess.bin_image`); binned image ``H // bin x W // bin``;
- crop: :func:`~xtalscreen.preprocess.crop_origin` around the beam, outside pixels masked;
- with ``prefilter_sigma``: the frame is assembled (multi-panel) and only the crop's window,
  with room for the Gaussian on each side, is smoothed before binning;
- contrast and channels: :func:`~xtalscreen.preprocess.apply_contrast` as configured.

The result equals ``PreprocessConfig.apply`` (``augment=False``) to float32 rounding; the tests
check it on a multi-panel CSPAD frame and on monolithic frames. A frame without a beam centre is
cropped around the image centre and flagged (``no_beam_center``) instead of warning per frame;
the collector warns once per file.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numba
import numpy as np

from xtalscreen.preprocess import PreprocessConfig, apply_contrast, bin_image, crop_origin
from xtalscreen.preprocess.smooth import gaussian_prefilter, prefilter_radius

__all__ = ["FastPreprocess", "Prepared"]


def _fingerprint(geom) -> tuple:
    """What decides the assembly of a geometry (a new object per file must hit the cache)."""
    return tuple((p.min_fs, p.max_fs, p.min_ss, p.max_ss, p.corner_x, p.corner_y, tuple(p.fs),
                  tuple(p.ss), p.res, p.slab) for p in geom.panels)


@numba.njit(cache=True, nogil=True)
def _gather_reduce(data, mask, has_mask, starts, lens, tgt, n_out, scale):
    """Reduce runs of raw pixels into binned crop pixels: sums of the valid pixels, scaled by
    ``scale / n_valid`` (``bin_reduce`` sum: bin**2, mean: 1; max: :func:`_gather_max`).

    Run ``k`` is the ``lens[k]`` consecutive raw pixels from ``starts[k]`` (flat index), all of
    them in output pixel ``tgt[k]``. Non-finite and masked pixels are left out. Returns
    (values, empty) of length ``n_out``."""
    acc = np.zeros(n_out, np.float64)
    cnt = np.zeros(n_out, np.int32)
    for k in range(starts.shape[0]):
        t = tgt[k]
        a = acc[t]
        c = cnt[t]
        i0 = starts[k]
        for i in range(i0, i0 + lens[k]):
            v = data[i]
            if not np.isfinite(v) or (has_mask and mask[i]):
                continue
            a += v
            c += 1
        acc[t] = a
        cnt[t] = c
    out = np.zeros(n_out, np.float32)
    empty = np.empty(n_out, np.bool_)
    for t in range(n_out):
        empty[t] = cnt[t] == 0
        if cnt[t] > 0:
            out[t] = acc[t] / cnt[t] * scale
    return out, empty


@numba.njit(cache=True, nogil=True)
def _gather_max(data, mask, has_mask, starts, lens, tgt, n_out):
    """Like :func:`_gather_reduce`, the maxima of the valid pixels (float32 data), without
    per-pixel branches.

    The running maximum starts at -inf, which no valid pixel equals (an empty block keeps it);
    a pixel replaces it when larger (NaN never is), finite (+inf is refused) and not masked,
    as a select rather than a branch (a branch per pixel mispredicts on noise): ~0.1 ms faster
    per CSPAD frame than the branching loop it replaced with a mask and ~0.75 ms without
    (``tests/screen/test_prepare.py`` checks it against a numpy statement of the rule)."""
    acc = np.full(n_out, -np.inf, np.float32)
    inf = np.float32(np.inf)
    for k in range(starts.shape[0]):
        t = tgt[k]
        a = acc[t]
        i0 = starts[k]
        for i in range(i0, i0 + lens[k]):
            v = data[i]
            ok = (v > a) & (v < inf)
            if has_mask:
                ok = ok & (not mask[i])
            a = v if ok else a
        acc[t] = a
    out = np.zeros(n_out, np.float32)
    empty = np.empty(n_out, np.bool_)
    for t in range(n_out):
        empty[t] = acc[t] == -inf
        if not empty[t]:
            out[t] = acc[t]
    return out, empty


@numba.njit(cache=True, nogil=True)
def _same_bytes(a, b):
    """Whether two equally long uint8 arrays hold the same bytes (8 at a time)."""
    n8 = a.shape[0] // 8
    a8 = a[:n8 * 8].view(np.uint64)
    b8 = b[:n8 * 8].view(np.uint64)
    for i in range(n8):
        if a8[i] != b8[i]:
            return False
    for i in range(n8 * 8, a.shape[0]):
        if a[i] != b[i]:
            return False
    return True


def _unmasked_runs(starts, lens, tgt, mask):
    """The runs ``(starts, lens, tgt)`` without the pixels flagged in ``mask`` (flat bool):
    a run is split where a masked pixel lies, and a target left without pixels has no run."""
    total = int(lens.sum())
    first = np.repeat(np.cumsum(lens) - lens, lens)
    src = np.repeat(starts, lens) + (np.arange(total) - first)
    t = np.repeat(tgt, lens)
    keep = ~mask[src]
    return _runs(src[keep], t[keep])


def _runs(src: np.ndarray, tgt: np.ndarray):
    """(starts, lengths, targets) of the runs of consecutive ``src`` pixels with one target."""
    order = np.argsort(src, kind="stable")  # read the frame in memory order
    s, t = src[order], tgt[order]
    if len(s) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32)
    brk = np.ones(len(s), bool)
    brk[1:] = (s[1:] != s[:-1] + 1) | (t[1:] != t[:-1])
    first = np.flatnonzero(brk)
    lens = np.diff(np.append(first, len(s))).astype(np.int32)
    return s[first].astype(np.int64), lens, t[first].astype(np.int32)




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
        self._static: OrderedDict = OrderedDict()  # crop key -> static mask entry

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

    def _assembly(self, geom, shape):
        """Assembly of one detector layout: (src, row, col, (H, W), beam), unbinned."""

        def make():
            src, dst, (H, W), bc = geom._assembly_index(shape)
            # last write wins in assemble(): keep the source that assemble() keeps
            n = np.arange(len(dst))
            owner = np.empty(H * W, np.int64)
            owner[dst] = n
            keep = owner[dst] == n
            src, dst = src[keep], dst[keep]
            row, col = np.divmod(dst, W)
            return src, row, col, (H, W), bc

        return self._cached(("assembly", _fingerprint(geom), shape), make)

    def _layout(self, geom, shape):
        """The assembly binned: (src, binned row, binned col, (H, W), beam, bin factor)."""
        asm = self._assembly(geom, shape)
        b, size = self.config.plan(asm[3])

        def make():
            src, row, col, (H, W), bc = asm
            hb, wb = H // b, W // b
            rb, cb = row // b, col // b
            inside = (rb < hb) & (cb < wb)
            return (src[inside].astype(np.intp), rb[inside].astype(np.int32),
                    cb[inside].astype(np.int32), (H, W), bc, b, size)

        return self._cached(("layout", _fingerprint(geom), shape, b), make)

    def _crop_map(self, layout_key, layout, origin):
        ch, cw = layout[6]

        def make():
            src, rb, cb = layout[:3]
            r = rb - origin[0]
            c = cb - origin[1]
            sel = (r >= 0) & (r < ch) & (c >= 0) & (c < cw)
            return _runs(src[sel], r[sel].astype(np.intp) * cw + c[sel])

        return self._cached(("crop", layout_key, origin, ch, cw), make)

    def _static_runs(self, key, mask, starts, lens, tgt):
        """The crop's runs without the pixels of ``mask`` when that mask is this layout's
        static one, else None (the gather then reads the mask pixel by pixel).

        Most runs have a fixed mask (the file's pixel mask, the geometry's bad regions) and
        the data reveal no bad pixel of their own, so reading the mask for every pixel of
        every frame (1.5 ms of 3.7 per CSPAD frame) repeats the same work: a mask seen on two
        frames in a row becomes the layout's static mask, and its pixels are taken out of the
        runs once (:func:`_unmasked_runs`). Each frame's mask is compared with it byte for
        byte (0.1 ms), so a frame with a bad pixel of its own takes the exact masked path.
        """
        m8 = mask.view(np.uint8)
        entry = self._static.get(key)
        if entry is None:
            entry = self._static[key] = [None, None, None]  # static bytes, their runs, last bytes
            if len(self._static) > self._cache_size:
                self._static.popitem(last=False)
        self._static.move_to_end(key)
        if entry[0] is not None and _same_bytes(m8, entry[0]):
            return entry[1]
        if entry[2] is not None and _same_bytes(m8, entry[2]):  # two frames in a row: static
            entry[0], entry[1], entry[2] = entry[2], _unmasked_runs(starts, lens, tgt, mask), None
            return entry[1]
        entry[2] = m8.copy()
        return None

    def _binned_crop_geometry(self, frame):
        cfg = self.config
        geom = frame.geometry
        shape = tuple(frame.data.shape)
        layout = self._layout(geom, shape)
        (H, W), bc, b, (ch, cw) = layout[3], layout[4], layout[5], layout[6]
        center, flag = self._center(frame, (H, W), bc)
        origin = crop_origin((center[0] / b, center[1] / b), (ch, cw))
        key = (_fingerprint(geom), shape, b)
        starts, lens, tgt = self._crop_map(key, layout, origin)
        data = np.ascontiguousarray(frame.data).reshape(-1)
        has_mask = frame.mask is not None
        mask = np.ascontiguousarray(frame.mask).reshape(-1) if has_mask else np.zeros(1, bool)
        if has_mask:
            runs = self._static_runs((key, origin), mask, starts, lens, tgt)
            if runs is not None:  # this mask's pixels are already out of the runs
                starts, lens, tgt = runs
                has_mask = False
        scale = float(b * b) if cfg.bin_reduce == "sum" else 1.0
        if cfg.bin_reduce == "max":
            out, empty = _gather_max(data.astype(np.float32, copy=False), mask, has_mask, starts,
                                     lens, tgt, ch * cw)
        else:
            out, empty = _gather_reduce(data, mask, has_mask, starts, lens, tgt, ch * cw, scale)
        return out.reshape(ch, cw), empty.reshape(ch, cw), flag

    def _binned_crop_2d(self, frame):
        center, flag = self._center(frame, frame.data.shape)
        return self._binned_crop_array(frame.data, frame.mask, center) + (flag,)

    def _binned_crop_filtered(self, frame):
        """A frame through the matched filter (``prefilter_sigma``): assembled first when it has
        panels, then smoothed over the crop's window only (:meth:`_binned_crop_array`)."""
        if frame.data.ndim == 2 and frame.geometry is None:
            return self._binned_crop_2d(frame)
        img, mask = frame.assembled()
        gc = None if frame.geometry is None else frame.geometry.beam_center_px(tuple(frame.data.shape))
        center, flag = self._center(frame, img.shape, gc)
        return self._binned_crop_array(img, mask, center) + (flag,)

    def _binned_crop_array(self, data, mask, center):
        """(binned crop, its mask) of a 2-D image, binning only the crop's window; with
        ``prefilter_sigma`` the window is smoothed with room for the kernel on each side, which
        gives the values of the whole image smoothed (:mod:`xtalscreen.preprocess.smooth`)."""
        cfg = self.config
        H, W = data.shape
        b, (ch, cw) = cfg.plan((H, W))
        r0, c0 = crop_origin((center[0] / b, center[1] / b), (ch, cw))
        hb, wb = H // b, W // b
        # binned window [r0, r0+ch) x [c0, c0+cw) clipped to the binned image
        ra, rb = max(r0, 0), min(r0 + ch, hb)
        ca, cb = max(c0, 0), min(c0 + cw, wb)
        out = np.zeros((ch, cw), np.float32)
        omask = np.ones((ch, cw), bool)
        if ra < rb and ca < cb:
            y0, y1, x0, x1 = ra * b, rb * b, ca * b, cb * b
            if cfg.prefilter_sigma > 0:
                r = prefilter_radius(cfg.prefilter_sigma)
                Y0, Y1, X0, X1 = max(y0 - r, 0), min(y1 + r, H), max(x0 - r, 0), min(x1 + r, W)
                win = gaussian_prefilter(data[Y0:Y1, X0:X1], cfg.prefilter_sigma,
                                         mask=None if mask is None else mask[Y0:Y1, X0:X1])
                sub = win[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
            else:
                sub = data[y0:y1, x0:x1]
            msub = None if mask is None else mask[y0:y1, x0:x1]
            binned, bmask = bin_image(sub, b, mask=msub, reduce=cfg.bin_reduce)
            out[ra - r0:rb - r0, ca - c0:cb - c0] = binned
            omask[ra - r0:rb - r0, ca - c0:cb - c0] = bmask
        return out, omask

    # ------------------------------------------------------------------ API
    def __call__(self, frame) -> Prepared:
        """Preprocess one :class:`~xtalscreen.io.frame.Frame` (see the module docstring)."""
        cfg = self.config
        if cfg.prefilter_sigma > 0:
            crop, cmask, flag = self._binned_crop_filtered(frame)
        elif frame.geometry is not None:
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
            return Prepared(np.zeros((cfg.channels,) + crop.shape, np.float32), 0, flag)
        out = apply_contrast(crop, cfg.contrast, mask=cmask, window=cfg.lcn_window, eps=cfg.lcn_eps,
                             white_percentile=cfg.linear_percentile)
        out = np.asarray(out, dtype=np.float32)
        x = out[None] if cfg.channels == 1 else np.repeat(out[None], cfg.channels, axis=0)
        return Prepared(np.ascontiguousarray(x, dtype=np.float32), n_valid, flag)
