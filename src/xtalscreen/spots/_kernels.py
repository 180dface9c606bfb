"""Compiled (numba) inner loops of the spot finders.

Everything here works on one 2-D panel at a time: ``data`` float32 (H, W), ``bad`` bool
(H, W) with True for pixels to ignore. NaN and ±inf pixels are treated as bad. Positions are
continuous pixel coordinates in which pixel ``i`` spans ``[i, i + 1)`` (centre ``i + 0.5``).

The public wrappers (with validation and documentation) live in :mod:`.dispersion` and
:mod:`.peakfinder8`; :mod:`.reference` holds the plain numpy/scipy versions the tests compare
against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# fastmath without the no-NaN/no-inf assumptions: NaN pixels must still be detectable.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_INF = np.inf


@njit(cache=True, inline="always")
def _good(v, b):
    return (not b) and (v == v) and (v < _INF) and (v > -_INF)


# ---------------------------------------------------------------------------------------------
# gain estimate
@njit(cache=True, fastmath=_FM)
def estimate_gain(data, bad, half, step):
    """Median over sampled (2·half+1)² windows of variance/mean (windows with mean > 0).

    Returns (gain, n_windows); gain is NaN when no window qualifies.
    """
    h, w = data.shape
    size = 2 * half + 1
    n_max = ((h // step) + 1) * ((w // step) + 1)
    ratios = np.empty(n_max, dtype=np.float64)
    n = 0
    min_count = max(3, (size * size) // 2)
    for j0 in range(0, h - size + 1, step):
        for i0 in range(0, w - size + 1, step):
            m = 0
            s = 0.0
            s2 = 0.0
            for j in range(j0, j0 + size):
                for i in range(i0, i0 + size):
                    v = data[j, i]
                    if _good(v, bad[j, i]):
                        m += 1
                        s += v
                        s2 += v * v
            if m >= min_count and s > 0.0:
                mean = s / m
                var = (s2 - s * mean) / (m - 1)
                ratios[n] = var / mean
                n += 1
    if n == 0:
        return np.nan, 0
    return np.median(ratios[:n]), n


# ---------------------------------------------------------------------------------------------
# union-find helpers
@njit(cache=True, inline="always")
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True)
def _grow_i32(arr, n):
    out = np.empty(max(2 * arr.shape[0], n + 1), dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


# ---------------------------------------------------------------------------------------------
# dispersion threshold + labelling, one pass
@njit(cache=True, fastmath=_FM)
def _box_row(c, k, out):
    """out[i] = sum(c[i : i + 2k + 1]) for a zero-padded row ``c``.

    Half-sizes 1-4 are unrolled so that the loop vectorises; larger windows use a running sum.
    """
    n = out.shape[0]
    if k == 3:
        for i in range(n):
            out[i] = c[i] + c[i + 1] + c[i + 2] + c[i + 3] + c[i + 4] + c[i + 5] + c[i + 6]
    elif k == 1:
        for i in range(n):
            out[i] = c[i] + c[i + 1] + c[i + 2]
    elif k == 2:
        for i in range(n):
            out[i] = c[i] + c[i + 1] + c[i + 2] + c[i + 3] + c[i + 4]
    else:
        width = 2 * k + 1
        s = np.float32(0.0)
        for t in range(width - 1):
            s += c[t]
        for i in range(n):
            s += c[i + width - 1]
            out[i] = s
            s -= c[i]
    return out


@njit(cache=True, fastmath=_FM)
def _col_sum(ring, slots, k, out, kw):
    """out[kw + i] = sum over the window's ring rows of ring[slot, i] (zero slot for off-image)."""
    w = ring.shape[1]
    o = out[kw:kw + w]
    if k == 3:
        a0 = ring[slots[0]]
        a1 = ring[slots[1]]
        a2 = ring[slots[2]]
        a3 = ring[slots[3]]
        a4 = ring[slots[4]]
        a5 = ring[slots[5]]
        a6 = ring[slots[6]]
        for i in range(w):
            o[i] = a0[i] + a1[i] + a2[i] + a3[i] + a4[i] + a5[i] + a6[i]
    else:
        o[:] = 0.0
        for t in range(2 * k + 1):
            a = ring[slots[t]]
            for i in range(w):
                o[i] += a[i]


@njit(cache=True, fastmath=_FM)
def dispersion_strong(data, bad, kh, kw, gain, nsig_b, nsig_s, threshold, min_count, labels,
                      shift=0.0):
    """DIALS dispersion test at every pixel, labelling strong pixels on the fly (4-connected).

    Row by row: each image row is cleaned once into a ring buffer (value - ``shift``, its square
    and a weight; bad, NaN and inf pixels get weight 0), window sums of count, sum and sum of
    squares come from vectorised vertical then horizontal box sums (float32; ``shift``, a
    typical background level, keeps the variance free of cancellation), and the threshold test
    runs branch-free over the row. Strong pixels (rare) are then labelled with a union-find on
    their up/left neighbours.

    ``labels`` (int32, H x W, all zero on entry) receives provisional labels (1-based) at strong
    pixels. Returns ``(rows, cols, parent, n_strong, n_labels)``: coordinates of strong pixels
    in raster order and the union-find parent array of the provisional labels.
    """
    h, w = data.shape
    nwin = 2 * kh + 1
    nring = nwin + 1          # the last slot stays zero: rows outside the image
    zslot = nring
    rv = np.zeros((nring + 1, w), dtype=np.float32)
    rg = np.zeros((nring + 1, w), dtype=np.float32)
    ry = np.zeros((nring + 1, w), dtype=np.float32)
    wp = w + 2 * kw
    cm = np.zeros(wp, dtype=np.float32)
    cx = np.zeros(wp, dtype=np.float32)
    cy = np.zeros(wp, dtype=np.float32)
    bm = np.empty(w, dtype=np.float32)
    bx = np.empty(w, dtype=np.float32)
    by = np.empty(w, dtype=np.float32)
    flag = np.zeros(w + 8, dtype=np.uint8)
    slots = np.empty(nwin, dtype=np.int64)
    sh = np.float32(shift)
    g = np.float32(gain)
    nss2 = np.float32(nsig_s * nsig_s * gain)
    gnb2 = np.float32(2.0 * (gain * nsig_b) ** 2)
    fmin = np.float32(min_count)
    thr = np.float32(threshold)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    cap = 1024
    rows = np.empty(cap, dtype=np.int32)
    cols = np.empty(cap, dtype=np.int32)
    parent = np.empty(cap, dtype=np.int32)
    parent[0] = 0
    n_strong = 0
    n_lab = 0
    # rows without bad pixels: the window count is known, m = rows x columns in the window
    nbad = np.zeros(nring + 1, dtype=np.int64)
    span = np.empty(w, dtype=np.float32)
    for i in range(w):
        span[i] = min(i + kw, w - 1) - max(i - kw, 0) + 1
    for jj in range(-kh, h):
        jn = jj + kh
        if jn < h:
            sn = jn % nring
            nb = 0
            drow = data[jn]
            brow = bad[jn]
            rvs = rv[sn]
            rys = ry[sn]
            rgs = rg[sn]
            for i in range(w):
                v = drow[i]
                ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
                vv = (v - sh) if ok else zero
                rvs[i] = vv
                rys[i] = vv * vv
                rgs[i] = one if ok else zero
                nb += 0 if ok else 1
            nbad[sn] = nb
        j = jj
        if j < 0:
            continue
        any_bad = 0
        for t in range(nwin):
            r = j - kh + t
            slots[t] = r % nring if (r >= 0 and r < h) else zslot
            any_bad += nbad[slots[t]]
        if any_bad:
            _col_sum(rg, slots, kh, cm, kw)
            _box_row(cm, kw, bm)
        else:
            nrows = np.float32(min(j + kh, h - 1) - max(j - kh, 0) + 1)
            for i in range(w):
                bm[i] = nrows * span[i]
        _col_sum(rv, slots, kh, cx, kw)
        _col_sum(ry, slots, kh, cy, kw)
        _box_row(cx, kw, bx)
        _box_row(cy, kw, by)
        slot = j % nring
        rvc = rv[slot]
        rgc = rg[slot]
        for i in range(w):
            m = bm[i]
            xs = bx[i]                       # sum of shifted values
            x = xs + m * sh                  # sum of values
            ps = rvc[i]
            b = m * ps - xs                  # m p - x (shift-invariant)
            aa = m * by[i] - xs * xs - g * x * (m - one)
            ok = ((rgc[i] > zero) & (m >= fmin) & (x >= zero) & (ps + sh > thr)
                  & (b > zero) & (b * b > nss2 * x * m) & (aa > zero)
                  & (aa * aa > gnb2 * x * x * (m - one)))
            flag[i] = 1 if ok else 0
        # label the (few) strong pixels of this row
        for i in range(w):
            if flag[i] == 0:
                continue
            up = labels[j - 1, i] if j > 0 else 0
            left = labels[j, i - 1] if i > 0 else 0
            if up == 0 and left == 0:
                n_lab += 1
                if n_lab >= parent.shape[0]:
                    parent = _grow_i32(parent, n_lab)
                parent[n_lab] = n_lab
                lab = n_lab
            elif up == 0:
                lab = left
            elif left == 0:
                lab = up
            else:
                ru = _find(parent, up)
                rl = _find(parent, left)
                if ru < rl:
                    parent[rl] = ru
                    lab = ru
                else:
                    parent[ru] = rl
                    lab = rl
            labels[j, i] = lab
            if n_strong >= rows.shape[0]:
                rows = _grow_i32(rows, n_strong)
                cols = _grow_i32(cols, n_strong)
            rows[n_strong] = j
            cols[n_strong] = i
            n_strong += 1
    return rows, cols, parent, n_strong, n_lab


@njit(cache=True)
def merge_nearby(labels, rows, cols, parent, n_strong, reach):
    """Union the labels of strong pixels within Chebyshev distance ``reach`` of each other
    (reach 2 bridges a one-pixel gap: a masked pixel inside a spot, a diagonal streak)."""
    h, w = labels.shape
    for k in range(n_strong):
        j = rows[k]
        i = cols[k]
        a = labels[j, i]
        for dj in range(0, reach + 1):
            y = j + dj
            if y >= h:
                break
            for di in range(-reach, reach + 1):
                if dj == 0 and di <= 0:
                    continue
                x = i + di
                if x < 0 or x >= w:
                    continue
                b = labels[y, x]
                if b != 0 and b != a:
                    ra = _find(parent, a)
                    rb = _find(parent, b)
                    if ra < rb:
                        parent[rb] = ra
                    elif rb < ra:
                        parent[ra] = rb


@njit(cache=True, fastmath=_FM)
def component_stats(data, bad, labels, rows, cols, parent, n_strong, n_lab, margin, gain):
    """Per-component statistics of labelled strong pixels.

    Background of a component: mean and variance of the good pixels in its bounding box grown by
    ``margin`` pixels that are neither strong nor next to a strong pixel (8-neighbourhood).
    Returns arrays (one per component) n, fs, ss, intensity (background-subtracted sum),
    max_pixel, background (per pixel), snr.
    """
    h, w = data.shape
    comp = np.zeros(n_lab + 1, dtype=np.int32)
    nc = 0
    for lab in range(1, n_lab + 1):
        r = _find(parent, lab)
        if r == lab:
            nc += 1
            comp[lab] = nc
    for lab in range(1, n_lab + 1):
        comp[lab] = comp[_find(parent, lab)]
    npx = np.zeros(nc, dtype=np.int64)
    raw = np.zeros(nc, dtype=np.float64)
    mx = np.full(nc, -np.inf, dtype=np.float64)
    r0 = np.full(nc, h, dtype=np.int64)
    r1 = np.full(nc, -1, dtype=np.int64)
    c0 = np.full(nc, w, dtype=np.int64)
    c1 = np.full(nc, -1, dtype=np.int64)
    cid = np.empty(n_strong, dtype=np.int32)
    for k in range(n_strong):
        j = rows[k]
        i = cols[k]
        c = comp[labels[j, i]] - 1
        cid[k] = c
        v = data[j, i]
        npx[c] += 1
        raw[c] += v
        if v > mx[c]:
            mx[c] = v
        if j < r0[c]:
            r0[c] = j
        if j > r1[c]:
            r1[c] = j
        if i < c0[c]:
            c0[c] = i
        if i > c1[c]:
            c1[c] = i
    bg = np.zeros(nc, dtype=np.float64)
    bgvar = np.zeros(nc, dtype=np.float64)
    nbg = np.zeros(nc, dtype=np.int64)
    for c in range(nc):
        ja = max(r0[c] - margin, 0)
        jb = min(r1[c] + margin, h - 1)
        ia = max(c0[c] - margin, 0)
        ib = min(c1[c] + margin, w - 1)
        m = 0
        s = 0.0
        s2 = 0.0
        for j in range(ja, jb + 1):
            for i in range(ia, ib + 1):
                v = data[j, i]
                if not _good(v, bad[j, i]):
                    continue
                near = False  # skip strong pixels and their 8 neighbours (spot tails)
                for dj in range(-1, 2):
                    for di in range(-1, 2):
                        y = j + dj
                        x = i + di
                        if y >= 0 and y < h and x >= 0 and x < w and labels[y, x] != 0:
                            near = True
                if not near:
                    m += 1
                    s += v
                    s2 += v * v
        if m > 0:
            bg[c] = s / m
            if m > 1:
                bgvar[c] = max((s2 - s * bg[c]) / (m - 1), 0.0)
        nbg[c] = m
    net = raw - npx * bg
    sfs = np.zeros(nc, dtype=np.float64)
    sss = np.zeros(nc, dtype=np.float64)
    sw = np.zeros(nc, dtype=np.float64)
    for k in range(n_strong):
        c = cid[k]
        wgt = data[rows[k], cols[k]] - bg[c]
        if not (net[c] > 0.0):
            wgt = 1.0
        sfs[c] += wgt * (cols[k] + 0.5)
        sss[c] += wgt * (rows[k] + 0.5)
        sw[c] += wgt
    fs = sfs / sw
    ss = sss / sw
    snr = np.zeros(nc, dtype=np.float64)
    for c in range(nc):
        var = gain * max(net[c], 0.0) + npx[c] * bgvar[c] * (1.0 + npx[c] / max(nbg[c], 1))
        snr[c] = net[c] / np.sqrt(var) if var > 0.0 else (np.inf if net[c] > 0 else 0.0)
    return npx, fs, ss, net, mx, bg, snr


# ---------------------------------------------------------------------------------------------
# peakfinder8
@njit(cache=True, fastmath=_FM)
def radial_stats(data, bad, rbin, n_bins, iterations, nsig, adc_threshold):
    """Per-radius-bin mean, sigma and threshold with iterative rejection of outliers.

    Each iteration keeps the pixels of a bin inside (mean ± nsig·sigma) of the previous one
    (all pixels at the first); threshold = max(mean + nsig·sigma, adc_threshold); bins with no
    pixel get an infinite threshold.
    """
    hi = np.full(n_bins, np.inf)
    lo = np.full(n_bins, -np.inf)
    mean = np.zeros(n_bins)
    sig = np.zeros(n_bins)
    cnt = np.zeros(n_bins, dtype=np.int64)
    h, w = data.shape
    for _ in range(iterations):
        mean[:] = 0.0
        sig[:] = 0.0
        cnt[:] = 0
        for j in range(h):
            for i in range(w):
                v = data[j, i]
                r = rbin[j, i]
                if r >= 0 and _good(v, bad[j, i]) and v < hi[r] and v > lo[r]:
                    mean[r] += v
                    sig[r] += v * v
                    cnt[r] += 1
        for r in range(n_bins):
            if cnt[r] == 0:
                mean[r] = 0.0
                sig[r] = 0.0
                hi[r] = np.inf
                lo[r] = -np.inf
            else:
                mu = mean[r] / cnt[r]
                var = sig[r] / cnt[r] - mu * mu
                s = np.sqrt(var) if var > 0.0 else 0.0
                mean[r] = mu
                sig[r] = s
                hi[r] = max(mu + nsig * s, adc_threshold)
                lo[r] = mu - nsig * s
    return mean, sig, hi, cnt


@njit(cache=True, fastmath=_FM)
def peakfinder8_panel(data, bad, rbin, roffset, rthresh, min_pix, max_pix, local_bg_radius,
                      min_snr, max_peaks, min_sigma=0.0):
    """peakfinder8 peak search on one panel (8-connected flood fill above the radial threshold).

    ``min_sigma`` floors the local background sigma (detector units). Returns arrays n_pixels,
    fs, ss, intensity, max_pixel, background, sigma, snr.
    """
    h, w = data.shape
    inpeak = np.zeros((h, w), dtype=np.uint8)
    qf = np.empty(max(max_pix, 1) * 9 + 16, dtype=np.int32)
    qs = np.empty(max(max_pix, 1) * 9 + 16, dtype=np.int32)
    out_n = np.empty(max_peaks, dtype=np.int64)
    out_fs = np.empty(max_peaks)
    out_ss = np.empty(max_peaks)
    out_i = np.empty(max_peaks)
    out_max = np.empty(max_peaks)
    out_bg = np.empty(max_peaks)
    out_sig = np.empty(max_peaks)
    out_snr = np.empty(max_peaks)
    n_out = 0
    ring = 2 * local_bg_radius
    for pj in range(1, h - 1):
        for pi in range(1, w - 1):
            r = rbin[pj, pi]
            if r < 0:
                continue
            v0 = data[pj, pi]
            if not (v0 > rthresh[r]) or inpeak[pj, pi] != 0 or not _good(v0, bad[pj, pi]):
                continue
            # flood fill (8-connected) over pixels above their radial threshold
            npk = 0
            qf[0] = pi
            qs[0] = pj
            inpeak[pj, pi] = 1
            npk = 1
            head = 0
            overflow = False
            while head < npk:
                fi = qf[head]
                sj = qs[head]
                head += 1
                for dj in range(-1, 2):
                    for di in range(-1, 2):
                        jj = sj + dj
                        ii = fi + di
                        if jj < 0 or jj >= h or ii < 0 or ii >= w or inpeak[jj, ii] != 0:
                            continue
                        rr = rbin[jj, ii]
                        if rr < 0:
                            continue
                        v = data[jj, ii]
                        if v > rthresh[rr] and _good(v, bad[jj, ii]):
                            inpeak[jj, ii] = 1
                            if npk < qf.shape[0]:
                                qf[npk] = ii
                                qs[npk] = jj
                                npk += 1
                            else:
                                overflow = True
            if overflow or npk < min_pix or npk > max_pix:
                continue
            # centre of mass above the radial offset
            s = 0.0
            sf = 0.0
            sv = 0.0
            for k in range(npk):
                v = data[qs[k], qf[k]] - roffset[rbin[qs[k], qf[k]]]
                s += v
                sf += v * qf[k]
                sv += v * qs[k]
            if abs(s) < 1e-10:
                continue
            cf = int(np.rint(sf / abs(s)))
            cs = int(np.rint(sv / abs(s)))
            # local background in a disc of radius 2·local_bg_radius around it
            nb = 0
            bs = 0.0
            bs2 = 0.0
            bmax = 0.0
            for dj in range(-ring, ring):
                for di in range(-ring, ring):
                    jj = cs + dj
                    ii = cf + di
                    if jj < 0 or jj >= h or ii < 0 or ii >= w:
                        continue
                    if dj * dj + di * di > ring * ring:
                        continue
                    rr = rbin[jj, ii]
                    if rr < 0:
                        continue
                    v = data[jj, ii]
                    if inpeak[jj, ii] == 0 and _good(v, bad[jj, ii]) and v < rthresh[rr]:
                        nb += 1
                        bs += v
                        bs2 += v * v
                        if v > bmax:
                            bmax = v
            if nb > 0:
                loff = bs / nb
                lvar = bs2 / nb - loff * loff
                lsig = np.sqrt(lvar) if lvar >= 0.0 else 0.01
            else:
                loff = roffset[rbin[min(max(cs, 0), h - 1), min(max(cf, 0), w - 1)]]
                lsig = 0.01
            tot = 0.0
            raw = 0.0
            pmax = 0.0
            rmax = -np.inf
            sf = 0.0
            sv = 0.0
            for k in range(npk):
                vr = data[qs[k], qf[k]]
                v = vr - loff
                tot += v
                raw += vr
                sf += vr * (qf[k] + 0.5)
                sv += vr * (qs[k] + 0.5)
                if v > pmax:
                    pmax = v
                if vr > rmax:
                    rmax = vr
            if abs(raw) < 1e-10:
                continue
            lsig = max(lsig, min_sigma)
            snr = tot / lsig if abs(lsig) > 1e-10 else 0.0
            if snr < min_snr:
                continue
            if pmax < bmax - loff:
                continue
            fsc = sf / abs(raw)
            ssc = sv / abs(raw)
            if fsc < 0 or fsc > w or ssc < 0 or ssc > h:
                continue
            for k in range(npk):
                inpeak[qs[k], qf[k]] = 2
            if n_out < max_peaks:
                out_n[n_out] = npk
                out_fs[n_out] = fsc
                out_ss[n_out] = ssc
                out_i[n_out] = tot
                out_max[n_out] = rmax
                out_bg[n_out] = loff
                out_sig[n_out] = lsig
                out_snr[n_out] = snr
                n_out += 1
    return (out_n[:n_out], out_fs[:n_out], out_ss[:n_out], out_i[:n_out], out_max[:n_out],
            out_bg[:n_out], out_sig[:n_out], out_snr[:n_out])
