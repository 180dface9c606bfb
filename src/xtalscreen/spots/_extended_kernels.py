"""Compiled (numba) inner loops of the extended dispersion finder (:mod:`.extended`).

Conventions as in :mod:`._kernels`: one 2-D panel at a time, ``data`` float32 (H, W), ``bad``
bool (H, W) with True for pixels to ignore, NaN and ±inf pixels treated as bad, pixel ``i``
spanning ``[i, i + 1)``. The candidate list returned by :func:`summed_candidates` has the same
layout as :func:`._kernels.dispersion_candidates` returns, so the gap merge and the spot
statistics of :mod:`._kernels` run on it unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from xtalscreen.spots._kernels import _FM, _find, _good, _grow_i32, _label, _label_buffers


@njit(cache=True)
def exclusion_map(h, w, rows, cols, n, radius):
    """uint8 (H, W) map: 2 at the ``n`` listed pixels, 1 within Chebyshev distance ``radius``
    of them, 0 elsewhere."""
    out = np.zeros((h, w), dtype=np.uint8)
    for k in range(n):
        j = rows[k]
        i = cols[k]
        for y in range(max(j - radius, 0), min(j + radius, h - 1) + 1):
            for x in range(max(i - radius, 0), min(i + radius, w - 1) + 1):
                if out[y, x] == 0:
                    out[y, x] = 1
        out[j, i] = 2
    return out


@njit(cache=True, fastmath=_FM, inline="always")
def _clean_row(data, bad, excl, has_bad, r, slot, bv, bf, fv, ff):
    """Clean row ``r`` once into ring slot ``slot``: background values and flags (good pixels
    with ``excl`` 0; others 0) and filter values and flags (good pixels with ``excl`` not 3)."""
    w = data.shape[1]
    drow = data[r]
    erow = excl[r]
    for i in range(w):
        v = drow[i]
        ok = (v == v) and abs(v) < np.inf
        if has_bad and bad[r, i]:
            ok = False
        x = np.float64(v) if ok else 0.0
        e = erow[i]
        bv[slot, i] = x if e == 0 else 0.0
        bf[slot, i] = 1.0 if (ok and e == 0) else 0.0
        fv[slot, i] = x if e != 3 else 0.0
        ff[slot, i] = 1.0 if (ok and e != 3) else 0.0


@njit(cache=True, fastmath=_FM, inline="always")
def _add_row(bv, bf, slot, sign, n, s, q):
    """Add (``sign`` +1) or remove (-1) a cleaned row (ring slot) to the column sums of count,
    sum and sum of squares of its background pixels."""
    w = n.shape[0]
    for i in range(w):
        x = bv[slot, i]
        n[i] += sign * bf[slot, i]
        s[i] += sign * x
        q[i] += sign * x * x


@njit(cache=True, inline="always")
def _prefix(col, out):
    w = col.shape[0]
    out[0] = 0.0
    for i in range(w):
        out[i + 1] = out[i] + col[i]


@njit(cache=True, inline="always")
def _box(p, i, k, w):
    return p[min(i + k, w - 1) + 1] - p[max(i - k, 0)]


@njit(cache=True, inline="always")
def _normal_z(s, sd, k3):
    """Normal-equivalent sigmas of an excess ``s`` with standard deviation ``sd`` and third
    cumulant ``k3``: the root ``z`` of the Cornish-Fisher quantile ``z + γ(z² - 1)/6 = s/sd``
    (skewness ``γ = k3/sd³``), so that a skewed (Poisson) sum is not called significant where
    only its long upper tail put it."""
    if not (sd > 0.0):
        return np.inf if s > 0.0 else 0.0
    x = s / sd
    a = k3 / (sd * sd * sd) / 6.0
    if a < 1e-9:
        return x
    d = 1.0 + 4.0 * a * (x + a)
    if d < 0.0:
        return -np.inf
    return (np.sqrt(d) - 1.0) / (2.0 * a)


@njit(cache=True, fastmath=_FM, error_model="numpy")
def _filter_row(h, j, fv, ff, wt, cx, c1, c2, c3, fx, f1, f2, f3):
    """Separable matched filter centred on the pixels of row ``j``: weights ``wt[ty]·wt[tx]``
    (n = len(wt) odd) over the good pixels of the n×n window, leaving out the strong pixels of
    hot-pixel-like first-pass spots (``excl`` 3: a pixel next to a hot pixel is judged by its
    own excess, not by the spike's). Writes per column the weighted sum of the values (``fx``)
    and the sums of the weights, squared and cubed weights over the pixels used (``f1``,
    ``f2``, ``f3``); ``cx``, ``c1``, ``c2``, ``c3`` are scratch rows of ``w + n - 1``. The
    rows come cleaned (:func:`_clean_row`) from the ring ``fv``, ``ff`` (row ``y`` in slot
    ``y % len(fv)``); ``h`` is the panel height."""
    w = fx.shape[0]
    nring = fv.shape[0]
    n = wt.shape[0]
    o = -(n // 2)
    pad = n // 2
    cx[:] = 0.0
    c1[:] = 0.0
    c2[:] = 0.0
    c3[:] = 0.0
    for t in range(n):
        y = j + o + t
        if y < 0 or y >= h:
            continue
        g = wt[t]
        g2 = g * g
        g3 = g2 * g
        slot = y % nring
        for i in range(w):
            f = ff[slot, i]
            cx[i + pad] += g * fv[slot, i]
            c1[i + pad] += g * f
            c2[i + pad] += g2 * f
            c3[i + pad] += g3 * f
    for i in range(w):
        a = 0.0
        b1 = 0.0
        b2 = 0.0
        b3 = 0.0
        base = i + pad + o
        for t in range(n):
            g = wt[t]
            a += g * cx[base + t]
            b1 += g * c1[base + t]
            b2 += g * g * c2[base + t]
            b3 += g * g * g * c3[base + t]
        fx[i] = a
        f1[i] = b1
        f2[i] = b2
        f3[i] = b3


@njit(cache=True, fastmath=_FM, error_model="numpy")
def _streak_z(data, bad, excl, has_bad, radius, j, i, mu, vp, nb, k3, s_long, s_wide):
    """Significance of the excess under a Gaussian filter elongated along the radial direction
    (the gradient of ``radius``, the distance from the beam in pixels) at pixel (j, i):
    σ ``s_long`` along it, ``s_wide`` across (pixels), over the good pixels of the window of
    half-size ``round(2·s_long)`` (``excl`` 3 left out); noise and skewness as in
    :func:`summed_candidates`."""
    h, w = data.shape
    ja = max(j - 1, 0)
    jb = min(j + 1, h - 1)
    ia = max(i - 1, 0)
    ib = min(i + 1, w - 1)
    gx = (radius[j, ib] - radius[j, ia]) / max(ib - ia, 1)
    gy = (radius[jb, i] - radius[ja, i]) / max(jb - ja, 1)
    nrm = np.sqrt(gx * gx + gy * gy)
    if not (nrm > 0.0):
        return -np.inf
    ux = gx / nrm
    uy = gy / nrm
    r = max(1, int(round(2.0 * s_long)))
    al = 0.5 / (s_long * s_long)
    aw = 0.5 / (s_wide * s_wide)
    t = 0.0
    w1 = 0.0
    w2 = 0.0
    w3 = 0.0
    for y in range(max(j - r, 0), min(j + r, h - 1) + 1):
        dy = y - j
        for x in range(max(i - r, 0), min(i + r, w - 1) + 1):
            v = data[y, x]
            if excl[y, x] == 3 or not _good(v, bad[y, x] if has_bad else False):
                continue
            dx = x - i
            u = dx * ux + dy * uy
            q = -dx * uy + dy * ux
            wt = np.exp(-(al * u * u + aw * q * q))
            t += wt * (np.float64(v) - mu)
            w1 += wt
            w2 += wt * wt
            w3 += wt * wt * wt
    sd = np.sqrt(vp * (w2 + w1 * w1 / nb))
    return _normal_z(t, sd, k3 * w3)


@njit(cache=True, fastmath=_FM, error_model="numpy")
def summed_candidates(data, bad, excl, has_bad, kb, kin, wt, col_gain, nsig, threshold,
                      min_bg, radius, s_long, s_wide, pre):
    """First-pass strong pixels plus pixels where a matched filter finds a significant excess,
    labelled 4-connected.

    ``excl`` is 2 at the first-pass strong pixels, 3 at those of hot-pixel-like spots (both
    always candidates, never tested; 3 is also left out of the filters), 1 around them
    (:func:`exclusion_map`) and 0 elsewhere. Every other good pixel ``(j, i)`` is tested: the
    background mean μ and variance σ² come from the good pixels with ``excl`` 0 in the
    (2·kb+1)² box around it minus the (2·kin+1)² box (``nb`` pixels, at least ``min_bg``); the
    noise per pixel is ``v = max(σ², g·μ')`` with ``g`` the column gain and
    ``μ' = max(μ, g/nb)`` (at least one photon in the background pixels). With the separable
    weights ``w = wt[dy]·wt[dx]`` over the good pixels of the window, the filtered excess
    ``T = Σ w (p - μ)`` has variance ``V = v·(Σ w² + (Σ w)² / nb)`` (pixel noise and the
    noise of the subtracted mean) and, for a Poisson background, third cumulant
    ``g²·μ'·Σ w³``; ``z`` is its normal-equivalent significance (:func:`_normal_z`). With
    ``s_long > 0``, where ``z > pre`` the filter elongated along the radial direction of
    ``radius`` (the distance from the beam, pixels; σ ``s_long`` along, ``s_wide`` across,
    :func:`_streak_z`) is tried too and the larger ``z`` kept. The pixel is a candidate when it
    is above μ and ``threshold`` and ``z`` exceeds ``nsig``.

    Each row is cleaned once into a ring of ``2·kb + 2`` rows (:func:`_clean_row`). Background
    sums are column sums over the row windows, updated as rows enter and leave (float64),
    boxed along the row through prefix sums; the filter is evaluated row by row from the ring
    (:func:`_filter_row`). Returns ``(rows, cols, lab, parent, row_start, n_cand, n_lab, z)``
    as :func:`xtalscreen.spots._kernels.dispersion_candidates` returns its list, plus ``z``
    (float32 per candidate; 0 for first-pass strong pixels).
    """
    h, w = data.shape
    r = wt.shape[0] // 2
    bn = np.zeros(w)
    bs = np.zeros(w)
    bq = np.zeros(w)
    in_ = np.zeros(w)
    is_ = np.zeros(w)
    iq = np.zeros(w)
    pbn = np.zeros(w + 1)
    pbs = np.zeros(w + 1)
    pbq = np.zeros(w + 1)
    pin = np.zeros(w + 1)
    pis = np.zeros(w + 1)
    piq = np.zeros(w + 1)
    cx = np.zeros(w + 2 * r)
    c1 = np.zeros(w + 2 * r)
    c2 = np.zeros(w + 2 * r)
    c3 = np.zeros(w + 2 * r)
    fx = np.zeros(w)
    f1 = np.zeros(w)
    f2 = np.zeros(w)
    f3 = np.zeros(w)
    cut = min(pre, nsig) if s_long > 0.0 else nsig   # below this z nothing can pass
    nring = 2 * kb + 2            # rows j - kb - 1 .. j + kb
    bv = np.zeros((nring, w))
    bf = np.zeros((nring, w))
    fv = np.zeros((nring, w))
    ff = np.zeros((nring, w))
    for y in range(0, min(kb, h)):
        _clean_row(data, bad, excl, has_bad, y, y % nring, bv, bf, fv, ff)
        _add_row(bv, bf, y % nring, 1.0, bn, bs, bq)
    for y in range(0, min(kin, h)):
        _add_row(bv, bf, y % nring, 1.0, in_, is_, iq)
    lab_a = np.zeros(w, dtype=np.int32)   # labels of the current row
    lab_b = np.zeros(w, dtype=np.int32)   # labels of the row above
    zs = np.empty(1024, dtype=np.float32)
    rows, cols, lab, parent = _label_buffers(1024)
    row_start = np.zeros(h + 1, dtype=np.int64)
    n_cand = 0
    n_lab = 0
    for j in range(h):
        if j + kb < h:
            _clean_row(data, bad, excl, has_bad, j + kb, (j + kb) % nring, bv, bf, fv, ff)
            _add_row(bv, bf, (j + kb) % nring, 1.0, bn, bs, bq)
        if j - kb - 1 >= 0:
            _add_row(bv, bf, (j - kb - 1) % nring, -1.0, bn, bs, bq)
        if j + kin < h:
            _add_row(bv, bf, (j + kin) % nring, 1.0, in_, is_, iq)
        if j - kin - 1 >= 0:
            _add_row(bv, bf, (j - kin - 1) % nring, -1.0, in_, is_, iq)
        _prefix(bn, pbn)
        _prefix(bs, pbs)
        _prefix(bq, pbq)
        _prefix(in_, pin)
        _prefix(is_, pis)
        _prefix(iq, piq)
        _filter_row(h, j, fv, ff, wt, cx, c1, c2, c3, fx, f1, f2, f3)
        row_start[j] = n_cand
        tmp = lab_b
        lab_b = lab_a
        lab_a = tmp
        lab_a[:] = 0
        drow = data[j]
        erow = excl[j]
        for i in range(w):
            v = drow[i]
            if not _good(v, bad[j, i] if has_bad else False):
                continue
            z = 0.0
            if erow[i] < 2:
                nb = _box(pbn, i, kb, w) - _box(pin, i, kin, w)
                if nb < min_bg:
                    continue
                sb = _box(pbs, i, kb, w) - _box(pis, i, kin, w)
                mu = sb / nb
                if not (v > mu) or not (v > threshold):
                    continue
                qb = _box(pbq, i, kb, w) - _box(piq, i, kin, w)
                var = (qb - sb * mu) / (nb - 1.0)
                g = col_gain[i]
                # at least one photon's worth in the annulus: an all-zero background
                # (photon counting, ~0.01 photon/px) must not make the noise zero
                mu_p = max(mu, g / nb)
                vp = max(var, g * mu_p)
                k3 = g * g * mu_p
                ex = fx[i] - mu * f1[i]
                v2 = vp * (f2[i] + f1[i] * f1[i] / nb)
                # z <= T/sd once T/sd >= 1 (positive skew): most pixels stop here, without
                # the square roots
                if cut >= 1.0 and (ex <= 0.0 or ex * ex <= cut * cut * v2):
                    continue
                z = _normal_z(ex, np.sqrt(v2), k3 * f3[i])
                if s_long > 0.0 and z > pre:
                    z = max(z, _streak_z(data, bad, excl, has_bad, radius, j, i, mu, vp, nb,
                                         k3, s_long, s_wide))
                if not (z > nsig):
                    continue
            lb, n_lab, parent = _label(parent, n_lab, lab_b[i] if j > 0 else 0, lab_a[i - 1] if i > 0 else 0)
            lab_a[i] = lb
            if n_cand >= rows.shape[0]:
                rows = _grow_i32(rows, n_cand)
                cols = _grow_i32(cols, n_cand)
                lab = _grow_i32(lab, n_cand)
                zs = _grow_i32(zs, n_cand)   # grows any dtype
            zs[n_cand] = z
            rows[n_cand] = j
            cols[n_cand] = i
            lab[n_cand] = lb
            n_cand += 1
    row_start[h] = n_cand
    return rows, cols, lab, parent, row_start, n_cand, n_lab, zs


@njit(cache=True)
def component_peaks(lab, parent, n_cand, n_lab, zs, excl, rows, cols):
    """Per spot (numbered as :func:`._kernels.component_stats_sparse` numbers them: roots in
    increasing label order): the largest matched-filter significance ``z`` of its candidates
    and whether it holds a first-pass strong pixel (``excl`` 2 or 3)."""
    comp = np.zeros(n_lab + 1, dtype=np.int32)
    nc = 0
    for lb in range(1, n_lab + 1):
        if _find(parent, lb) == lb:
            nc += 1
            comp[lb] = nc
    zmax = np.zeros(nc, dtype=np.float64)
    strong = np.zeros(nc, dtype=np.bool_)
    for k in range(n_cand):
        c = comp[_find(parent, lab[k])] - 1
        zmax[c] = max(zmax[c], zs[k])
        if excl[rows[k], cols[k]] >= 2:
            strong[c] = True
    return zmax, strong
