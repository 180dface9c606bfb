"""The extended dispersion finder (``algorithm="dispersion_extended"``): faint spots the
dispersion finder misses, false alarms on pure noise, masks / panels / resolution / ice rings /
hot pixels, estimated gain, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.cli import main
from xtalscreen.errors import ParameterError
from xtalscreen.io import DetectorGeometry, Frame, Panel
from xtalscreen.spots import find_spots, make_params
from xtalscreen.spots.extended import ExtendedParams, filter_weights

ALG = "dispersion_extended"


def _faint(shape=(512, 512), *, rng=1, photons=45.0, background=2.0, n_spots=60, sigma=1.0,
           synth=None):
    return synth(shape, n_spots=n_spots, photons=photons, background=background, sigma=sigma,
                 rng=rng)


# --------------------------------------------------------------------- what it is for
def test_finds_faint_spots_the_dispersion_finder_misses(synth, matcher):
    # 45 photons over a σ = 1 px profile on 2 photons/px: integrated SNR ~ 6, peak pixel ~ 2.5σ
    img, pos = _faint(synth=synth)
    disp = find_spots(img)
    ext = find_spots(img, algorithm=ALG)
    tm_d, _ = matcher(np.c_[disp["fs"], disp["ss"]], pos)
    tm_e, fm_e = matcher(np.c_[ext["fs"], ext["ss"]], pos)
    assert tm_d / len(pos) < 0.6, tm_d           # the per-pixel test misses most of them
    assert tm_e / len(pos) >= 0.85, tm_e
    assert tm_e >= tm_d + 15
    assert fm_e == len(ext)                      # every reported spot is a planted one
    d = np.hypot(ext["fs"][:, None] - pos[None, :, 0], ext["ss"][:, None] - pos[None, :, 1])
    assert np.median(d.min(axis=1)) < 0.6        # centroids near the truth


def test_bright_spots_are_found_as_the_dispersion_finder_finds_them(synth, matcher):
    img, pos = synth((256, 256), n_spots=25, rng=1)
    t = find_spots(img, algorithm=ALG)
    tm, fm = matcher(np.c_[t["fs"], t["ss"]], pos)
    assert tm == len(pos) and fm == len(t)
    d = np.hypot(t["fs"][:, None] - pos[None, :, 0], t["ss"][:, None] - pos[None, :, 1]).min(axis=1)
    assert np.median(d) < 0.3


@pytest.mark.parametrize("background,gain", [(0.05, 1.0), (2.0, 1.0), (100.0, 1.0), (3.0, 8.0)])
def test_pure_noise_has_at_most_one_false_spot_per_megapixel(background, gain):
    # the false-alarm bound: 1 false spot in 50 Mpx of Poisson noise was measured with the
    # defaults (sigma_peak = 5.4); 2 Mpx here, at most 2 allowed
    rng = np.random.default_rng(int(background * 10) + int(gain))
    n = 0
    for _ in range(2):
        img = (rng.poisson(background, (1024, 1024)) * gain).astype(np.float32)
        n += len(find_spots(img, algorithm=ALG))
    assert n <= 2, n


def test_read_noise_frame_without_photons_has_no_spots():
    # dark-subtracted detector: zero mean, Gaussian read noise (CSPAD-like), gain estimated
    img = np.random.default_rng(4).normal(0.0, 7.0, (1024, 1024)).astype(np.float32)
    assert len(find_spots(img, algorithm=ALG)) <= 2


def test_estimated_gain_makes_detector_units_irrelevant(synth, matcher):
    img, pos = _faint(synth=synth, rng=2)
    t1 = find_spots(img, algorithm=ALG)
    t8 = find_spots(img * np.float32(8.0), algorithm=ALG)
    assert abs(len(t1) - len(t8)) <= 2
    m1 = matcher(np.c_[t1["fs"], t1["ss"]], pos)[0]
    m8 = matcher(np.c_[t8["fs"], t8["ss"]], pos)[0]
    assert m8 >= m1 - 2 and m8 >= 0.75 * len(pos), (m1, m8)
    # a given gain is used as it is: calling 1-photon steps 8 photons loses the faint spots
    t_wrong = find_spots(img, algorithm=ALG, gain=8.0)
    assert len(t_wrong) < 0.5 * len(t1)


# --------------------------------------------------------------------- masks, panels, d
def test_mask_hides_spots_and_masked_pixels_are_never_used(synth):
    img, pos = _faint(synth=synth, rng=3)
    mask = np.zeros(img.shape, bool)
    mask[:, :256] = True
    t = find_spots(img, algorithm=ALG, mask=mask)
    assert len(t) > 10 and np.all(t["fs"] > 256)
    # garbage under the mask changes nothing
    img2 = img.copy()
    img2[mask] = 1e6
    t2 = find_spots(img2, algorithm=ALG, mask=mask)
    np.testing.assert_allclose(np.sort(t2["fs"]), np.sort(t["fs"]))


def test_nan_pixels_are_ignored(synth, matcher):
    img, pos = _faint(synth=synth, rng=4)
    ref = find_spots(img, algorithm=ALG)
    img[100:110, :] = np.nan
    t = find_spots(img, algorithm=ALG)
    assert np.all(np.isfinite(t["snr"]))
    assert abs(len(t) - len(ref)) <= 4


def test_3d_panels_no_spot_crosses_a_panel_edge(synth):
    img, _ = _faint((256, 512), synth=synth, rng=5, n_spots=40)
    stack = np.stack([img[:128], img[128:]])          # two slabs; spots near ss=128 are cut
    t = find_spots(stack, algorithm=ALG)
    assert set(np.unique(t["panel"])) == {0, 1}
    assert np.all((t["ss"] >= 0) & (t["ss"] <= 128))
    # y on the stacked image is slab·H + ss
    np.testing.assert_allclose(t["y"], t["ss"] + 128 * t["panel"])


def test_geometry_panels_are_searched_separately(synth):
    img, _ = _faint((100, 200), synth=synth, rng=6, n_spots=16, photons=60.0)
    p0 = Panel("a", 0, 99, 0, 99, corner_x=-100, corner_y=-50, res=1 / 100e-6, clen=0.1)
    p1 = Panel("b", 100, 199, 0, 99, corner_x=10, corner_y=-50, res=1 / 100e-6, clen=0.1)
    fr = Frame(data=img, geometry=DetectorGeometry([p0, p1]), wavelength=1.0)
    t = find_spots(fr, algorithm=ALG)
    assert len(t) >= 10
    right = t["panel"] == 1
    assert np.all(t["fs"][right] >= 100) and np.all(t["fs"][~right] <= 100)
    assert np.all(np.isfinite(t["d"]))


def test_resolution_filters(synth):
    img, _ = _faint((300, 300), synth=synth, rng=7, n_spots=40)
    fr = Frame(data=img, pixel_size=172e-6, distance=0.2, wavelength=1.0, beam_center=(150, 150))
    t = find_spots(fr, algorithm=ALG)
    cut = float(np.median(t["d"]))
    hi = find_spots(fr, algorithm=ALG, d_min=cut)
    assert 0 < len(hi) < len(t) and np.all(hi["d"] >= cut)
    with pytest.raises(ParameterError, match="wavelength"):
        find_spots(img, algorithm=ALG, d_min=2.0)


def test_ice_ring_filter():
    rng = np.random.default_rng(14)
    img = rng.poisson(2.0, (400, 400)).astype(np.float32)
    wl, dist, px = 1.0, 0.1, 172e-6
    r_ice = np.tan(2 * np.arcsin(wl / (2 * 3.669))) * dist / px
    for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        x, y = 200 + r_ice * np.cos(ang), 200 + r_ice * np.sin(ang)
        img[int(y):int(y) + 2, int(x):int(x) + 2] += 100
    for x, y in [(230, 210), (150, 160)]:
        img[y:y + 2, x:x + 2] += 100
    fr = Frame(data=img, pixel_size=px, distance=dist, wavelength=wl, beam_center=(200, 200))
    assert len(find_spots(fr, algorithm=ALG)) == 14
    assert len(find_spots(fr, algorithm=ALG, ice_rings=True)) == 2


def test_hot_pixels_option():
    img = np.random.default_rng(8).poisson(2.0, (256, 256)).astype(np.float32)
    img[200, 50] = 5000.0                               # a single hot pixel
    img[100, 100:102] = 5000.0                          # a hot pair
    img[60:62, 180:182] += 60.0                         # a real 2x2 spot
    # as the dispersion finder: the single pixel is below min_spot_size (its neighbours are
    # judged without it), the pair is a 2-pixel spot unless hot_pixels=True
    t = find_spots(img, algorithm=ALG)
    assert len(t) == 2 and not np.any(np.hypot(t["fs"] - 50.5, t["ss"] - 200.5) < 3)
    t = find_spots(img, algorithm=ALG, hot_pixels=True)
    assert len(t) == 1 and abs(t["fs"][0] - 181) < 1 and abs(t["ss"][0] - 61) < 1


# --------------------------------------------------------------------- bad input, parameters
def test_bad_frames_give_defined_results():
    z = np.zeros((50, 50), np.float32)
    assert len(find_spots(z, algorithm=ALG)) == 0                               # constant
    assert len(find_spots(z + 7, algorithm=ALG)) == 0
    assert len(find_spots(z, mask=np.ones_like(z, bool), algorithm=ALG)) == 0  # all masked
    assert len(find_spots(np.full((50, 50), np.nan, np.float32), algorithm=ALG)) == 0
    assert len(find_spots(np.zeros((2, 2), np.float32), algorithm=ALG)) == 0   # tiny
    assert len(find_spots(np.ones((1, 1), np.float32), algorithm=ALG)) == 0
    assert len(find_spots(np.zeros((1, 0), np.float32), algorithm=ALG)) == 0
    # integer data are accepted as they are
    img = np.random.default_rng(9).poisson(2.0, (64, 64)).astype(np.uint16)
    img[30:32, 30:32] += 200
    assert len(find_spots(img, algorithm=ALG)) == 1


@pytest.mark.parametrize("bad,match", [
    ({"inner_size": 12}, "inner_size"),
    ({"inner_size": 1}, "inner_size"),                 # narrower than the filters
    ({"filter_sigma": 0.0}, "filter_sigma"),
    ({"streak_sigma": -1.0}, "streak_sigma"),
    ({"sigma_peak": float("nan")}, "sigma_peak"),
    ({"min_background": 10**6}, "min_background"),
    ({"exclude_radius": -1}, "exclude_radius"),
    ({"gain": 0.0}, "gain"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_parameters_name_the_argument(bad, match):
    with pytest.raises(ParameterError, match=match):
        find_spots(np.zeros((32, 32), np.float32), algorithm=ALG, **bad)


def test_params_and_filter_weights():
    p = make_params(ALG, sigma_peak=6.0)
    assert isinstance(p, ExtendedParams) and p.sigma_peak == 6.0 and p.kernel_size == 3
    w = filter_weights(0.8)
    assert w.shape == (5,) and w[2] == 1.0 and np.allclose(w, w[::-1])


def test_cli_accepts_the_algorithm(tmp_path, synth):
    img, _ = _faint((256, 256), synth=synth, rng=10, n_spots=20)
    np.save(tmp_path / "f.npy", img)
    rc = main(["spots", str(tmp_path / "f.npy"), "--algorithm", ALG, "-p", "sigma_peak=5.5",
               "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    lines = (tmp_path / "o" / "spots.csv").read_text().splitlines()
    assert len(lines) > 10


# --------------------------------------------------------------------- simulated frames
def match_spots(a, b, tol=2.0):
    """For every spot of ``a``, whether a spot of ``b`` on the same panel is within ``tol`` px."""
    out = np.zeros(len(a), bool)
    for p in np.unique(a["panel"]) if len(a) and len(b) else []:
        ia = np.where(a["panel"] == p)[0]
        ib = np.where(b["panel"] == p)[0]
        if len(ib):
            d = np.hypot(a["fs"][ia][:, None] - b["fs"][ib][None],
                         a["ss"][ia][:, None] - b["ss"][ib][None])
            out[ia] = d.min(axis=1) <= tol
    return out


def test_recall_and_precision_on_simulated_cspad_frames():
    simulate = pytest.importorskip("xtalscreen.simulate")
    cfg = simulate.get_preset("cspad")
    tpv = nv = tpf = nf = tpd = 0
    for cls, seed in [("strong", 0), ("good", 0), ("good", 1)]:
        frame, truth = simulate.simulate_frame(cfg, rng=seed, frame_class=cls)
        t = find_spots(frame, algorithm=ALG)
        sp = truth.spots
        vis = sp[sp["visible"]]
        tpv += match_spots(vis, t.records).sum()
        nv += len(vis)
        tpf += match_spots(t.records, sp).sum()
        nf += len(t)
        tpd += match_spots(vis, find_spots(frame).records).sum()
    assert tpf / nf >= 0.98, (tpf, nf)
    assert tpv / nv >= 0.9, (tpv, nv)
    assert tpv >= tpd + 0.04 * nv, (tpv, tpd, nv)    # clearly above the dispersion finder
