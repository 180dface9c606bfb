"""Straightforward numpy/scipy versions of both spot finders.

They implement the same definitions as the compiled finders (see :mod:`.dispersion` and
:mod:`.peakfinder8`) with whole-image array operations — ``scipy.ndimage.uniform_filter`` for the
local sums, ``scipy.ndimage.label`` for the connected components — and serve as the ground truth
of the tests and the baseline of ``benchmarks/bench_spots.py``. They work on one 2-D panel and
return per-spot columns (panel-local positions, pixel ``i`` spanning ``[i, i + 1)``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from xtalscreen.spots.dispersion import DispersionParams
from xtalscreen.spots.peakfinder8 import Peakfinder8Params


def _clean(data, bad):
    data = np.asarray(data, dtype=np.float64)
    good = ~np.asarray(bad, dtype=bool) & np.isfinite(data)
    return np.where(good, data, 0.0), good


def dispersion_reference(data: np.ndarray, bad: np.ndarray, params: DispersionParams | None = None,
                         *, gain: float = 1.0) -> dict[str, np.ndarray]:
    """Dispersion spot finding on one panel with numpy/scipy (float64 throughout).

    Parameters
    ----------
    data : ndarray (H, W)
        Pixel values (detector units).
    bad : ndarray of bool (H, W)
        True for pixels to ignore.
    params : DispersionParams, optional
        Finder settings (``params.gain`` is ignored; use ``gain``).
    gain : float
        Detector units per photon.

    Returns
    -------
    dict of ndarray
        ``n_pixels, fs, ss, intensity, max_pixel, background, snr`` per spot, plus ``strong``
        (the bool map of strong pixels).
    """
    p = params or DispersionParams()
    v, good = _clean(data, bad)
    k = p.kernel_size
    size = 2 * k + 1
    area = float(size * size)

    def box(a):
        return ndimage.uniform_filter(a, size=size, mode="constant", cval=0.0) * area

    m = np.rint(box(good.astype(np.float64)))
    x = box(v)
    y = box(v * v)
    with np.errstate(invalid="ignore"):
        disp = m * y - x * x > gain * x * (m - 1 + p.sigma_background * np.sqrt(2 * np.maximum(m - 1, 0)))
        value = m * v - x > p.sigma_strong * np.sqrt(np.maximum(gain * x * m, 0))
    strong = good & (m >= p.min_local) & (x >= 0) & (v > p.global_threshold) & disp & value
    labels, n = ndimage.label(strong, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    if p.merge_gap is not None and n > 1:
        labels = _merge_reference(labels, p.merge_gap + 1)
    out = {key: [] for key in ("n_pixels", "fs", "ss", "intensity", "max_pixel", "background", "snr")}
    h, w = v.shape
    near = ndimage.binary_dilation(strong, structure=np.ones((3, 3), bool))
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        sel = labels[sl] == lab
        npx = int(sel.sum())
        if npx < p.min_spot_size or npx > p.max_spot_size:
            continue
        big = (slice(max(sl[0].start - k, 0), min(sl[0].stop + k, h)),
               slice(max(sl[1].start - k, 0), min(sl[1].stop + k, w)))
        ring = ~near[big] & good[big]
        nb = int(ring.sum())
        bgv = v[big][ring]
        bg = float(bgv.mean()) if nb else 0.0
        var_bg = float(bgv.var(ddof=1)) if nb > 1 else 0.0
        vals = v[sl][sel]
        net = float(vals.sum() - npx * bg)
        jj, ii = np.nonzero(sel)
        jj = jj + sl[0].start + 0.5
        ii = ii + sl[1].start + 0.5
        wgt = vals - bg if net > 0 else np.ones_like(vals)
        var = gain * max(net, 0.0) + npx * var_bg * (1 + npx / max(nb, 1))
        snr = net / np.sqrt(var) if var > 0 else (np.inf if net > 0 else 0.0)
        if p.min_snr > 0 and not snr >= p.min_snr:
            continue
        out["n_pixels"].append(npx)
        out["fs"].append(float((wgt * ii).sum() / wgt.sum()))
        out["ss"].append(float((wgt * jj).sum() / wgt.sum()))
        out["intensity"].append(net)
        out["max_pixel"].append(float(vals.max()))
        out["background"].append(bg)
        out["snr"].append(snr)
    res = {key: np.asarray(val, dtype=np.int64 if key == "n_pixels" else np.float64)
           for key, val in out.items()}
    res["strong"] = strong
    return res


def _merge_reference(labels, reach):
    """Join components with pixels within Chebyshev distance ``reach`` (k-d tree + graph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    jj, ii = np.nonzero(labels)
    lab = labels[jj, ii]
    pairs = cKDTree(np.c_[jj, ii]).query_pairs(r=reach, p=np.inf, output_type="ndarray")
    n = int(labels.max()) + 1
    g = coo_matrix((np.ones(len(pairs)), (lab[pairs[:, 0]], lab[pairs[:, 1]])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    # relabel 1..K in raster order of first appearance, 0 stays background
    new = np.zeros_like(labels)
    new[jj, ii] = comp[lab] + 1
    return new


def radial_stats_reference(data, bad, rbin, n_bins, *, iterations=5, nsig=5.0, adc_threshold=0.0):
    """Ring mean, sigma and threshold with iterative outlier rejection (numpy ``bincount``)."""
    v, good = _clean(data, bad)
    use = good & (rbin >= 0)
    r = np.where(use, rbin, 0)
    hi = np.full(n_bins, np.inf)
    lo = np.full(n_bins, -np.inf)
    for _ in range(iterations):
        sel = use & (v < hi[r]) & (v > lo[r])
        cnt = np.bincount(r[sel], minlength=n_bins).astype(np.float64)
        s = np.bincount(r[sel], weights=v[sel], minlength=n_bins)
        s2 = np.bincount(r[sel], weights=v[sel] ** 2, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, s / cnt, 0.0)
            sig = np.sqrt(np.maximum(np.where(cnt > 0, s2 / cnt - mean ** 2, 0.0), 0.0))
        hi = np.where(cnt > 0, np.maximum(mean + nsig * sig, adc_threshold), np.inf)
        lo = np.where(cnt > 0, mean - nsig * sig, -np.inf)
    return mean, sig, hi


def peakfinder8_reference(data, bad, rbin, params: Peakfinder8Params | None = None
                          ) -> dict[str, np.ndarray]:
    """peakfinder8 on one panel with numpy/scipy (single panel: its own radial statistics)."""
    p = params or Peakfinder8Params()
    v, good = _clean(data, bad)
    rbin = np.asarray(rbin)
    n_bins = max(int(rbin.max()) + 1, 1) if rbin.size else 1
    auto = p.adc_threshold is None
    mean, _sig, thr = radial_stats_reference(v, ~good, rbin, n_bins, iterations=p.iterations,
                                             nsig=p.nsig, adc_threshold=0.0 if auto else p.adc_threshold)
    min_sigma = 0.0
    if auto:
        from xtalscreen.spots.dispersion import estimate_gain
        from xtalscreen.spots.peakfinder8 import poisson_floor

        gain = estimate_gain([(np.asarray(data, np.float32), ~good)])
        cnt = np.bincount(np.where((rbin >= 0) & good, rbin, 0)[(rbin >= 0) & good], minlength=n_bins)
        thr = np.maximum(thr, poisson_floor(mean, cnt, gain, p.nsig))
        min_sigma = gain
    rr = np.where(rbin >= 0, rbin, 0)
    above = good & (rbin >= 0) & (v > thr[rr])
    labels, n = ndimage.label(above, structure=np.ones((3, 3)))
    h, w = v.shape
    interior = np.zeros_like(above)
    interior[1:-1, 1:-1] = True
    ring = 2 * p.local_bg_radius
    dj, di = np.mgrid[-ring:ring, -ring:ring]
    disc = dj ** 2 + di ** 2 <= ring ** 2
    below = good & (rbin >= 0) & (v < thr[rr])
    found = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        sel = labels[sl] == lab
        if not (sel & interior[sl]).any():
            continue
        npx = int(sel.sum())
        if npx < p.min_pix or npx > p.max_pix:
            continue
        jj, ii = np.nonzero(sel)
        jj = jj + sl[0].start
        ii = ii + sl[1].start
        # first pixel in raster order: the scan order of the compiled finder
        first = int(np.lexsort((ii, jj))[0])
        vals = v[jj, ii]
        above_off = vals - mean[rr[jj, ii]]
        s = above_off.sum()
        if abs(s) < 1e-10:
            continue
        cf = int(np.rint((above_off * ii).sum() / abs(s)))
        cs = int(np.rint((above_off * jj).sum() / abs(s)))
        yy, xx = cs + dj, cf + di
        ok = disc & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yy, xx = yy[ok], xx[ok]
        bsel = below[yy, xx]
        bvals = v[yy, xx][bsel]
        if bvals.size:
            loff = bvals.mean()
            lvar = (bvals ** 2).mean() - loff ** 2
            lsig = np.sqrt(lvar) if lvar >= 0 else 0.01
            bmax = max(bvals.max(), 0.0)
        else:
            loff = mean[rr[min(max(cs, 0), h - 1), min(max(cf, 0), w - 1)]]
            lsig = 0.01
            bmax = 0.0
        lsig = max(lsig, min_sigma)
        net = vals - loff
        tot = net.sum()
        raw = vals.sum()
        if abs(raw) < 1e-10:
            continue
        snr = tot / lsig if abs(lsig) > 1e-10 else 0.0
        if snr < p.min_snr or max(net.max(), 0.0) < bmax - loff:
            continue
        found.append((jj[first], ii[first], npx, (vals * (ii + 0.5)).sum() / abs(raw),
                      (vals * (jj + 0.5)).sum() / abs(raw), tot, vals.max(), loff, snr))
    found.sort(key=lambda t: (t[0], t[1]))
    found = found[: p.max_peaks]
    cols = list(zip(*found)) if found else [[]] * 9
    return {"n_pixels": np.asarray(cols[2], dtype=np.int64), "fs": np.asarray(cols[3], float),
            "ss": np.asarray(cols[4], float), "intensity": np.asarray(cols[5], float),
            "max_pixel": np.asarray(cols[6], float), "background": np.asarray(cols[7], float),
            "snr": np.asarray(cols[8], float)}
