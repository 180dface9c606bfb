"""One simulated frame: choose the class, draw the physics that realises it, render, count.

Pipeline of :func:`simulate_frame`:

1. class: drawn from ``labels.class_probs`` (or given);
2. beam: SASE fluence (Gaussian, RMS ``fluence_rms`` x mean, clipped at 0; ``blank`` frames
   get 0 and other classes a pulse of at least 2 % of the mean), wavelength jitter, beam-centre
   jitter; sample: water/carrier thickness, ice;
3. crystals (weak/good/strong): number of lattices, orientation (uniform), mosaic spread and
   explicit domains, block size, crystal size and in-beam fraction; reflections near the Ewald
   sphere with their partiality, direction and panel position; structure factors (Wilson or
   a model); photons per spot ``Φ r_e² P |F|² λ² (V / V_cell²) ρ``;
4. the crystal volume scale is adjusted (when needed) so that the number of visible spots
   falls in the requested class's range, never beyond the config's largest crystal
   (``min(size, beam)² x size x in-beam fraction`` at their maxima; a class out of reach of
   every drawn lattice is realised as far as that allows and recorded as what it became);
   labels are then computed from the final values;
5. render: background (radial tables x polarisation x solid angle, shadows, jet streak) plus
   splatted spots (PSF core in the spot shape, fibre tail as a blur), then the detector chain.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xtalscreen.errors import ParameterError
from xtalscreen.io.frame import Frame
from xtalscreen.simulate import background as bgm
from xtalscreen.simulate import crystal as xtal
from xtalscreen.simulate import detector as detm
from xtalscreen.simulate import kernels
from xtalscreen.simulate.config import DIFFRANET_CLASSES, SimulationConfig
from xtalscreen.simulate.labels import (FOOTPRINT_FRACTION, SPOT_DTYPE, Truth, diffranet_class, draw_range,
                                        ke_class, noise_terms, snr_at, threshold_scale)

_CRYSTAL_CLASSES = ("weak", "good", "strong")
_MIN_RENDER_PHOTONS = 1e-3


def _draw_class(cfg: SimulationConfig, rng) -> str:
    names = list(cfg.labels.class_probs)
    p = np.array([float(cfg.labels.class_probs[n]) for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def draw_fluence(beam, cls: str, rng) -> float:
    """Photons in this pulse: SASE statistics, Gaussian with RMS ``fluence_rms`` x mean, clipped
    at 0. A ``blank`` frame is a pulse that delivered nothing (0); other classes need X-rays, so
    their pulse is drawn from the same distribution conditioned on at least 2 % of the mean."""
    if cls == "blank" or beam.fluence <= 0:
        return 0.0
    for _ in range(100):
        f = beam.fluence * (1.0 + beam.fluence_rms * rng.standard_normal())
        if f >= 0.02 * beam.fluence:
            return float(f)
    return 0.02 * beam.fluence


def _model_sf(cfg, ctx):
    """Structure factors of ``crystal.model`` to the detector's corner resolution (cached)."""
    lam_min = cfg.beam.wavelength * (1.0 - 4.0 * cfg.beam.bandwidth)
    d_min = lam_min / (2.0 * math.sin(ctx.two_theta_max / 2.0))
    return xtal.model_structure_factors(str(cfg.crystal.model), max(0.5, math.floor(d_min * 0.95 * 20) / 20))


def _effective_crystal(cfg, ctx):
    """The crystal settings, with the cell and space group of ``crystal.model`` when given."""
    cr = cfg.crystal
    if cr.model is None:
        return cr
    sf = _model_sf(cfg, ctx)
    return dataclasses.replace(cr, cell=tuple(sf.cell), space_group=sf.space_group)


def _reflections(cfg, ctx, rng, lam, U, *, mosaic_deg, block_um, scale_photons, jx, jy):
    """Reflections of one lattice that reach a panel: dict of arrays (photons at unit scale)."""
    cr, beam = _effective_crystal(cfg, ctx), cfg.beam
    cell = cr.cell
    B = xtal.reciprocal_basis(cell)
    A = U @ B
    lengths = np.array(cell[:3], dtype=float)
    s_max = 2.0 * math.sin(ctx.two_theta_max / 2.0) / lam
    omega_max = math.radians(mosaic_deg) / 2.0
    sig_size = 0.38 / (block_um * 1e4)
    div = beam.divergence_mrad * 1e-3
    e0 = 5.0 * sig_size
    e1 = omega_max + 5.0 * div
    e2 = 5.0 * 0.5 * lam * beam.bandwidth
    # solve along the shortest reciprocal axis (longest real axis)
    order = np.argsort(-lengths)[::-1]  # ascending lengths; last = longest
    perm = np.array([order[0], order[1], order[2]])
    Ap = np.ascontiguousarray(A[:, perm])
    cap = 1 << 14
    while True:
        buf = np.empty((cap, 3), dtype=np.int64)
        n = kernels.enumerate_reflections(Ap, lengths[perm], lam, s_max, e0, e1, e2, buf)
        if n < cap:
            break
        cap *= 4
    hkl = np.empty((n, 3), dtype=np.int64)
    hkl[:, perm] = buf[:n]
    if cr.space_group is not None and n:
        keep = ~xtal.systematically_absent(hkl, cr.space_group)
        hkl = hkl[keep]
        n = len(hkl)
    domains = np.ascontiguousarray(xtal.mosaic_rotations(cr.n_domains, mosaic_deg, rng).T)
    rho = np.empty(n)
    dirs = np.empty((n, 3))
    s = np.empty(n)
    sig2 = np.empty(n)
    kernels.rocking(hkl, A, lam, sig_size, beam.bandwidth, div, omega_max, domains, rho, dirs, s, sig2)
    # project onto the panels (panels shifted by the beam jitter)
    corners = ctx.corners - np.array([jx, jy, 0.0])
    panel = np.empty(n, dtype=np.int64)
    fs = np.empty(n)
    ss = np.empty(n)
    pos = np.empty((n, 3))
    kernels.project(dirs, corners, ctx.fvec, ctx.svec, ctx.sizes, panel, fs, ss, pos)
    on = panel >= 0
    hkl, rho, dirs, s, sig2, panel, fs, ss, pos = (a[on] for a in (hkl, rho, dirs, s, sig2, panel, fs, ss, pos))
    if cr.model is not None:
        f2 = _model_sf(cfg, ctx).intensities(hkl, cr.k_sol, cr.b_sol)
    else:
        f2 = xtal.wilson_intensities(hkl, s, cr)
    pol = 1.0 - (beam.polarization * dirs[:, 0] ** 2 + (1 - beam.polarization) * dirs[:, 1] ** 2)
    photons = scale_photons * pol * f2 * lam * lam * rho
    two_theta = np.arccos(np.clip(dirs[:, 2], -1, 1))
    sbw = 0.5 * s * s * lam * beam.bandwidth
    bw_eff = beam.bandwidth * np.sqrt(sbw * sbw / np.maximum(sig2 + (omega_max * s) ** 2 / 5.0, 1e-30))
    cff, cfs, css = detm.spot_covariance(
        pos, two_theta, panel, ctx, lam=lam, bw_frac=bw_eff, sig_size=sig_size, divergence=div,
        omega_max=omega_max, beam_size_m=beam.beam_size_um * 1e-6,
        psf_sigma_px=(cfg.detector.psf_sigma_px if cfg.detector.psf != "none" else 0.0))
    return dict(hkl=hkl, photons=photons, s=s, panel=panel, fs=fs, ss=ss, pos=pos, cff=cff, cfs=cfs, css=css)


def _point_background(ctx, pos_nominal, lam, table, scale, cfg, jx, jy):
    x = np.ascontiguousarray(pos_nominal[:, 0], dtype=np.float32)
    y = np.ascontiguousarray(pos_nominal[:, 1], dtype=np.float32)
    z = np.ascontiguousarray(pos_nominal[:, 2], dtype=np.float32)
    bg = np.empty(len(x), dtype=np.float32)
    t = np.empty(len(x), dtype=np.float32)
    _run_background(ctx, x, y, z, lam, table, scale, cfg, jx, jy, bg, t)
    return bg, t


def _run_background(ctx, x, y, z, lam, table, scale, cfg, jx, jy, out_bg, out_t, jet=None):
    b = cfg.background
    kernels.background(x, y, z, jx, jy, lam, table, bgm.TABLE_DS, scale, cfg.beam.polarization,
                       ctx.pixel_area, b.beamstop_radius_mm * 1e-3, b.beamstop_arm_mm * 1e-3,
                       b.kapton_edge_mm * 1e-3, b.kapton_shadow, b.jet_streak if jet is None else jet,
                       2.0 * ctx.pixel_size, out_bg, out_t)


def simulate_frame(config: SimulationConfig, *, rng=None, frame_class: str | None = None) -> tuple[Frame, Truth]:
    """Simulate one detector frame and its exact ground truth.

    Parameters
    ----------
    config : SimulationConfig
        From :func:`xtalscreen.simulate.get_preset` (edit freely).
    rng : int, numpy.random.Generator or None
        Source of randomness; the same seed gives the same frame, bit for bit.
    frame_class : str, optional
        Force the DiffraNet class (blank, no-crystal, weak, good, strong); default: drawn from
        ``config.labels.class_probs``.

    Returns
    -------
    frame : Frame
        ``data`` float32 of shape (H, W) or (panels, H, W) in detector units (``dtype`` says the
        output type), ``mask`` (gaps, dead and hot pixels), ``wavelength`` (Å, this shot),
        ``distance`` (m), ``pixel_size`` (m), nominal ``beam_center`` (px), ``geometry`` for
        multi-panel detectors, ``format="simulated"``.
    truth : Truth
        Labels, spot table and drawn parameters.

    Examples
    --------
    >>> from xtalscreen.simulate import get_preset, simulate_frame
    >>> frame, truth = simulate_frame(get_preset("diffranet"), rng=0, frame_class="good")
    >>> frame.shape, truth.diffranet_class, truth.ke_class
    ((512, 512), 'good', 'hit')
    """
    cfg = config.validate()
    rng = np.random.default_rng(rng)
    if frame_class is None:
        cls = _draw_class(cfg, rng)
    else:
        if frame_class not in DIFFRANET_CLASSES:
            raise ParameterError(f"frame_class must be one of {', '.join(DIFFRANET_CLASSES)}, got {frame_class!r}")
        cls = frame_class
    det, beam, bgc, lab = cfg.detector, cfg.beam, cfg.background, cfg.labels
    ctx = detm.context(det)
    cr = _effective_crystal(cfg, ctx)

    # ---------------------------------------------------------------- beam and sample
    lam = beam.wavelength * (1.0 + beam.bandwidth * rng.standard_normal())
    fluence = draw_fluence(beam, cls, rng)
    jit = det.beam_center_jitter_px * rng.standard_normal(2)
    jx, jy = jit * ctx.pixel_size
    water_um = rng.uniform(*bgc.water_um)
    ice_um = rng.uniform(*bgc.ice_um) if rng.random() < bgc.ice_prob else 0.0
    beam_area = (beam.beam_size_um * 1e4) ** 2  # Å²
    scale = fluence * bgm.R_E2  # photons per (Å⁻² e²) before polarisation and solid angle
    sg = bgm.s_grid()
    table_nc = bgm.air(sg, bgc.air_path_mm) + bgm.water(sg, water_um)
    if ice_um > 0:
        table_nc = table_nc + bgm.ice(sg, ice_um, max(beam.bandwidth, 0.002))
    params = dict(fluence=float(fluence), wavelength=float(lam), beam_jitter_px=(float(jit[0]), float(jit[1])),
                  beam_center_true=(ctx.beam_center[0] + float(jit[0]), ctx.beam_center[1] + float(jit[1])),
                  water_um=float(water_um), ice_um=float(ice_um), n_crystals=0, cell=tuple(cr.cell))

    # ---------------------------------------------------------------- crystals
    spots = None
    table_diff = np.zeros_like(sg)
    crystal_scale = 1.0
    requested = cls
    if cls in _CRYSTAL_CLASSES and fluence > 0:
        lo, hi = draw_range(cls, lab)
        best, fallback = None, None
        v_max = min(cr.size_um[1], beam.beam_size_um) ** 2 * cr.size_um[1] * cr.in_beam_fraction[1] * 1e12  # Å³
        for attempt in range(6):
            n_cr = 1 + int(rng.choice(len(cr.n_crystals_probs), p=np.asarray(cr.n_crystals_probs) / sum(cr.n_crystals_probs)))
            parts, crystals, atoms_area = [], [], 0.0
            for ic in range(n_cr):
                U = np.asarray(cr.orientation, dtype=float) if cr.orientation is not None else xtal.random_rotation(rng)
                mosaic = rng.uniform(*cr.mosaic_spread_deg)
                block = rng.uniform(*cr.domain_size_um)
                size = math.exp(rng.uniform(math.log(cr.size_um[0]), math.log(cr.size_um[1])))
                frac = rng.uniform(*cr.in_beam_fraction)
                edge = min(size, beam.beam_size_um)
                vol = edge * edge * size * frac * 1e12  # Å³ illuminated
                vcell = xtal.cell_volume(cr.cell)
                sp = fluence / beam_area * bgm.R_E2 * vol / (vcell * vcell)
                r = _reflections(cfg, ctx, rng, lam, U, mosaic_deg=mosaic, block_um=block, scale_photons=sp,
                                 jx=jx, jy=jy)
                r["crystal"] = np.full(len(r["s"]), ic, dtype=np.int16)
                parts.append(r)
                atoms_area += xtal.atoms_per_cell(cr.cell, cr.solvent_fraction) * vol / vcell / beam_area
                crystals.append(dict(orientation=xtal.matrix_to_quaternion(U).round(8).tolist(), mosaic_deg=mosaic,
                                     block_um=block, size_um=size, in_beam_fraction=frac, volume_um3=vol * 1e-12))
            spots = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            table_diff = bgm.diffuse(sg, atoms_area, cr.b_factor, bgc.diffuse)
            pos_nom = spots["pos"] + np.array([jx, jy, 0.0])
            bg_nc, trans = _point_background(ctx, pos_nom, lam, table_nc, scale, cfg, jx, jy)
            bg_d, _ = _point_background(ctx, pos_nom, lam, table_diff, scale, cfg, jx, jy)
            det_c = spots["cff"] * spots["css"] - spots["cfs"] ** 2
            npx = np.maximum(4.0 * math.pi * np.sqrt(np.maximum(det_c, 0)), 1.0)
            core = detm.core_fraction(det)  # the tail leaves the spot
            pf = FOOTPRINT_FRACTION * core * spots["photons"] * trans
            dd = bg_d * npx
            ix = _flat_index(ctx, spots["panel"], spots["fs"], spots["ss"])
            pf = np.where(ctx.mask.ravel()[ix], 0.0, pf)
            qa, qb, qc = noise_terms(pf, dd, bg_nc, bg_d, npx, read_noise=det.read_noise,
                                     calibration_error=det.calibration_error, rounding=detm.output_rounding(det))
            sstar = threshold_scale(pf, qa, qb, qc, lab.snr_min)
            srt = np.sort(sstar)
            n_vis_1 = int(np.searchsorted(srt, 1.0, side="right"))
            s_lo = srt[lo - 1] if lo - 1 < len(srt) else np.inf
            s_hi = srt[int(hi) - 1] if np.isfinite(hi) and int(hi) - 1 < len(srt) else np.inf
            cand = dict(spots=spots, crystals=crystals, table_diff=table_diff, sstar=sstar, trans=trans,
                        bg_nc=bg_nc, bg_d=bg_d, npx=npx, pf=pf, qa=qa, qb=qb, qc=qc,
                        peak_frac=core * np.minimum(1.0, 1.0 / (2.0 * math.pi * np.sqrt(np.maximum(det_c, 1e-12)))))
            # the scale stands for a bigger or better crystal, never one beyond the config's
            # largest (edge min(size, beam)² x size x in-beam fraction, all at their maxima)
            s_max = v_max / max(c["volume_um3"] * 1e12 for c in crystals)
            if lo <= n_vis_1 < hi:
                best, crystal_scale = cand, 1.0
                break
            if np.isfinite(s_lo) and s_lo < s_hi and s_lo <= s_max:
                top = min(s_hi, s_lo * 30.0, s_max)
                a, b = math.log(s_lo) + 1e-3, math.log(top) - 1e-3
                crystal_scale = math.exp(rng.uniform(a, b)) if b > a else math.sqrt(s_lo * top)
                best = cand
                break
            if np.isfinite(s_lo) and s_lo > s_max and (fallback is None or s_max > fallback[1]):
                fallback = (cand, s_max)  # as strong as a physical crystal gets, short of the class
            if best is None:
                best, crystal_scale = cand, 1.0
        else:
            if fallback is not None:
                best, crystal_scale = fallback
        spots = best["spots"]
        table_diff = best["table_diff"]
        crystals = best["crystals"]
        for cdict in crystals:
            cdict["volume_um3"] *= crystal_scale
        params.update(n_crystals=len(crystals), crystals=crystals, crystal_scale=float(crystal_scale))

    # ---------------------------------------------------------------- render
    shape = ctx.data_shape
    npix = int(np.prod(shape))
    bg = np.empty(npix, dtype=np.float32)
    tr = np.empty(npix, dtype=np.float32)
    if fluence > 0:
        table = table_nc + crystal_scale * table_diff
        _run_background(ctx, ctx.maps[0], ctx.maps[1], ctx.maps[2], lam, table, scale, cfg, jx, jy, bg, tr)
    else:
        bg[:] = 0.0
    truth_spots = np.zeros(0, SPOT_DTYPE)
    n_vis = 0
    if spots is not None and len(spots["photons"]):
        ph = crystal_scale * spots["photons"] * best["trans"]
        img3 = np.zeros((int(ctx.slabs.max()) + 1,) + tuple(shape[-2:]), dtype=np.float32)
        r = ph > _MIN_RENDER_PHOTONS
        pan = spots["panel"][r]
        kernels.splat(img3, ctx.slabs[pan], spots["fs"][r], spots["ss"][r], ph[r], spots["cff"][r],
                      spots["cfs"][r], spots["css"][r], ctx.bounds[pan], 25)
        img3 = detm.apply_psf_tail(img3, det)
        bg += img3.reshape(-1)[:npix] if len(shape) == 3 else img3[0].ravel()
        keep = ph >= lab.min_spot_photons
        vis_expected = best["sstar"] <= crystal_scale
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = snr_at(crystal_scale, best["pf"], best["qa"], best["qb"], best["qc"])
            pk = ph * best["peak_frac"]
            peak_snr = pk / np.sqrt(pk + best["bg_nc"] + crystal_scale * best["bg_d"] + det.read_noise ** 2)
    bg[ctx.gap] = 0.0
    out = detm.electronics(bg, det, ctx, rng)
    if spots is not None and len(spots["photons"]):
        snr_meas = np.zeros(len(ph), dtype=np.float64)
        snr_meas[keep] = measured_snr(ctx, det, spots, ph, keep, out, bg)
        vis_measured = (snr_meas >= lab.snr_min) & (best["pf"] > 0)  # pf 0: centre masked or shadowed
        visible = vis_measured if lab.visibility == "measured" else vis_expected
        truth_spots = _spot_table(ctx, spots, ph, snr, peak_snr, visible, keep, snr_meas)
        n_vis = int(visible.sum())
        params.update(n_visible_expected=int(vis_expected.sum()), n_visible_measured=int(vis_measured.sum()))
    else:
        params.update(n_visible_expected=0, n_visible_measured=0)

    # ---------------------------------------------------------------- labels and frame
    realised = diffranet_class(fluence > 0, spots is not None, n_vis, lab)
    vis_d = truth_spots["d"][truth_spots["visible"]]
    truth = Truth(diffranet_class=realised, ke_class=ke_class(n_vis, lab), spots=truth_spots, n_visible=n_vis,
                  resolution_limit=float(vis_d.min()) if len(vis_d) else float("nan"), params=params,
                  requested_class=requested)
    frame = Frame(data=out.reshape(shape), mask=ctx.mask, source="", index=0, format="simulated",
                  detector=det.name, pixel_size=ctx.pixel_size, distance=ctx.distance, wavelength=float(lam),
                  beam_center=ctx.beam_center, dtype=det.dtype,
                  geometry=None if ctx.monolithic else ctx.geometry,
                  meta={"preset": cfg.name, "simulated": True})
    return frame, truth


def _flat_index(ctx, panel, fs, ss) -> np.ndarray:
    shape = ctx.data_shape
    fi = np.clip(np.floor(fs).astype(np.int64), 0, shape[-1] - 1)
    si = np.clip(np.floor(ss).astype(np.int64), 0, shape[-2] - 1)
    if len(shape) == 3:
        return (ctx.slabs[panel] * shape[-2] + si) * shape[-1] + fi
    return si * shape[-1] + fi


def measured_snr(ctx, det, spots, ph, keep, out, expected) -> np.ndarray:
    """Integrated SNR of each kept spot as measured in the recorded frame ``out``.

    An ideal integrator that knows the spot's position and shape, the expected background and
    the detector's noise: over the spot's footprint (2-sigma ellipse, unmasked pixels) the
    measured photons ``S`` (``out`` converted back from detector units), less the expected
    photons of everything else there (``E`` minus the spot's own expected share), over the
    noise ``sqrt(S + calibration_error² sum(S_px²) + n read_noise²)`` (plus ``S / 3`` for the
    square-root 8-bit output's rounding). A spot that drives a pixel to saturation (an
    overload) is visible whatever its sums say: infinite SNR. A pixel that the background
    alone saturates is left out of the sums.
    ``expected`` is the flat expected-photon image the detector chain counted (``out``'s mean).
    """
    shape3 = (-1,) + tuple(ctx.data_shape[-2:])
    meas, sat_ph = detm.output_to_photons(out, det)
    meas = meas.reshape(shape3)
    idx = np.nonzero(keep)[0]
    pan = spots["panel"][idx]
    sums = np.zeros((len(idx), 6), dtype=np.float64)
    own = detm.core_fraction(det) * ph[idx].astype(np.float64)
    kernels.footprint_sums(meas, expected.reshape(shape3), ctx.mask.reshape(shape3), ctx.slabs[pan],
                           spots["fs"][idx], spots["ss"][idx], spots["cff"][idx], spots["cfs"][idx],
                           spots["css"][idx], own, ctx.bounds[pan], 25, sat_ph * (1.0 - 1e-6), sums)
    S, E, F, n, Q, n_sat = sums.T
    signal = S - (E - own * F)
    var = np.maximum(S, 0.0) * (1.0 + detm.output_rounding(det))
    var += det.calibration_error ** 2 * Q + n * det.read_noise ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.nan_to_num(signal / np.sqrt(var))
    snr = np.where(n > 0, snr, 0.0)
    return np.where(n_sat > 0, np.inf, snr)


def _spot_table(ctx, spots, ph, snr, peak_snr, visible, keep, snr_meas) -> np.ndarray:
    idx = np.nonzero(keep)[0]
    t = np.zeros(len(idx), SPOT_DTYPE)
    pan = spots["panel"][idx]
    t["panel"] = pan
    t["fs"] = spots["fs"][idx]
    t["ss"] = spots["ss"][idx]
    if ctx.monolithic:
        t["x"], t["y"] = t["fs"], t["ss"]
    else:
        xs = np.empty(len(idx))
        ys = np.empty(len(idx))
        for p in np.unique(pan):
            m = pan == p
            xs[m], ys[m] = ctx.geometry.assembled_coords(int(p), spots["fs"][idx][m], spots["ss"][idx][m])
        t["x"], t["y"] = xs, ys
    hkl = spots["hkl"][idx]
    t["h"], t["k"], t["l"] = hkl[:, 0], hkl[:, 1], hkl[:, 2]
    t["photons"] = ph[idx]
    t["snr"] = np.nan_to_num(snr[idx])
    t["peak_snr"] = np.nan_to_num(peak_snr[idx])
    t["snr_measured"] = snr_meas[idx]  # inf: a pixel at saturation
    t["d"] = 1.0 / spots["s"][idx]
    t["visible"] = visible[idx]
    t["crystal"] = spots["crystal"][idx]
    return t
