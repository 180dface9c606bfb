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
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# fastmath without the no-NaN/no-inf assumptions: NaN pixels must still be detectable.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_INF = np.inf


@njit(cache=True, inline="always")
def _good(v, b):
    return (not b) and (v == v) and (v < _INF) and (v > -_INF)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch the cache line holding ``arr[idx]`` into L2 (``idx`` an integer
    for a 1-D array, a tuple of integers for an N-D one; C or any layout).

    Only a hint (x86 ``prefetcht1``): no fault, no effect on any result, the index is not
    checked. The compiled kernels use it to pull image rows and spot boxes in from memory
    ahead of use (a frame larger than the last-level cache otherwise stalls on every line).
    """
    if not isinstance(arr, types.Array):
        return None
    if isinstance(idx, types.Integer) and arr.ndim == 1:
        n_idx = 1
    elif (isinstance(idx, types.UniTuple) and isinstance(idx.dtype, types.Integer)
          and idx.count == arr.ndim):
        n_idx = arr.ndim
    else:
        return None

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        ity = sig.args[1]
        if isinstance(ity, types.Integer):
            inds = [context.cast(builder, args[1], ity, types.intp)]
        else:
            inds = [context.cast(builder, v, ity.dtype, types.intp)
                    for v in cgutils.unpack_tuple(builder, args[1], n_idx)]
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, inds, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read access, locality 2 (L2 and outward), data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


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


@njit(cache=True, fastmath=_FM)
def column_gain(data, bad, strip, fallback, min_strips, max_strips=32, below=0.0):
    """Gain of every column: median over vertical strips of ``strip`` pixels (evenly spaced, at
    most about ``max_strips`` of them) of the strip's variance / mean (strips with mean > 0 and
    at least ``strip - 1`` good pixels), corrected for the median of a chi-square
    (``strip - 1`` degrees of freedom) lying below its mean. Columns with fewer than
    ``min_strips`` such strips get ``fallback``.

    Strips are accumulated row by row (contiguous reads), then one median per column.
    ``below > 0``: a column whose corrected ratios are below ``below`` in more than half of its
    strips (so its median is too) gets ``fallback`` without computing the median.
    """
    h, w = data.shape
    ns_all = h // strip
    every = max(1, ns_all // max_strips)
    ns = (ns_all + every - 1) // every
    ratios = np.empty((w, max(ns, 1)), dtype=np.float64)
    cnt = np.zeros(w, dtype=np.int64)
    m = np.empty(w, dtype=np.float64)
    s = np.empty(w, dtype=np.float64)
    s2 = np.empty(w, dtype=np.float64)
    k = strip - 1.0
    corr = 1.0 / (1.0 - 2.0 / (9.0 * k)) ** 3
    for t in range(0, ns_all, every):
        m[:] = 0.0
        s[:] = 0.0
        s2[:] = 0.0
        for j in range(t * strip, (t + 1) * strip):
            drow = data[j]
            brow = bad[j]
            for i in range(w):
                v = np.float64(drow[i])
                ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
                v = v if ok else 0.0
                m[i] += 1.0 if ok else 0.0
                s[i] += v
                s2[i] += v * v
        for i in range(w):
            if m[i] >= strip - 1 and s[i] > 0.0:
                mean = s[i] / m[i]
                ratios[i, cnt[i]] = (s2[i] - s[i] * mean) / (m[i] - 1.0) / mean
                cnt[i] += 1
    out = np.empty(w, dtype=np.float64)
    buf = np.empty(max(ns, 1), dtype=np.float64)
    for i in range(w):
        n = cnt[i]
        if n < min_strips:
            out[i] = fallback
            continue
        if below > 0.0:
            n_hi = 0
            for a in range(n):
                n_hi += 1 if ratios[i, a] * corr >= below else 0
            if n_hi < n - n // 2:
                out[i] = fallback
                continue
        # median of a few values: insertion sort in a scratch buffer (no allocation per column)
        for a in range(n):
            v = ratios[i, a]
            b = a
            while b > 0 and buf[b - 1] > v:
                buf[b] = buf[b - 1]
                b -= 1
            buf[b] = v
        med = buf[n // 2] if n % 2 else 0.5 * (buf[n // 2 - 1] + buf[n // 2])
        out[i] = med * corr
    return out


@njit(cache=True)
def typical_level(data, bad, step_ss, step_fs):
    """``floor(median)`` of the good, finite pixels on a sparse grid (every ``step_ss``-th row,
    ``step_fs``-th column); 0 when there is none. The median of an even count is the mean of
    the two middle values, summed in the data's precision (as ``np.median``)."""
    h, w = data.shape
    buf = np.empty(((h + step_ss - 1) // step_ss) * ((w + step_fs - 1) // step_fs),
                   dtype=data.dtype)
    n = 0
    for j in range(0, h, step_ss):
        for i in range(0, w, step_fs):
            v = data[j, i]
            if _good(v, bad[j, i]):
                buf[n] = v
                n += 1
    if n == 0:
        return 0.0
    part = np.partition(buf[:n], n // 2)
    if n % 2:
        med = np.float64(part[n // 2])
    else:
        med = np.float64(part[:n // 2].max() + part[n // 2]) / 2.0
    return np.floor(med)


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


@njit(cache=True)
def _label_buffers(cap):
    """Empty candidate rows, columns and labels and the union-find ``parent`` (label 0 = none)
    of the one-pass labelling, ``cap`` entries each (grown with :func:`_grow_i32`)."""
    parent = np.empty(cap, dtype=np.int32)
    parent[0] = 0
    return (np.empty(cap, dtype=np.int32), np.empty(cap, dtype=np.int32),
            np.empty(cap, dtype=np.int32), parent)


@njit(cache=True)
def _label(parent, n_lab, up, left):
    """One step of the one-pass 4-connected labelling: the label of a candidate pixel whose
    upper and left neighbours carry labels ``up`` and ``left`` (0: none), creating a new label
    or joining two (union by the smaller root). Returns ``(label, n_lab, parent)`` (``parent``
    grown when full)."""
    if up == 0 and left == 0:
        n_lab += 1
        if n_lab >= parent.shape[0]:
            parent = _grow_i32(parent, n_lab)
        parent[n_lab] = n_lab
        return n_lab, n_lab, parent
    if up == 0:
        return left, n_lab, parent
    if left == 0:
        return up, n_lab, parent
    ru = _find(parent, up)
    rl = _find(parent, left)
    if ru < rl:
        parent[rl] = ru
        return ru, n_lab, parent
    parent[ru] = rl
    return rl, n_lab, parent


@njit(cache=True)
def hot_spots(data, bad, npx, fs, ss, mx, bg, max_pixels, ring_fraction):
    """Hot-pixel test of :func:`xtalscreen.spots.dispersion.hot_pixel_spots` (bool per spot)."""
    h, w = data.shape
    n = npx.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    for c in range(n):
        if npx[c] > max_pixels:
            continue
        # the brightest pixel within 1 px of the centroid
        j0 = min(max(int(ss[c]), 0), h - 1)
        i0 = min(max(int(fs[c]), 0), w - 1)
        pj = j0
        pi = i0
        best = -np.inf
        for dj in range(-1, 2):
            for di in range(-1, 2):
                y = j0 + dj
                x = i0 + di
                if 0 <= y < h and 0 <= x < w and _good(data[y, x], bad[y, x]) \
                        and data[y, x] > best:
                    best = data[y, x]
                    pj = y
                    pi = x
        peak = best - bg[c]
        if not (peak > 0.0):
            continue
        # ring: 8 neighbours of the peak, leaving out the second pixel of a pair (the
        # brightest neighbour when the spot has 2 pixels)
        vals = np.empty(8)
        m = 0
        for dj in range(-1, 2):
            for di in range(-1, 2):
                y = pj + dj
                x = pi + di
                if (dj == 0 and di == 0) or not (0 <= y < h and 0 <= x < w):
                    continue
                if _good(data[y, x], bad[y, x]):
                    vals[m] = data[y, x] - bg[c]
                    m += 1
        if m < 3:
            continue
        vals = np.sort(vals[:m])
        top = m - (npx[c] - 1) if npx[c] > 1 else m
        s = 0.0
        for t in range(top):
            s += vals[t]
        ring = s / max(top, 1)
        out[c] = ring < ring_fraction * peak
    return out


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


# ---------------------------------------------------------------------------------------------
# dispersion, fused: rolling column sums -> candidate list -> sparse labelling -> spot moments
@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def _box7(c, t2, t4, out, w):
    """out[i] = sum(c[i : i + 7]) (c padded by 3 on each side), via pair and quad sums."""
    n = w + 6
    for i in range(n - 1):
        t2[i] = c[i] + c[i + 1]
    for i in range(n - 3):
        t4[i] = t2[i] + t2[i + 2]
    for i in range(w):
        out[i] = t4[i] + t2[i + 4] + c[i + 6]


@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def dispersion_candidates(data, bad, kh, kw, nsig_b, nsig_s, threshold, min_count, shift,
                          col_gain, refresh=32, has_bad=True):
    """The DIALS dispersion test (:mod:`xtalscreen.spots.dispersion`) in one pass with O(1)
    work per pixel, and 4-connected labelling of the strong pixels without any image-sized array.

    Window sums (count, sum and sum of squares of ``value - shift``) come from rolling column
    sums: each image row is cleaned once into a ring buffer of ``2·kh + 2`` rows, enters the
    column sums when it comes into the window and is subtracted when it leaves (the sums are
    recomputed from the ring every ``refresh`` rows, so float32 rounding cannot drift; integral
    data below 2**24 are summed exactly). The ring keeps the shifted values (float32; squares are
    taken again when a row enters or leaves) and a uint8 good-pixel flag; the common row is
    cleaned and entered into the column sums in one loop, and the count sums are only touched
    where a row with bad pixels enters or leaves. One unrolled horizontal box sum per quantity
    and the branch-free test then run over the row. Strong pixels are appended to a
    raster-ordered candidate list (the row's flags are scanned 8 bytes at a time); their
    provisional labels (union-find) look up the row above through two row buffers that are
    cleared at the positions they were set, never in full.

    The test is evaluated in float32. ``col_gain`` (float64, W) is the gain of every column
    (the gain of the window's centre column is used). Returns ``(rows, cols, lab, parent,
    row_start, n_strong, n_lab)``: candidate coordinates, provisional label of each candidate,
    the union-find parents, and ``row_start`` (H + 1,): candidates of row ``j`` are
    ``row_start[j]:row_start[j + 1]``. ``has_bad=False`` promises that ``bad`` is all False
    (it is then never read).
    """
    h, w = data.shape
    nring = 2 * kh + 2
    rv = np.zeros((nring, w), dtype=np.float32)
    rg = np.zeros((nring, w), dtype=np.uint8)     # 1 = good pixel
    wp = w + 2 * kw
    cm = np.zeros(wp, dtype=np.float32)
    cx = np.zeros(wp, dtype=np.float32)
    cy = np.zeros(wp, dtype=np.float32)
    bm = np.empty(w, dtype=np.float32)
    bx = np.empty(w, dtype=np.float32)
    by = np.empty(w, dtype=np.float32)
    nword = (w + 7) // 8
    flag = np.zeros(nword * 8, dtype=np.uint8)   # padded: scanned 8 bytes at a time
    flagw = flag.view(np.uint64)
    gv = np.empty(w, dtype=np.float32)
    nss2v = np.empty(w, dtype=np.float32)
    gnb2v = np.empty(w, dtype=np.float32)
    for i in range(w):
        gi = col_gain[i]
        gv[i] = gi
        nss2v[i] = nsig_s * nsig_s * gi
        gnb2v[i] = 2.0 * (gi * nsig_b) ** 2
    lab_a = np.zeros(w, dtype=np.int32)    # labels of the current row (by column)
    lab_b = np.zeros(w, dtype=np.int32)    # labels of the row above
    sh = np.float32(shift)
    fmin = np.float32(min_count)
    thr = np.float32(threshold)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    rows, cols, lab, parent = _label_buffers(1024)
    row_start = np.zeros(h + 1, dtype=np.int64)
    n_strong = 0
    n_lab = 0
    width = 2 * kw + 1
    cxo = cx[kw:kw + w]
    cyo = cy[kw:kw + w]
    cmo = cm[kw:kw + w]
    # rows without bad pixels: the window count is rows x columns, no sums needed
    nbad = np.zeros(nring, dtype=np.int64)
    span = np.empty(w, dtype=np.float32)
    for i in range(w):
        span[i] = min(i + kw, w - 1) - max(i - kw, 0) + 1
    t2 = np.zeros(wp, dtype=np.float32)
    t4 = np.zeros(wp, dtype=np.float32)
    for jn in range(-kh, h):
        je = jn + kh                 # row entering the window of output row jn
        jl = jn - kh - 1             # row leaving
        # the usual row (one enters, one leaves, no refresh): clean it and update the column
        # sums in the same loop (same float32 values and operations as the separate passes)
        fused = je < h and jl >= 0 and jn % refresh != 0
        if fused:
            se = je % nring
            sl = jl % nring
            drow = data[je]
            brow = bad[je]
            rvs = rv[se]
            rgs = rg[se]
            a2 = rv[sl]
            nb = 0
            if has_bad:
                for i in range(w):
                    v = drow[i]
                    ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
                    vv = (v - sh) if ok else zero
                    rvs[i] = vv
                    rgs[i] = 1 if ok else 0
                    nb += 0 if ok else 1
                    cxo[i] += vv - a2[i]
                    cyo[i] += vv * vv - a2[i] * a2[i]
            else:
                for i in range(w):
                    v = drow[i]
                    ok = (v == v) & (abs(v) < _INF)
                    vv = (v - sh) if ok else zero
                    rvs[i] = vv
                    rgs[i] = 1 if ok else 0
                    nb += 0 if ok else 1
                    cxo[i] += vv - a2[i]
                    cyo[i] += vv * vv - a2[i] * a2[i]
            nbad[se] = nb
            # the count sums change only where the entering or leaving row has bad pixels
            # (1 - 1 = 0 exactly otherwise)
            if nb != 0 or nbad[sl] != 0:
                c2 = rg[sl]
                for i in range(w):
                    cmo[i] += np.float32(rgs[i]) - np.float32(c2[i])
        elif je < h:
            se = je % nring
            drow = data[je]
            brow = bad[je]
            rvs = rv[se]
            rgs = rg[se]
            nb = 0
            if has_bad:
                for i in range(w):
                    v = drow[i]
                    ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
                    vv = (v - sh) if ok else zero
                    rvs[i] = vv
                    rgs[i] = 1 if ok else 0
                    nb += 0 if ok else 1
            else:
                for i in range(w):
                    v = drow[i]
                    ok = (v == v) & (abs(v) < _INF)
                    vv = (v - sh) if ok else zero
                    rvs[i] = vv
                    rgs[i] = 1 if ok else 0
                    nb += 0 if ok else 1
            nbad[se] = nb
        j = jn
        if fused:
            pass
        elif j >= 0 and j % refresh == 0:
            # exact recomputation from the ring: rows max(j-kh, 0) .. min(j+kh, h-1)
            cxo[:] = 0.0
            cyo[:] = 0.0
            cmo[:] = 0.0
            for r in range(max(j - kh, 0), min(j + kh, h - 1) + 1):
                sr = r % nring
                a = rv[sr]
                c = rg[sr]
                for i in range(w):
                    cxo[i] += a[i]
                    cyo[i] += a[i] * a[i]
                    cmo[i] += np.float32(c[i])
        else:
            if je < h:
                se = je % nring
                a = rv[se]
                c = rg[se]
                if jl >= 0:
                    sl = jl % nring
                    a2 = rv[sl]
                    c2 = rg[sl]
                    for i in range(w):
                        cxo[i] += a[i] - a2[i]
                        cyo[i] += a[i] * a[i] - a2[i] * a2[i]
                    # the count sums change only where the entering or leaving row has bad
                    # pixels (1 - 1 = 0 exactly otherwise)
                    if nbad[se] != 0 or nbad[sl] != 0:
                        for i in range(w):
                            cmo[i] += np.float32(c[i]) - np.float32(c2[i])
                else:
                    for i in range(w):
                        cxo[i] += a[i]
                        cyo[i] += a[i] * a[i]
                        cmo[i] += np.float32(c[i])
            elif jl >= 0:
                sl = jl % nring
                a2 = rv[sl]
                c2 = rg[sl]
                for i in range(w):
                    cxo[i] -= a2[i]
                    cyo[i] -= a2[i] * a2[i]
                    cmo[i] -= np.float32(c2[i])
        if j < 0:
            continue
        row_start[j] = n_strong
        any_bad = 0
        for r in range(max(j - kh, 0), min(j + kh, h - 1) + 1):
            any_bad += nbad[r % nring]
        if kw == 3:
            # 7-wide box sums from pair and quad partial sums (4 adds per output, not 6)
            _box7(cx, t2, t4, bx, w)
            _box7(cy, t2, t4, by, w)
            if any_bad:
                _box7(cm, t2, t4, bm, w)
        else:
            for i in range(w):
                a0 = zero
                b0 = zero
                c0 = zero
                for t in range(width):
                    a0 += cx[i + t]
                    b0 += cy[i + t]
                    c0 += cm[i + t]
                bx[i] = a0
                by[i] = b0
                bm[i] = c0
        if not any_bad:
            nrows = np.float32(min(j + kh, h - 1) - max(j - kh, 0) + 1)
            for i in range(w):
                bm[i] = nrows * span[i]
        slot = j % nring
        rvc = rv[slot]
        rgc = rg[slot]
        nf = 0
        for i in range(w):
            m = bm[i]
            xs = bx[i]
            x = xs + m * sh
            ps = rvc[i]
            b0 = m * ps - xs
            aa = m * by[i] - xs * xs - gv[i] * x * (m - one)
            ok = ((rgc[i] != 0) & (m >= fmin) & (x >= zero) & (ps + sh > thr)
                  & (b0 > zero) & (b0 * b0 > nss2v[i] * x * m) & (aa > zero)
                  & (aa * aa > gnb2v[i] * x * x * (m - one)))
            flag[i] = 1 if ok else 0
            nf += 1 if ok else 0
        # swap the row-label buffers; clear the one for this row where row j-2 set it
        tmp = lab_b
        lab_b = lab_a
        lab_a = tmp
        if j >= 2:
            for k in range(row_start[j - 2], row_start[j - 1]):
                lab_a[cols[k]] = 0
        if nf == 0:
            continue
        for iw in range(nword):
            if flagw[iw] == 0:
                continue
            for i in range(8 * iw, min(8 * iw + 8, w)):
                if flag[i] == 0:
                    continue
                lb, n_lab, parent = _label(parent, n_lab, lab_b[i] if j > 0 else 0, lab_a[i - 1] if i > 0 else 0)
                lab_a[i] = lb
                if n_strong >= rows.shape[0]:
                    rows = _grow_i32(rows, n_strong)
                    cols = _grow_i32(cols, n_strong)
                    lab = _grow_i32(lab, n_strong)
                rows[n_strong] = j
                cols[n_strong] = i
                lab[n_strong] = lb
                n_strong += 1
    row_start[h] = n_strong
    return rows, cols, lab, parent, row_start, n_strong, n_lab


#: Columns per tile of :func:`dispersion_candidates_tiled` (a multiple of 8). Each image row is
#: processed tile by tile, so the row buffers a pass touches (column sums, box sums, ring rows,
#: gains, flags: ~20 arrays) stay in the L1 cache however wide the panel is.
DISPERSION_TILE = 512
#: The tiled kernel prefetches the image row this many rows ahead of the entering one.
PREFETCH_ROWS = 4
#: Panels up to this wide, of frames up to :data:`UNTILED_MAX_FRAME_PIXELS`, go to
#: :func:`dispersion_candidates`, all others to :func:`dispersion_candidates_tiled` (same
#: result; on a 1024x1024 frame that stays in the cache the untiled kernel is ~5-10 % faster,
#: on wider rows or frames larger than the cache the tiled one is ~20 % faster).
UNTILED_MAX_WIDTH = 1024
#: Frames above this many pixels (16 MB of float32, half the last-level cache) do not stay in
#: the cache between frames: their panels get the tiled kernel and its prefetching.
UNTILED_MAX_FRAME_PIXELS = 1 << 22


@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def _box7_at(c, off, t2, t4, out, n):
    """out[q] = sum(c[off + q : off + q + 7]) for q < n, via pair and quad sums (``t2``, ``t4``:
    scratch of n + 6 values). ``off`` and ``n`` are uint64: indices the compiler knows are
    >= 0 need no negative-index wraparound, so the loops vectorise."""
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    u3 = np.uint64(3)
    u4 = np.uint64(4)
    u5 = np.uint64(5)
    u6 = np.uint64(6)
    for q in range(n + u5):
        t2[q] = c[off + q] + c[off + q + u1]
    for q in range(n + u3):
        t4[q] = t2[q] + t2[q + u2]
    for q in range(n):
        out[q] = t4[q] + t2[q + u4] + c[off + q + u6]


@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def _box7x2_at(c, d, off, t2, t4, u2, u4, out_c, out_d, n):
    """:func:`_box7_at` of ``c`` (scratch ``t2``, ``t4``) and of ``d`` (scratch ``u2``, ``u4``) in
    the same loops (the same operations per value; half the loop set-ups)."""
    k1 = np.uint64(1)
    k2 = np.uint64(2)
    k3 = np.uint64(3)
    k4 = np.uint64(4)
    k5 = np.uint64(5)
    k6 = np.uint64(6)
    for q in range(n + k5):
        t2[q] = c[off + q] + c[off + q + k1]
        u2[q] = d[off + q] + d[off + q + k1]
    for q in range(n + k3):
        t4[q] = t2[q] + t2[q + k2]
        u4[q] = u2[q] + u2[q + k2]
    for q in range(n):
        out_c[q] = t4[q] + t2[q + k4] + c[off + q + k6]
        out_d[q] = u4[q] + u2[q + k4] + d[off + q + k6]


@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def _clean(drow, brow, rvs, rgs, sh, has_bad):
    """An image row into the ring: ``value - sh`` (0 where bad, NaN or ±inf) and the good
    flag. Returns the number of bad pixels."""
    zero = np.float32(0.0)
    nb = 0
    if has_bad:
        for i in range(drow.shape[0]):
            v = drow[i]
            ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
            rvs[i] = (v - sh) if ok else zero
            rgs[i] = 1 if ok else 0
            nb += 0 if ok else 1
    else:
        for i in range(drow.shape[0]):
            v = drow[i]
            ok = (v == v) & (abs(v) < _INF)
            rvs[i] = (v - sh) if ok else zero
            rgs[i] = 1 if ok else 0
            nb += 0 if ok else 1
    return nb


@njit(cache=True, fastmath=_FM, boundscheck=False, error_model="numpy")
def dispersion_candidates_tiled(data, bad, kh, kw, nsig_b, nsig_s, threshold, min_count,
                                shift, col_gain, refresh=32, has_bad=True,
                                tile=DISPERSION_TILE):
    """:func:`dispersion_candidates` for wide panels: the same arguments and exactly the same
    result, with each row processed in column tiles and the image prefetched.

    For each row, tile by tile (``tile`` columns, rounded down to a multiple of 8, at least
    8), the entering row is cleaned and the column sums are brought up to date ``kw`` columns
    beyond the tile (its halo); then the tile's box sums (those of the two sums share their
    loops), test and labels follow. The buffers a pass touches thus stay in the L1 cache
    however wide the row is (a 4096-wide row's buffers are ~0.4 MB). Every value is computed
    by the same float32 operations as in :func:`dispersion_candidates` and candidates are still
    appended in raster order, so labels and parents are the same too. Whether the window has
    bad pixels is known per tile (whole rows, plus the entering row up to the halo); a
    full-height window without any takes its count from a precomputed row. The image row
    :data:`PREFETCH_ROWS` ahead of the entering one is prefetched tile by tile: a frame larger
    than the cache otherwise stalls on every row it starts reading. Column indices are uint64
    offsets (the compiler then needs no negative-index wraparound and vectorises the loops).
    """
    h, w = data.shape
    tile = max(8, tile - tile % 8)
    nt = min(tile, w)                # widest tile
    nring = 2 * kh + 2
    rv = np.zeros((nring, w), dtype=np.float32)
    rg = np.zeros((nring, w), dtype=np.uint8)     # 1 = good pixel
    wp = w + 2 * kw
    cm = np.zeros(wp, dtype=np.float32)
    cx = np.zeros(wp, dtype=np.float32)
    cy = np.zeros(wp, dtype=np.float32)
    bm = np.empty(nt, dtype=np.float32)          # box sums of the current tile
    bx = np.empty(nt, dtype=np.float32)
    by = np.empty(nt, dtype=np.float32)
    t2 = np.zeros(nt + 2 * kw, dtype=np.float32)
    t4 = np.zeros(nt + 2 * kw, dtype=np.float32)
    u2 = np.zeros(nt + 2 * kw, dtype=np.float32)
    u4 = np.zeros(nt + 2 * kw, dtype=np.float32)
    nword = (w + 7) // 8
    flag = np.zeros(nword * 8, dtype=np.uint8)   # padded: scanned 8 bytes at a time
    flagw = flag.view(np.uint64)
    gv = np.empty(w, dtype=np.float32)
    nss2v = np.empty(w, dtype=np.float32)
    gnb2v = np.empty(w, dtype=np.float32)
    for i in range(w):
        gi = col_gain[i]
        gv[i] = gi
        nss2v[i] = nsig_s * nsig_s * gi
        gnb2v[i] = 2.0 * (gi * nsig_b) ** 2
    lab_a = np.zeros(w, dtype=np.int32)    # labels of the current row (by column)
    lab_b = np.zeros(w, dtype=np.int32)    # labels of the row above
    sh = np.float32(shift)
    fmin = np.float32(min_count)
    thr = np.float32(threshold)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    rows, cols, lab, parent = _label_buffers(1024)
    row_start = np.zeros(h + 1, dtype=np.int64)
    n_strong = 0
    n_lab = 0
    width = 2 * kw + 1
    cxo = cx[kw:kw + w]
    cyo = cy[kw:kw + w]
    cmo = cm[kw:kw + w]
    # rows without bad pixels: the window count is rows x columns, no sums needed
    nbad = np.zeros(nring, dtype=np.int64)
    span = np.empty(w, dtype=np.float32)
    for i in range(w):
        span[i] = min(i + kw, w - 1) - max(i - kw, 0) + 1
    rows_full = np.float32(min(2 * kh + 1, h))
    bfull = np.empty(w, dtype=np.float32)         # count of a full-height clean window
    for i in range(w):
        bfull[i] = rows_full * span[i]
    u0 = np.uint64(0)
    for jn in range(-kh, h):
        je = jn + kh                 # row entering the window of output row jn
        jl = jn - kh - 1             # row leaving
        # the usual row (one enters, one leaves, no refresh) is cleaned and entered into the
        # column sums tile by tile below; the others here, over the whole row
        fused = je < h and jl >= 0 and jn % refresh != 0
        se = je % nring
        if fused:
            nbad[se] = 0             # counted tile by tile
        elif je < h:
            nbad[se] = _clean(data[je], bad[je], rv[se], rg[se], sh, has_bad)
        j = jn
        if fused:
            pass                     # column sums: tile by tile below
        elif j >= 0 and j % refresh == 0:
            # exact recomputation from the ring: rows max(j-kh, 0) .. min(j+kh, h-1)
            cxo[:] = 0.0
            cyo[:] = 0.0
            cmo[:] = 0.0
            for r in range(max(j - kh, 0), min(j + kh, h - 1) + 1):
                sr = r % nring
                a = rv[sr]
                c = rg[sr]
                for i in range(w):
                    cxo[i] += a[i]
                    cyo[i] += a[i] * a[i]
                    cmo[i] += np.float32(c[i])
        else:
            if je < h:
                a = rv[se]
                c = rg[se]
                if jl >= 0:
                    sl = jl % nring
                    a2 = rv[sl]
                    c2 = rg[sl]
                    for i in range(w):
                        cxo[i] += a[i] - a2[i]
                        cyo[i] += a[i] * a[i] - a2[i] * a2[i]
                    # the count sums change only where the entering or leaving row has bad
                    # pixels (1 - 1 = 0 exactly otherwise)
                    if nbad[se] != 0 or nbad[sl] != 0:
                        for i in range(w):
                            cmo[i] += np.float32(c[i]) - np.float32(c2[i])
                else:
                    for i in range(w):
                        cxo[i] += a[i]
                        cyo[i] += a[i] * a[i]
                        cmo[i] += np.float32(c[i])
            elif jl >= 0:
                sl = jl % nring
                a2 = rv[sl]
                c2 = rg[sl]
                for i in range(w):
                    cxo[i] -= a2[i]
                    cyo[i] -= a2[i] * a2[i]
                    cmo[i] -= np.float32(c2[i])
        if j < 0:
            continue
        row_start[j] = n_strong
        # bad pixels in the window's rows (the entering row's are added tile by tile)
        base_bad = 0
        for r in range(max(j - kh, 0), min(j + kh, h - 1) + 1):
            base_bad += nbad[r % nring]
        nrows = np.float32(min(j + kh, h - 1) - max(j - kh, 0) + 1)
        # swap the row-label buffers; clear the one for this row where row j-2 set it
        tmp = lab_b
        lab_b = lab_a
        lab_a = tmp
        if j >= 2:
            for k in range(row_start[j - 2], row_start[j - 1]):
                lab_a[cols[k]] = 0
        slot = j % nring
        rvc = rv[slot]
        rgc = rg[slot]
        jp = je + PREFETCH_ROWS
        if fused:
            sl = jl % nring
            drow = data[je]
            brow = bad[je]
            rvs = rv[se]
            rgs = rg[se]
            a2 = rv[sl]
            c2 = rg[sl]
        for a0 in range(0, w, tile):
            b0 = min(a0 + tile, w)
            n = b0 - a0
            # unsigned column indices (au + q): the compiler knows they are >= 0, needs no
            # negative-index wraparound and vectorises the loops
            au = np.uint64(a0)
            nu = np.uint64(n)
            if jp < h:
                for i in range(a0, b0, 16):
                    _prefetch(data, (jp, i))
                _prefetch(data, (jp, b0 - 1))
                if has_bad:
                    for i in range(a0, b0, 64):
                        _prefetch(bad, (jp, i))
                    _prefetch(bad, (jp, b0 - 1))
            if fused:
                # clean the entering row and update the column sums kw columns beyond the
                # tile (the box sums' halo); same float32 operations as whole-row passes
                lo = a0 + kw if a0 > 0 else 0
                lu = np.uint64(lo)
                nlu = np.uint64(max(min(b0 + kw, w) - lo, 0))
                nb = 0
                if has_bad:
                    for q in range(nlu):
                        i = lu + q
                        v = drow[i]
                        ok = (not brow[i]) & (v == v) & (abs(v) < _INF)
                        vv = (v - sh) if ok else zero
                        rvs[i] = vv
                        rgs[i] = 1 if ok else 0
                        nb += 0 if ok else 1
                        cxo[i] += vv - a2[i]
                        cyo[i] += vv * vv - a2[i] * a2[i]
                else:
                    for q in range(nlu):
                        i = lu + q
                        v = drow[i]
                        ok = (v == v) & (abs(v) < _INF)
                        vv = (v - sh) if ok else zero
                        rvs[i] = vv
                        rgs[i] = 1 if ok else 0
                        nb += 0 if ok else 1
                        cxo[i] += vv - a2[i]
                        cyo[i] += vv * vv - a2[i] * a2[i]
                nbad[se] += nb
                # the count sums change only where the entering or leaving row has bad
                # pixels (1 - 1 = 0 exactly otherwise)
                if nb != 0 or nbad[sl] != 0:
                    for q in range(nlu):
                        i = lu + q
                        cmo[i] += np.float32(rgs[i]) - np.float32(c2[i])
            # bad pixels so far in the window (whole rows, and the entering row up to the
            # halo): none means every window count is rows x columns, exactly the box sum
            any_bad = base_bad + (nbad[se] if fused else 0)
            if kw == 3:
                # 7-wide box sums from pair and quad partial sums (4 adds per output, not 6)
                _box7x2_at(cx, cy, au, t2, t4, u2, u4, bx, by, nu)
                if any_bad:
                    _box7_at(cm, au, t2, t4, bm, nu)
            else:
                for q in range(nu):
                    i = au + q
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    for t in range(np.uint64(width)):
                        s0 += cx[i + t]
                        s1 += cy[i + t]
                        s2 += cm[i + t]
                    bx[q] = s0
                    by[q] = s1
                    bm[q] = s2
            # window counts: mb[mo + q]
            mb = bm
            mo = u0
            if not any_bad:
                if nrows == rows_full:
                    mb = bfull
                    mo = au
                else:
                    for q in range(nu):
                        bm[q] = nrows * span[au + q]
            nf = 0
            for q in range(nu):
                i = au + q
                m = mb[mo + q]
                xs = bx[q]
                x = xs + m * sh
                ps = rvc[i]
                b = m * ps - xs
                aa = m * by[q] - xs * xs - gv[i] * x * (m - one)
                ok = ((rgc[i] != 0) & (m >= fmin) & (x >= zero) & (ps + sh > thr)
                      & (b > zero) & (b * b > nss2v[i] * x * m) & (aa > zero)
                      & (aa * aa > gnb2v[i] * x * x * (m - one)))
                flag[i] = 1 if ok else 0
                nf += 1 if ok else 0
            if nf == 0:
                continue
            for iw in range(a0 // 8, (b0 + 7) // 8):
                if flagw[iw] == 0:
                    continue
                for i in range(8 * iw, min(8 * iw + 8, w)):
                    if flag[i] == 0:
                        continue
                    lb, n_lab, parent = _label(parent, n_lab, lab_b[i] if j > 0 else 0, lab_a[i - 1] if i > 0 else 0)
                    lab_a[i] = lb
                    if n_strong >= rows.shape[0]:
                        rows = _grow_i32(rows, n_strong)
                        cols = _grow_i32(cols, n_strong)
                        lab = _grow_i32(lab, n_strong)
                    rows[n_strong] = j
                    cols[n_strong] = i
                    lab[n_strong] = lb
                    n_strong += 1
    row_start[h] = n_strong
    return rows, cols, lab, parent, row_start, n_strong, n_lab


@njit(cache=True)
def merge_nearby_sparse(rows, cols, lab, parent, row_start, n_strong, reach):
    """Union the spots of candidates within Chebyshev distance ``reach`` (reach 2 bridges a
    one-pixel gap: a masked pixel inside a spot, a diagonal streak), on the candidate list
    (rows ``j .. j + reach`` found through ``row_start``). Candidates of a row are in column
    order, so each row is scanned from a pointer that only moves forward (past columns more
    than ``reach`` to the left) up to the first column more than ``reach`` to the right.
    Roots are always the smallest label of their set, so the result does not depend on the
    order of the unions."""
    h = row_start.shape[0] - 1
    ptr = np.empty(reach + 1, dtype=np.int64)
    cur = -1
    for k in range(n_strong):
        j = rows[k]
        i = cols[k]
        a = lab[k]
        if j != cur:
            cur = j
            for t in range(reach + 1):
                ptr[t] = row_start[min(j + t, h)]
        for y in range(j, min(j + reach, h - 1) + 1):
            t = y - j
            end = row_start[y + 1]
            q0 = ptr[t]
            while q0 < end and cols[q0] < i - reach:
                q0 += 1
            ptr[t] = q0
            for q in range(q0, end):
                if cols[q] > i + reach:
                    break
                if y == j and q <= k:
                    continue
                b = lab[q]
                if b != a:
                    ra = _find(parent, a)
                    rb = _find(parent, b)
                    if ra < rb:
                        parent[rb] = ra
                    elif rb < ra:
                        parent[ra] = rb


@njit(cache=True, fastmath=_FM, error_model="numpy")
def component_stats_sparse(data, bad, rows, cols, lab, parent, row_start, n_strong, n_lab,
                           margin, gain, has_bad=True):
    """Per-spot statistics from the candidate list.

    Background of a spot: mean and variance of the good pixels in its bounding box grown by
    ``margin`` pixels that are neither strong nor next to a strong pixel (8-neighbourhood; a
    small local map built from ``row_start``). ``gain`` (float64, W) is the gain of every
    column (the SNR uses the one at the centroid); ``has_bad=False`` promises an all-False
    ``bad`` (not read). Returns arrays (one per spot) n, fs, ss,
    intensity (background-subtracted sum), max_pixel, background (per pixel), snr."""
    h, w = data.shape
    comp = np.zeros(n_lab + 1, dtype=np.int32)
    nc = 0
    for lb in range(1, n_lab + 1):
        if _find(parent, lb) == lb:
            nc += 1
            comp[lb] = nc
    for lb in range(1, n_lab + 1):
        comp[lb] = comp[_find(parent, lb)]
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
        if k + 16 < n_strong:
            # the pixel 16 candidates ahead: in a frame larger than the cache each candidate
            # is a miss, fetched meanwhile instead of waited for
            _prefetch(data, (rows[k + 16], cols[k + 16]))
        c = comp[lab[k]] - 1
        cid[k] = c
        v = data[j, i]
        npx[c] += 1
        raw[c] += v
        if v > mx[c]:
            mx[c] = v
        r0[c] = min(r0[c], j)
        r1[c] = max(r1[c], j)
        c0[c] = min(c0[c], i)
        c1[c] = max(c1[c], i)
    bg = np.zeros(nc, dtype=np.float64)
    bgvar = np.zeros(nc, dtype=np.float64)
    nbg = np.zeros(nc, dtype=np.int64)
    # one scratch map for all spots, sized for the largest grown bounding box
    big = 1
    for c in range(nc):
        bh = min(r1[c] + margin, h - 1) - max(r0[c] - margin, 0) + 1
        bw = min(c1[c] + margin, w - 1) - max(c0[c] - margin, 0) + 1
        big = max(big, bh * bw)
    scratch = np.empty(big, dtype=np.uint8)
    for c in range(nc):
        if c + 4 < nc:
            # the box of the spot 4 ahead (first and last column of each row: boxes are
            # narrow) comes in from memory while this one is summed
            d = c + 4
            pa = max(c0[d] - margin, 0)
            pb = min(c1[d] + margin, w - 1)
            for y in range(max(r0[d] - margin, 0), min(r1[d] + margin, h - 1) + 1):
                _prefetch(data, (y, pa))
                _prefetch(data, (y, pb))
                if has_bad:
                    _prefetch(bad, (y, pa))
                    _prefetch(bad, (y, pb))
        ja = max(r0[c] - margin, 0)
        jb = min(r1[c] + margin, h - 1)
        ia = max(c0[c] - margin, 0)
        ib = min(c1[c] + margin, w - 1)
        bh = jb - ja + 1
        bw = ib - ia + 1
        near = scratch[:bh * bw].reshape((bh, bw))
        near[:, :] = 0
        for y in range(max(ja - 1, 0), min(jb + 1, h - 1) + 1):
            for q in range(row_start[y], row_start[y + 1]):
                x = cols[q]
                if x < ia - 1 or x > ib + 1:
                    continue
                for dy in range(-1, 2):
                    yy = y + dy - ja
                    if yy < 0 or yy >= bh:
                        continue
                    for dx in range(-1, 2):
                        xx = x + dx - ia
                        if 0 <= xx < bw:
                            near[yy, xx] = 1
        m = 0
        s = 0.0
        s2 = 0.0
        for j in range(ja, jb + 1):
            for i in range(ia, ib + 1):
                v = data[j, i]
                if near[j - ja, i - ia] != 0 or not _good(v, bad[j, i] if has_bad else False):
                    continue
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
        g = gain[min(max(int(fs[c]), 0), w - 1)]
        var = g * max(net[c], 0.0) + npx[c] * bgvar[c] * (1.0 + npx[c] / max(nbg[c], 1))
        snr[c] = net[c] / np.sqrt(var) if var > 0.0 else (np.inf if net[c] > 0 else 0.0)
    return npx, fs, ss, net, mx, bg, snr
