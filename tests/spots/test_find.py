"""Spot finders: recall/precision on synthetic frames, agreement with the numpy/scipy reference,
masks, panels, metadata, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import DetectorGeometry, Frame, Panel
from xtalscreen.spots import SpotTable, estimate_gain, find_spots
from xtalscreen.spots.dispersion import DispersionParams, dispersion_panel
from xtalscreen.spots.peakfinder8 import Peakfinder8Params, peakfinder8_panels, radius_bins
from xtalscreen.spots.reference import (dispersion_reference, peakfinder8_reference,
                                         radial_stats_reference)
from xtalscreen.spots import _kernels

ALGS = ["dispersion", "peakfinder8"]


@pytest.mark.parametrize("algorithm", ALGS)
def test_finds_planted_spots(synth, matcher, algorithm):
    img, pos = synth((256, 256), n_spots=25, rng=1)
    t = find_spots(img, algorithm=algorithm)
    tm, fm = matcher(np.c_[t["fs"], t["ss"]], pos)
    assert tm / len(pos) >= 0.95
    assert fm == len(t)
    # centroids are sub-pixel accurate
    d = np.hypot(t["fs"][:, None] - pos[None, :, 0], t["ss"][:, None] - pos[None, :, 1]).min(axis=1)
    assert np.median(d) < 0.3


@pytest.mark.parametrize("algorithm", ALGS)
def test_pure_background_gives_no_spots(algorithm):
    img = np.random.default_rng(3).poisson(3.0, (300, 300)).astype(np.float32)
    assert len(find_spots(img, algorithm=algorithm)) <= 1


def test_intensity_and_background_are_physical(synth):
    img, pos = synth((128, 128), n_spots=6, background=5.0, photons=1000.0, rng=2)
    t = find_spots(img, gain=1.0)
    assert len(t) == 6
    # background per pixel near the true 5 photons; intensity most of the 1000 photons
    assert np.all(np.abs(t["background"] - 5.0) < 1.5)
    assert np.all((t["intensity"] > 800) & (t["intensity"] < 1100))
    assert np.all(t["snr"] > 10)
    assert np.all(t["max_pixel"] >= t["intensity"] / t["n_pixels"])


def test_gain_is_estimated_from_the_frame(synth):
    img, _ = synth((256, 256), n_spots=5, background=10.0, gain=4.0, rng=4)
    g = estimate_gain([(img, np.zeros(img.shape, bool))])
    assert 3.3 < g < 4.7
    # scaled data find the same spots with no tuning
    img1, pos = synth((256, 256), n_spots=15, rng=5)
    n1 = len(find_spots(img1))
    n4 = len(find_spots(img1 * 4))
    assert n1 == n4 == 15


def test_dispersion_matches_reference(synth):
    img, _ = synth((200, 180), n_spots=30, rng=6)
    bad = np.zeros(img.shape, bool)
    bad[50:60, :] = True
    bad[100, 100] = True
    p = DispersionParams()
    fast = dispersion_panel(img, bad, p, 1.0)
    ref = dispersion_reference(img, bad, p, gain=1.0)
    assert len(fast["fs"]) == len(ref["fs"]) > 20
    o1 = np.lexsort((fast["fs"], fast["ss"]))
    o2 = np.lexsort((ref["fs"], ref["ss"]))
    for key in ("n_pixels", "fs", "ss", "intensity", "background", "snr", "max_pixel"):
        np.testing.assert_allclose(fast[key][o1], ref[key][o2], rtol=1e-4, atol=1e-3, err_msg=key)


def test_dispersion_strong_map_matches_reference_exactly():
    rng = np.random.default_rng(7)
    img = rng.poisson(4.0, (64, 70)).astype(np.float32)
    img[20:23, 30:33] += 80
    bad = rng.random(img.shape) < 0.05
    strong, _ = _candidate_map(img, bad)
    ref = dispersion_reference(img, bad, DispersionParams(), gain=1.0)
    np.testing.assert_array_equal(strong, ref["strong"])


def _candidate_map(img, bad, k=3, gain=1.0, shift=0.0):
    g = np.full(img.shape[1], gain)
    rows, cols, lab, parent, row_start, n, n_lab = _kernels.dispersion_candidates(
        img, bad, k, k, 6.0, 3.0, 0.0, 2, shift, g)
    strong = np.zeros(img.shape, bool)
    strong[rows[:n], cols[:n]] = True
    # row index: candidates of row j are row_start[j]:row_start[j+1], in raster order
    assert np.all(np.diff(row_start) >= 0) and row_start[-1] == n
    for j in range(img.shape[0]):
        assert np.all(rows[row_start[j]:row_start[j + 1]] == j)
    return strong, n_lab


@pytest.mark.parametrize("k", [3, 2])
def test_fused_rolling_kernel_matches_reference_exactly(k):
    # tall enough for several exact refreshes of the rolling column sums, a pedestal that
    # makes float32 sums large, masked rows/columns/pixels; integral data are summed exactly
    rng = np.random.default_rng(17)
    img = (rng.poisson(6.0, (230, 90)) + 1000).astype(np.float32)
    img[40:43, 30:33] += 150
    img[150:152, 60:62] += 120
    img[200, 10] = np.nan
    bad = rng.random(img.shape) < 0.03
    bad[100:103, :] = True
    bad[:, 45] = True
    p = DispersionParams(kernel_size=k)
    ref = dispersion_reference(img - 1000, bad, p, gain=1.0)
    ref_abs = dispersion_reference(img, bad, p, gain=1.0)
    strong, _ = _candidate_map(img - 1000, bad, k)
    np.testing.assert_array_equal(strong, ref["strong"])
    strong_abs, _ = _candidate_map(img, bad, k, shift=1000.0)
    np.testing.assert_array_equal(strong_abs, ref_abs["strong"])
    assert strong.sum() >= 8


def test_sparse_labelling_counts_components():
    # two 4-connected blobs, one diagonal pair (two components without merging)
    img = np.random.default_rng(3).poisson(2.0, (60, 60)).astype(np.float32)
    img[10:13, 10:13] += 200
    img[30, 30] += 200
    img[31, 31] += 200
    img[45:47, 20:26] += 200
    strong, n_lab = _candidate_map(img, np.zeros(img.shape, bool))
    from scipy import ndimage as ndi
    _, n_ref = ndi.label(strong)
    rows, cols, lab, parent, row_start, n, nl = _kernels.dispersion_candidates(
        img, np.zeros(img.shape, bool), 3, 3, 6.0, 3.0, 0.0, 2, 0.0, np.ones(60))
    roots = {_kernels._find(parent, int(x)) for x in lab[:n]}
    assert len(roots) == n_ref


def test_column_gain_follows_column_noise():
    # CSPAD-like: a pedestal plus read noise that is 2.5x larger in the right half; one gain
    # for the frame calls many noise pixels strong there, per-column gains do not
    rng = np.random.default_rng(21)
    h, w = 185, 194
    sd = np.where(np.arange(w) < 97, 4.0, 10.0)
    img = (20.0 + rng.normal(0.0, 1.0, (h, w)) * sd).astype(np.float32)
    bad = np.zeros(img.shape, bool)
    from xtalscreen.spots.dispersion import column_gains
    g_frame = estimate_gain([(img, bad)])
    g = column_gains(img, bad, g_frame)
    # variance/mean: 16/20 on the left, 100/20 on the right; gains are only raised
    assert np.mean(g[:97] == g_frame) > 0.9 and np.median(g[97:]) > 3.5 > g_frame
    out_frame = _kernels.dispersion_candidates(img, bad, 3, 3, 6.0, 3.0, 0.0, 2, 20.0,
                                               np.full(w, g_frame))
    out_col = _kernels.dispersion_candidates(img, bad, 3, 3, 6.0, 3.0, 0.0, 2, 20.0, g)
    n_frame, n_col = out_frame[5], out_col[5]
    assert n_frame >= 30 and n_col * 5 <= n_frame
    assert len(find_spots(img)) <= len(find_spots(img, gain_per="frame"))
    # a Poisson panel with one gain keeps that gain in (nearly) every column
    pois = rng.poisson(5.0, (256, 256)).astype(np.float32) * 3
    gp = column_gains(pois, np.zeros(pois.shape, bool), 3.0)
    assert np.mean(gp == 3.0) > 0.95


def test_hot_pixel_filter_drops_isolated_spikes(synth, matcher):
    img, pos = synth((200, 200), n_spots=15, sigma=0.9, rng=23)
    rng = np.random.default_rng(24)
    hot = []
    while len(hot) < 8:
        j, i = rng.integers(5, 195, 2)
        if np.hypot(pos[:, 0] - i, pos[:, 1] - j).min() > 8:
            img[j, i] += 500
            img[j, i + 1] += 300  # pairs pass min_spot_size=2
            hot.append((i + 1.0, j + 0.5))
    plain = find_spots(img)
    filt = find_spots(img, hot_pixels=True)
    assert matcher(np.c_[plain["fs"], plain["ss"]], hot)[0] == 8
    assert matcher(np.c_[filt["fs"], filt["ss"]], hot)[0] == 0
    assert matcher(np.c_[filt["fs"], filt["ss"]], pos)[0] == matcher(
        np.c_[plain["fs"], plain["ss"]], pos)[0] >= 14


def test_gain_options_are_validated():
    img = np.zeros((16, 16), np.float32)
    with pytest.raises(ParameterError, match="gain_per"):
        find_spots(img, gain_per="pixel")
    with pytest.raises(ParameterError, match="hot_pixels"):
        find_spots(img, hot_pixels="yes")


def test_peakfinder8_matches_reference(synth):
    img, _ = synth((160, 150), n_spots=25, rng=8)
    bad = np.zeros(img.shape, bool)
    bad[:, 70:72] = True
    p = Peakfinder8Params()
    r = np.hypot(np.arange(150) + 0.5 - 75, (np.arange(160) + 0.5 - 80)[:, None]).astype(np.float32)
    rb = radius_bins(r, p)
    cols, _ = peakfinder8_panels([(img, bad, rb)], p)
    fast = cols[0]
    ref = peakfinder8_reference(img, bad, rb, p)
    assert len(fast["fs"]) == len(ref["fs"]) > 15
    o1 = np.lexsort((fast["fs"], fast["ss"]))
    o2 = np.lexsort((ref["fs"], ref["ss"]))
    for key in ("n_pixels", "fs", "ss", "intensity", "background", "snr", "max_pixel"):
        np.testing.assert_allclose(fast[key][o1], ref[key][o2], rtol=1e-3, atol=1e-2, err_msg=key)


def test_radial_stats_reject_outliers():
    rng = np.random.default_rng(9)
    img = rng.normal(100, 5, (100, 100)).astype(np.float32)
    img[::10, ::10] = 5000  # bright outliers must not inflate the ring statistics
    rb = np.zeros(img.shape, np.int32)
    mean, sig, thr, cnt = _kernels.radial_stats(img, np.zeros(img.shape, bool), rb, 1, 5, 5.0, 0.0)
    assert abs(mean[0] - 100) < 0.5 and abs(sig[0] - 5) < 0.3
    m2, s2, t2 = radial_stats_reference(img, np.zeros(img.shape, bool), rb, 1, nsig=5.0)
    np.testing.assert_allclose([mean[0], sig[0], thr[0]], [m2[0], s2[0], t2[0]], rtol=1e-5)


@pytest.mark.parametrize("algorithm", ALGS)
def test_mask_hides_spots(synth, algorithm):
    img, pos = synth((128, 128), n_spots=8, rng=10)
    mask = np.zeros(img.shape, bool)
    fs, ss = pos[0]
    mask[int(ss) - 4:int(ss) + 5, int(fs) - 4:int(fs) + 5] = True
    t_all = find_spots(img, algorithm=algorithm)
    t = find_spots(img, mask=mask, algorithm=algorithm)
    assert len(t) == len(t_all) - 1
    assert np.hypot(t["fs"] - fs, t["ss"] - ss).min() > 3


@pytest.mark.parametrize("algorithm", ALGS)
def test_multipanel_3d_no_spot_crosses_panels(synth, algorithm):
    img, pos = synth((128, 128), n_spots=10, rng=11)
    # a spot exactly on the boundary between two slabs
    img[63:65, 40:42] += 300
    data = np.stack([img[:64], img[64:]])
    t = find_spots(data, algorithm=algorithm)
    assert set(np.unique(t["panel"])) <= {0, 1}
    assert np.all((t["ss"] >= 0) & (t["ss"] <= 64))
    # assembled coordinates stack the slabs vertically
    np.testing.assert_allclose(t["y"], t["ss"] + 64 * t["panel"])
    np.testing.assert_allclose(t["x"], t["fs"])
    # the planted spots away from the seam are all found, on both panels
    tm, _ = matcher_xy(t, pos)
    assert tm >= len(pos) - 1


def matcher_xy(t, pos):
    d = np.hypot(t["x"][:, None] - pos[None, :, 0], t["y"][:, None] - pos[None, :, 1])
    return int((d.min(axis=0) <= 2).sum()) if len(t) else 0, None


def test_geometry_panels_and_d_spacing(synth):
    img, pos = synth((100, 200), n_spots=12, rng=12)
    # two panels side by side in one 2-D array; panel 1 is shifted 10 px right in the lab
    p0 = Panel("a", 0, 99, 0, 99, corner_x=-100, corner_y=-50, res=1 / 100e-6, clen=0.1)
    p1 = Panel("b", 100, 199, 0, 99, corner_x=10, corner_y=-50, res=1 / 100e-6, clen=0.1)
    geom = DetectorGeometry([p0, p1])
    fr = Frame(data=img, geometry=geom, wavelength=1.0)
    t = find_spots(fr)
    assert len(t) >= 11
    right = t["panel"] == 1
    np.testing.assert_array_less(99.9, t["fs"][right])
    # assembled x of panel-1 spots is shifted by the 10 px gap
    gx, gy = geom.assembled_coords(1, t["fs"][right], t["ss"][right])
    np.testing.assert_allclose(t["x"][right], gx)
    np.testing.assert_allclose(t["x"][right] - t["x"][right].min(), t["fs"][right] - t["fs"][right].min())
    # d from first principles for one spot
    k = int(np.argmax(right))
    fs, ss = t["fs"][k], t["ss"][k]
    lx = (10 + (fs - 100)) * 100e-6
    ly = (-50 + ss) * 100e-6
    d = 1.0 / (2 * np.sin(np.arctan2(np.hypot(lx, ly), 0.1) / 2))
    assert abs(t["d"][k] - d) < 1e-4


def test_monolithic_d_and_resolution_filters(synth):
    img, _ = synth((200, 200), n_spots=30, rng=13)
    fr = Frame(data=img, pixel_size=172e-6, distance=0.2, wavelength=1.0, beam_center=(100, 100))
    t = find_spots(fr)
    assert np.all(np.isfinite(t["d"]))
    r = np.hypot(t["x"] - 100, t["y"] - 100) * 172e-6
    np.testing.assert_allclose(t["d"], 1.0 / (2 * np.sin(np.arctan(r / 0.2) / 2)), rtol=1e-5)
    cut = float(np.median(t["d"]))
    hi = find_spots(fr, d_min=cut)
    assert 0 < len(hi) < len(t) and np.all(hi["d"] >= cut)
    lo = find_spots(fr, d_max=cut)
    assert len(lo) + len(hi) >= len(t)


def test_ice_ring_filter_removes_ring_spots():
    rng = np.random.default_rng(14)
    img = rng.poisson(2.0, (400, 400)).astype(np.float32)
    wl, dist, px = 1.0, 0.1, 172e-6
    d_ice = 3.669
    r_ice = np.tan(2 * np.arcsin(wl / (2 * d_ice))) * dist / px
    for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        x, y = 200 + r_ice * np.cos(ang), 200 + r_ice * np.sin(ang)
        img[int(y):int(y) + 2, int(x):int(x) + 2] += 100
    for x, y in [(230, 210), (150, 160)]:  # off-ring spots, d far from ice
        img[y:y + 2, x:x + 2] += 100
    fr = Frame(data=img, pixel_size=px, distance=dist, wavelength=wl, beam_center=(200, 200))
    t = find_spots(fr)
    t2 = find_spots(fr, ice_rings=True)
    assert len(t) == 14
    assert len(t2) == 2


def test_resolution_filter_without_metadata_is_a_clear_error(synth):
    img, _ = synth((64, 64), n_spots=3, rng=15)
    with pytest.raises(ParameterError, match="wavelength"):
        find_spots(img, d_min=2.0)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("algorithm", ALGS)
def test_bad_frames_give_defined_results(algorithm):
    z = np.zeros((50, 50), np.float32)
    assert len(find_spots(z, algorithm=algorithm)) == 0                       # constant
    assert len(find_spots(z + 7, algorithm=algorithm)) == 0
    assert len(find_spots(z, mask=np.ones_like(z, bool), algorithm=algorithm)) == 0  # all masked
    assert len(find_spots(np.full((50, 50), np.nan, np.float32), algorithm=algorithm)) == 0
    assert len(find_spots(np.zeros((2, 2), np.float32), algorithm=algorithm)) == 0  # < kernel
    assert len(find_spots(np.zeros((1, 0), np.float32), algorithm=algorithm)) == 0
    neg = np.random.default_rng(0).normal(-5, 1, (60, 60)).astype(np.float32)
    assert len(find_spots(neg, algorithm=algorithm)) <= 1


@pytest.mark.parametrize("algorithm", ALGS)
def test_nan_and_inf_pixels_are_ignored(synth, algorithm):
    img, pos = synth((128, 128), n_spots=8, rng=16)
    ref = find_spots(img, algorithm=algorithm)
    img2 = img.copy()
    img2[5, 5] = np.nan
    img2[100, 7] = np.inf
    img2[7, 100] = -np.inf
    t = find_spots(img2, algorithm=algorithm)
    assert len(t) == len(ref)
    assert np.all(np.isfinite(t["intensity"]))


def test_bad_arguments_raise_named_errors():
    img = np.zeros((20, 20), np.float32)
    with pytest.raises(ParameterError, match="algorithm"):
        find_spots(img, algorithm="magic")
    with pytest.raises(ParameterError, match="sigma_strong"):
        find_spots(img, sigma_strong=-1)
    with pytest.raises(ParameterError, match="kernel_size"):
        find_spots(img, kernel_size=0)
    with pytest.raises(ParameterError, match="min_snr"):
        find_spots(img, algorithm="peakfinder8", min_snr=float("nan"))
    with pytest.raises(ParameterError, match="unknown parameter"):
        find_spots(img, local_bg_radius=3)  # a peakfinder8 knob given to dispersion
    with pytest.raises(ParameterError, match="gain"):
        find_spots(img, gain=0)
    with pytest.raises(ParameterError, match="mask shape"):
        find_spots(img, mask=np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="2-D"):
        find_spots(np.zeros(10, np.float32))


def test_integer_input_and_frame_mask_combined(synth):
    img, pos = synth((96, 96), n_spots=5, rng=17)
    t_int = find_spots(img.astype(np.int32))
    assert len(t_int) == 5
    fmask = np.zeros(img.shape, bool)
    fmask[:48] = True
    fr = Frame(data=img, mask=fmask)
    t = find_spots(fr)
    assert np.all(t["ss"] >= 48)
    assert isinstance(t, SpotTable)


# --- fast paths of the speed work: each must give exactly what the general path gives --------
def test_typical_level_kernel_equals_numpy_median():
    from xtalscreen.spots.dispersion import _typical_level

    rng = np.random.default_rng(31)
    for shape in [(100, 90), (97, 161), (33, 17), (1, 1)]:
        img = (rng.normal(0, 1, shape) * 7.3 + 1000.5).astype(np.float32)
        img.flat[:: 5] = np.nan
        img.flat[1:: 7] = np.inf
        bad = rng.random(shape) < 0.2
        d = img[::32, ::16]
        v = d[~bad[::32, ::16] & np.isfinite(d)]
        want = float(np.floor(np.median(v))) if v.size else 0.0
        assert _typical_level(img, bad) == want
    assert _typical_level(np.full((40, 40), np.nan, np.float32), np.zeros((40, 40), bool)) == 0.0
    # an even count: the mean of the two middle values
    img = np.zeros((64, 16), np.float32)
    img[0, 0], img[32, 0] = 3.0, 6.0
    assert _typical_level(img, np.zeros(img.shape, bool)) == 4.0


@pytest.mark.parametrize("w", [77, 64, 129])
def test_kernel_without_mask_reads_equals_masked_path(w):
    # has_bad=False (an all-False mask promised, never read) and widths that are not a
    # multiple of the 8-byte flag words give the same candidates as the general path
    rng = np.random.default_rng(w)
    img = rng.poisson(3.0, (150, w)).astype(np.float32)
    img[20:23, w - 3:w] += 90          # a spot on the last columns (padding of the flag words)
    img[60:62, 0:2] += 90
    img[100, 5] = np.nan
    img[110, 7] = -np.inf
    bad = np.zeros(img.shape, bool)
    g = np.full(w, 1.0)
    a = _kernels.dispersion_candidates(img, bad, 3, 3, 6.0, 3.0, 0.0, 2, 3.0, g, 32, True)
    b = _kernels.dispersion_candidates(img, bad, 3, 3, 6.0, 3.0, 0.0, 2, 3.0, g, 32, False)
    n = a[5]
    assert n == b[5] and n >= 8 and a[6] == b[6]
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x[:n], y[:n])
    np.testing.assert_array_equal(a[4], b[4])
    strong = np.zeros(img.shape, bool)
    strong[a[0][:n], a[1][:n]] = True
    ref = dispersion_reference(img, bad, DispersionParams(), gain=1.0)
    np.testing.assert_array_equal(strong, ref["strong"])
    assert strong[20:23, w - 3:w].any()
    # the public entry point: no mask (fast path) == an explicit all-False mask
    t0 = find_spots(img, gain=1.0)
    t1 = find_spots(img, gain=1.0, mask=np.zeros(img.shape, bool))
    assert len(t0) == len(t1) >= 2
    for name in t0.records.dtype.names:
        np.testing.assert_array_equal(t0.records[name], t1.records[name])


def test_column_gain_skip_of_sure_fallbacks_changes_nothing():
    # the kernel's shortcut (no median for columns surely below the cut) against the plain
    # medians with the same cut applied afterwards
    from xtalscreen.spots.dispersion import GAIN_MAX_STRIPS, GAIN_STRIP, column_gains

    rng = np.random.default_rng(41)
    h, w = 300, 120
    sd = np.where(np.arange(w) % 3 == 0, 9.0, 4.0)
    img = (30.0 + rng.normal(0.0, 1.0, (h, w)) * sd).astype(np.float32)
    bad = rng.random(img.shape) < 0.02
    fb = estimate_gain([(img, bad)])
    raw = _kernels.column_gain(img, bad, GAIN_STRIP, fb, 4, GAIN_MAX_STRIPS)
    n_all = h // GAIN_STRIP
    n = -(-n_all // max(1, n_all // GAIN_MAX_STRIPS))
    scatter = 1.25 * np.sqrt(2.0 / (GAIN_STRIP - 1)) / np.sqrt(n)
    want = np.minimum(np.where(raw / fb - 1.0 < 3.0 * scatter, fb, raw), 4 * fb)
    got = column_gains(img, bad, fb)
    np.testing.assert_array_equal(got, want)
    assert (got > fb).sum() >= 30 and (got == fb).sum() >= 60


# --- the tiled kernel (wide panels, large frames): exactly the untiled kernel's result ---------
def _tiled_frame(h, w, tile, rng):
    """Poisson frame with spots, masks and non-finite pixels placed across the tile edges."""
    rng = np.random.default_rng(rng)
    img = rng.poisson(4.0, (h, w)).astype(np.float32)
    bad = rng.random(img.shape) < 0.02
    edges = list(range(tile, w, tile))
    for t, e in enumerate(edges):
        y = 8 + (17 * t) % (h - 20)
        img[y:y + 3, e - 2:e + 2] += 120        # a spot straddling the tile edge
        img[y + 8:y + 10, e - 1:e + 1] += 90      # a 2x2 one centred on it
        bad[y + 4, e - 3:e + 3] = True           # a masked run crossing the edge
        img[(y + 12) % h, e] = np.nan            # a NaN on the edge column
        img[(y + 13) % h, e - 1] = np.inf
    bad[h // 2:h // 2 + 2, :] = True             # masked rows across every tile
    bad[:, edges[0] - 1] = True                  # a masked column at the first edge
    img[20:23, w - 3:w] += 100                   # a spot on the last (partial) tile's edge
    return img, bad, edges


def _candidates(img, bad, k, shift=0.0, has_bad=True, tile=None):
    """The untiled kernel (tile None) or the tiled one with ``tile`` columns (0: its default)."""
    g = np.full(img.shape[1], 1.0)
    args = (img, bad, k, k, 6.0, 3.0, 0.0, 2, shift, g, 32, has_bad)
    if tile is None:
        return _kernels.dispersion_candidates(*args)
    if tile == 0:
        return _kernels.dispersion_candidates_tiled(*args)
    return _kernels.dispersion_candidates_tiled(*args, tile)


def _same_candidates(a, b):
    n = a[5]
    assert n == b[5] and a[6] == b[6]
    for x, y in zip(a[:3], b[:3]):                # rows, cols, provisional labels
        np.testing.assert_array_equal(x[:n], y[:n])
    np.testing.assert_array_equal(a[3][:a[6] + 1], b[3][:b[6] + 1])   # union-find parents
    np.testing.assert_array_equal(a[4], b[4])     # row index


@pytest.mark.parametrize("tile", [8, 24, 64])
@pytest.mark.parametrize("k", [3, 2])
def test_tiled_kernel_equals_untiled_and_reference(tile, k):
    # 203 columns: not a multiple of the tile nor of 8; 150 rows: several sum refreshes
    img, bad, edges = _tiled_frame(150, 203, tile, rng=100 + tile + k)
    whole = _candidates(img, bad, k)               # the untiled kernel
    tiled = _candidates(img, bad, k, tile=tile)
    _same_candidates(tiled, whole)
    _same_candidates(_candidates(img, bad, k, tile=1024), whole)   # one tile
    n = tiled[5]
    strong = np.zeros(img.shape, bool)
    strong[tiled[0][:n], tiled[1][:n]] = True
    ref = dispersion_reference(img, bad, DispersionParams(kernel_size=k), gain=1.0)
    np.testing.assert_array_equal(strong, ref["strong"])
    # the planted spots across the edges are found, each as one 4-connected component
    from scipy import ndimage as ndi
    lab_ref, n_ref = ndi.label(strong)
    roots = {_kernels._find(tiled[3], int(x)) for x in tiled[2][:n]}
    assert len(roots) == n_ref
    straddling = 0
    for e in edges:
        left = set(np.unique(lab_ref[:, e - 1])) - {0}
        straddling += len(left & set(np.unique(lab_ref[:, e])))
    assert straddling >= len(edges)


@pytest.mark.parametrize("tile", [16, 40])
def test_tiled_kernel_without_mask_reads_and_with_pedestal(tile):
    # has_bad=False (mask never read) and a large pedestal taken out by the shift: tiles
    # change nothing there either
    img, _, _ = _tiled_frame(90, 131, tile, rng=7 + tile)
    img = img + np.float32(1000.0)
    none = np.zeros(img.shape, bool)
    for has_bad in (True, False):
        _same_candidates(_candidates(img, none, 3, 1000.0, has_bad, tile),
                         _candidates(img, none, 3, 1000.0, has_bad))
    ref = dispersion_reference(img, none, DispersionParams(), gain=1.0)
    t = _candidates(img, none, 3, 1000.0, False, tile)
    strong = np.zeros(img.shape, bool)
    strong[t[0][:t[5]], t[1][:t[5]]] = True
    np.testing.assert_array_equal(strong, ref["strong"])


def test_default_tiles_on_a_wide_panel_match_reference():
    # wider than UNTILED_MAX_WIDTH (so dispersion_panel takes the tiled kernel) and than two
    # default tiles (the last partial), spots and masks on the tile edges; the public path
    # (per-spot statistics included) against the numpy/scipy reference
    tile = _kernels.DISPERSION_TILE
    w = max(2 * tile, _kernels.UNTILED_MAX_WIDTH) + 77
    img, bad, edges = _tiled_frame(48, w, tile, rng=5)
    assert len(edges) >= 2
    _same_candidates(_candidates(img, bad, 3, tile=0), _candidates(img, bad, 3))
    p = DispersionParams(min_snr=0.0)
    fast = dispersion_panel(img, bad, p, 1.0)
    ref = dispersion_reference(img, bad, p, gain=1.0)
    assert len(fast["fs"]) == len(ref["fs"]) >= 2 * len(edges)
    o1 = np.lexsort((fast["fs"], fast["ss"]))
    o2 = np.lexsort((ref["fs"], ref["ss"]))
    for key in ("n_pixels", "fs", "ss", "intensity", "background", "snr", "max_pixel"):
        np.testing.assert_allclose(fast[key][o1], ref[key][o2], rtol=1e-4, atol=1e-3, err_msg=key)
    # a spot straddling each edge is reported once, centred near the edge
    for e in edges:
        near = np.abs(fast["fs"] - e) < 1.5
        assert near.sum() >= 1


@pytest.mark.parametrize("k", [3, 2])
def test_tiled_kernel_counts_a_lone_bad_pixel_of_the_entering_row(k):
    # rows with a single bad pixel, far apart: while such a row enters the window it is the
    # window's only bad pixel, and only the tile-by-tile count of the entering row knows it.
    # With min_local = the full window, a pixel whose window holds it must not be tested.
    rng = np.random.default_rng(61 + k)
    h, w, tile = 160, 150, 16
    full = (2 * k + 1) ** 2
    img = rng.poisson(4.0, (h, w)).astype(np.float32)
    bad = np.zeros(img.shape, bool)
    spots = []
    for t, r in enumerate(range(12, h - 12, 2 * k + 6)):
        c = (5 + 23 * t) % (w - 2 * k) + k          # inside tiles and on their edges
        img[r - k, c] += 80                         # bright pixels whose windows reach it
        img[r - k, c + 1] += 60
        if t % 2:
            bad[r, c] = True
        else:
            img[r, c] = np.nan
        spots.append((r - k, c))
    p = DispersionParams(kernel_size=k, min_local=full)
    ref = dispersion_reference(img, bad, p, gain=1.0)
    g = np.full(w, 1.0)
    args = (img, bad, k, k, 6.0, 3.0, 0.0, full, 0.0, g, 32, True)
    for out in (_kernels.dispersion_candidates_tiled(*args, tile),
                _kernels.dispersion_candidates_tiled(*args, 4096),
                _kernels.dispersion_candidates(*args)):
        strong = np.zeros(img.shape, bool)
        strong[out[0][:out[5]], out[1][:out[5]]] = True
        np.testing.assert_array_equal(strong, ref["strong"])
    assert not any(ref["strong"][s] for s in spots)
    # the same frame without the bad pixels: those pixels are strong (the test can fail)
    clean = img.copy()
    clean[~np.isfinite(clean)] = 4.0
    ref_clean = dispersion_reference(clean, np.zeros(img.shape, bool), p, gain=1.0)
    assert sum(ref_clean["strong"][s] for s in spots) >= len(spots) // 2


def test_kernel_choice_changes_no_spot(synth):
    # dispersion_panel picks the tiled kernel for frames larger than the cache: the same spots,
    # to the last bit, with a mask and NaN pixels
    img, _ = synth((300, 260), n_spots=20, rng=71)
    img[50, 60] = np.nan
    bad = np.zeros(img.shape, bool)
    bad[100:103, :] = True
    bad[:, 129] = True
    p = DispersionParams()
    g = np.linspace(1.0, 1.3, img.shape[1])
    small = dispersion_panel(img, bad, p, g)
    large = dispersion_panel(img, bad, p, g, frame_pixels=_kernels.UNTILED_MAX_FRAME_PIXELS + 1)
    assert len(small["fs"]) >= 15
    for key in small:
        np.testing.assert_array_equal(small[key], large[key], err_msg=key)
