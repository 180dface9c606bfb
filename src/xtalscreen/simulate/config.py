"""Simulation settings: plain, editable dataclasses and the detector presets.

A :class:`SimulationConfig` holds everything :func:`xtalscreen.simulate.simulate_frame` needs:
the crystal (:class:`CrystalConfig`), the beam (:class:`BeamConfig`), the detector
(:class:`DetectorConfig`), the non-Bragg scattering (:class:`BackgroundConfig`) and how frame
classes are chosen and labelled (:class:`LabelConfig`). :func:`get_preset` returns a fresh copy
the caller may edit; :func:`preset_from_geom` imitates the user's own detector from a CrystFEL
``.geom`` file.

Units: lengths in metres unless the field name says otherwise (``_um`` micrometres, ``_mm``
millimetres); wavelengths and cell edges in ångström; angles in degrees; pixel values in photons
times ``gain``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields

from xtalscreen.errors import ParameterError

#: DiffraNet class names in order of increasing crystal contribution.
DIFFRANET_CLASSES = ("blank", "no-crystal", "weak", "good", "strong")
#: How a spot is judged visible (:class:`LabelConfig`): from expected values or as measured.
VISIBILITY_RULES = ("expected", "measured")
#: Ke et al. (2018) class names.
KE_CLASSES = ("miss", "maybe", "hit")


def _num(name: str, value, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    u = f" {unit}" if unit else ""
    if not math.isfinite(v):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ParameterError(f"{name} must be {'>' if lo_open else '>='} {lo:g}{u}, got {value!r}")
    if hi is not None and v > hi:
        raise ParameterError(f"{name} must be <= {hi:g}{u}, got {value!r}")
    return v


def _range(name: str, value, *, lo: float = 0.0, lo_open: bool = False, unit: str = "") -> tuple[float, float]:
    """A (min, max) pair; a single number means (v, v)."""
    if isinstance(value, (int, float)):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number or a (min, max) pair, got {value!r}") from None
    a = _num(f"{name}[0]", a, lo=lo, lo_open=lo_open, unit=unit)
    b = _num(f"{name}[1]", b, lo=lo, lo_open=lo_open, unit=unit)
    if b < a:
        raise ParameterError(f"{name} must be (min, max) with min <= max, got {value!r}")
    return (a, b)


@dataclass
class CrystalConfig:
    """The crystal(s) in the beam.

    Attributes
    ----------
    cell : (a, b, c, alpha, beta, gamma)
        Unit cell in Å and degrees.
    space_group : str or None
        Hermann-Mauguin symbol (e.g. ``"P 21 21 21"``). When given, systematic absences are
        removed and random amplitudes are shared by symmetry-equivalent reflections.
    model : str or None
        Path of a PDB/mmCIF model; structure factors then come from it (gemmi), with the
        model's cell and space group unless ``cell``/``space_group`` are set explicitly.
    b_factor : float
        Overall Wilson B (Å²) of the random amplitudes: ``<|F|²> ∝ exp(-B/(2 d²))``.
    solvent_fraction : float
        Fraction of the cell that is solvent (sets the number of atoms per cell).
    k_sol, b_sol : float
        Bulk-solvent model ``F -> F (1 - k_sol exp(-b_sol / (4 d²)))`` damping low-angle spots.
    structure_seed : int
        Seed of the random (Wilson) amplitudes: one structure for a whole dataset.
    size_um : (min, max)
        Crystal edge (µm), drawn log-uniformly per frame.
    in_beam_fraction : (min, max)
        Fraction of the crystal volume inside the beam, drawn uniformly (partial crystals).
    domain_size_um : (min, max)
        Size of a coherent mosaic block (µm); sets the width of a reciprocal-lattice point
        (rocking width ``0.38 / L``) and therefore the spot size, as in nanoBragg's crystal
        size (DiffraNet: 0.1 µm blocks).
    mosaic_spread_deg : (min, max)
        Full width (diameter, degrees) of the top-hat mosaic distribution, drawn uniformly.
    n_domains : int
        Number of mosaic domains drawn explicitly per crystal (paper: 300). 0 uses the analytic
        limit of infinitely many domains (faster, smoother).
    n_crystals_probs : tuple of float
        Probabilities of 1, 2, 3 ... lattices in one shot.
    orientation : 3x3 nested sequence or None
        Fixed crystal orientation (rotation matrix, crystal -> lab); None draws it uniformly.
    """

    cell: tuple[float, float, float, float, float, float] = (118.0, 224.0, 331.0, 90.0, 90.0, 90.0)
    space_group: str | None = None
    model: str | None = None
    b_factor: float = 40.0
    solvent_fraction: float = 0.55
    k_sol: float = 0.35
    b_sol: float = 46.0
    structure_seed: int = 4
    size_um: tuple[float, float] = (2.0, 30.0)
    in_beam_fraction: tuple[float, float] = (0.1, 1.0)
    domain_size_um: tuple[float, float] = (0.1, 0.3)
    mosaic_spread_deg: tuple[float, float] = (0.3, 0.7)
    n_domains: int = 300
    n_crystals_probs: tuple[float, ...] = (0.85, 0.12, 0.03)
    orientation: tuple | None = None

    def validate(self, prefix: str = "crystal") -> None:
        if len(self.cell) != 6:
            raise ParameterError(f"{prefix}.cell must be (a, b, c, alpha, beta, gamma), got {self.cell!r}")
        for name, v in zip(("a", "b", "c"), self.cell[:3]):
            _num(f"{prefix}.cell {name}", v, lo=0, lo_open=True, unit="Å")
        ang = [_num(f"{prefix}.cell {n}", v, lo=0, lo_open=True, unit="degrees")
               for n, v in zip(("alpha", "beta", "gamma"), self.cell[3:])]
        from xtalscreen.simulate.crystal import cell_volume

        if any(a >= 180 for a in ang) or cell_volume(self.cell) <= 0:
            raise ParameterError(
                f"{prefix}.cell angles {tuple(ang)} are impossible: each must be < 180 degrees, "
                "each less than the sum of the other two, and their sum < 360")
        _num(f"{prefix}.b_factor", self.b_factor, lo=0, unit="Å²")
        _num(f"{prefix}.solvent_fraction", self.solvent_fraction, lo=0, hi=0.95)
        _num(f"{prefix}.k_sol", self.k_sol, lo=0, hi=1)
        _num(f"{prefix}.b_sol", self.b_sol, lo=0, unit="Å²")
        self.size_um = _range(f"{prefix}.size_um", self.size_um, lo_open=True, unit="µm")
        self.in_beam_fraction = _range(f"{prefix}.in_beam_fraction", self.in_beam_fraction, lo_open=True)
        if self.in_beam_fraction[1] > 1:
            raise ParameterError(f"{prefix}.in_beam_fraction must lie in (0, 1], got {self.in_beam_fraction}")
        self.domain_size_um = _range(f"{prefix}.domain_size_um", self.domain_size_um, lo_open=True, unit="µm")
        self.mosaic_spread_deg = _range(f"{prefix}.mosaic_spread_deg", self.mosaic_spread_deg, unit="degrees")
        if int(self.n_domains) != self.n_domains or self.n_domains < 0:
            raise ParameterError(f"{prefix}.n_domains must be an integer >= 0, got {self.n_domains!r}")
        p = [float(x) for x in self.n_crystals_probs]
        if not p or any(x < 0 for x in p) or sum(p) <= 0:
            raise ParameterError(f"{prefix}.n_crystals_probs must be non-negative with a positive sum, got {p}")
        if self.orientation is not None:
            import numpy as np

            m = np.asarray(self.orientation, dtype=float)
            if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
                raise ParameterError(f"{prefix}.orientation must be a 3x3 rotation matrix, got {self.orientation!r}")
        if self.model is not None:
            from pathlib import Path

            if not Path(str(self.model)).is_file():
                raise ParameterError(f"{prefix}.model: no such file {str(self.model)!r} (a PDB or mmCIF model)")
        if self.space_group is not None:
            import gemmi

            if gemmi.find_spacegroup_by_name(str(self.space_group)) is None:
                raise ParameterError(f"{prefix}.space_group {self.space_group!r} is not a known space group")


@dataclass
class BeamConfig:
    """The X-ray pulse.

    Attributes
    ----------
    wavelength : float
        Mean wavelength (Å).
    bandwidth : float
        Relative RMS spread of the wavelength within a pulse (0.005 = 0.5 %); also the
        shot-to-shot jitter of the mean wavelength.
    fluence : float
        Mean number of photons per pulse.
    fluence_rms : float
        Shot-to-shot RMS of the pulse energy relative to the mean (SASE: 1.0); Gaussian,
        clipped at 0.
    beam_size_um : float
        Edge of the square focal spot (µm).
    divergence_mrad : float
        RMS beam divergence (mrad).
    polarization : float
        Fraction of horizontal (x) linear polarisation (XFEL: 1.0).
    """

    wavelength: float = 1.5
    bandwidth: float = 0.005
    fluence: float = 1e12
    fluence_rms: float = 1.0
    beam_size_um: float = 30.0
    divergence_mrad: float = 0.05
    polarization: float = 1.0

    def validate(self, prefix: str = "beam") -> None:
        _num(f"{prefix}.wavelength", self.wavelength, lo=0, lo_open=True, unit="Å")
        _num(f"{prefix}.bandwidth", self.bandwidth, lo=0, hi=0.2)
        _num(f"{prefix}.fluence", self.fluence, lo=0, unit="photons")
        _num(f"{prefix}.fluence_rms", self.fluence_rms, lo=0)
        _num(f"{prefix}.beam_size_um", self.beam_size_um, lo=0, lo_open=True, unit="µm")
        _num(f"{prefix}.divergence_mrad", self.divergence_mrad, lo=0, unit="mrad")
        _num(f"{prefix}.polarization", self.polarization, lo=0, hi=1)


@dataclass
class DetectorConfig:
    """The detector and its electronics.

    Either a flat monolithic detector (``shape``, ``pixel_size``, ``distance``, ``beam_center``,
    optional module gaps) or any multi-panel ``geometry``
    (:class:`xtalscreen.io.geometry.DetectorGeometry`, e.g. from a CrystFEL ``.geom`` file),
    which then overrides those four fields.

    Attributes
    ----------
    name : str
        Written to :attr:`Frame.detector`.
    shape : (H, W)
        Pixels of a monolithic detector.
    pixel_size : float
        Metres.
    distance : float
        Sample-detector distance (metres).
    beam_center : (fs, ss) or None
        Nominal direct-beam position (pixels, pixel i spans [i, i+1)); None: image centre.
    beam_center_jitter_px : float
        RMS shot-to-shot jitter of the true beam position about the nominal one (pixels).
    module_shape, module_gap : (h, w) or None
        Monolithic detectors built of modules (Pilatus, Eiger): module size and gap between
        modules (pixels); gap pixels are masked and receive nothing.
    geometry : DetectorGeometry or None
        Multi-panel layout.
    psf : {"none", "pixel", "fibre"}
        Point-spread function: "pixel" (pixel-array detectors, a tiny Gaussian core of
        ``psf_sigma_px``), "fibre" (fibre-coupled CCD such as Rayonix: core plus a wide tail
        holding ``psf_tail_fraction`` of the signal, Gaussian of ``psf_tail_sigma_px``).
    gain : float
        Detector units per photon.
    calibration_error : float
        Per-pixel Gaussian gain error (relative RMS; DiffraNet 0.04).
    read_noise : float
        Gaussian read-out noise, RMS in photons (DiffraNet 3).
    offset : float
        Constant added to every pixel (detector units; DiffraNet 10).
    saturation : float
        Values are clipped here (detector units).
    dead_fraction, hot_fraction : float
        Fractions of pixels stuck at 0 / at saturation (fixed per detector, masked).
    defect_seed : int
        Seed of the dead/hot pixel pattern.
    output : {"counts", "diffranet8"}
        "diffranet8": DiffraNet's 8-bit square root of counts (0-255).
    dtype : {"uint16", "int32", "float32", "uint8"}
        Output dtype recorded as :attr:`Frame.dtype` and used in datasets.
    """

    name: str = "diffranet"
    shape: tuple[int, int] = (512, 512)
    pixel_size: float = 172e-6
    distance: float = 0.080
    beam_center: tuple[float, float] | None = None
    beam_center_jitter_px: float = 1.0
    module_shape: tuple[int, int] | None = None
    module_gap: tuple[int, int] | None = None
    geometry: object | None = None
    psf: str = "fibre"
    psf_sigma_px: float = 0.5
    psf_tail_fraction: float = 0.1
    psf_tail_sigma_px: float = 3.0
    gain: float = 1.0
    calibration_error: float = 0.04
    read_noise: float = 3.0
    offset: float = 10.0
    saturation: float = 65025.0
    dead_fraction: float = 0.0
    hot_fraction: float = 0.0
    defect_seed: int = 7
    output: str = "counts"
    dtype: str = "uint16"

    def validate(self, prefix: str = "detector") -> None:
        if self.geometry is None:
            try:
                h, w = (int(v) for v in self.shape)
            except (TypeError, ValueError):
                raise ParameterError(f"{prefix}.shape must be (H, W) pixels, got {self.shape!r}") from None
            if h <= 0 or w <= 0:
                raise ParameterError(f"{prefix}.shape must be positive (H, W) pixels, got {self.shape!r}; "
                                     "a detector of zero size records nothing")
            self.shape = (h, w)
            _num(f"{prefix}.pixel_size", self.pixel_size, lo=0, lo_open=True, unit="m")
            _num(f"{prefix}.distance", self.distance, lo=0, lo_open=True, unit="m")
            if self.beam_center is not None:
                if len(self.beam_center) != 2:
                    raise ParameterError(f"{prefix}.beam_center must be (fs, ss) pixels, got {self.beam_center!r}")
                self.beam_center = tuple(_num(f"{prefix}.beam_center", v) for v in self.beam_center)
            for nm in ("module_shape", "module_gap"):
                v = getattr(self, nm)
                if v is not None and (len(v) != 2 or any(int(x) < 0 for x in v)):
                    raise ParameterError(f"{prefix}.{nm} must be (h, w) pixels >= 0, got {v!r}")
            if (self.module_shape is None) != (self.module_gap is None):
                raise ParameterError(f"{prefix}.module_shape and {prefix}.module_gap go together")
            if self.module_shape is not None and min(self.module_shape) <= 0:
                raise ParameterError(f"{prefix}.module_shape must be positive, got {self.module_shape!r}")
        else:
            from xtalscreen.io.geometry import DetectorGeometry

            if not isinstance(self.geometry, DetectorGeometry):
                raise ParameterError(f"{prefix}.geometry must be a DetectorGeometry, got {type(self.geometry).__name__}")
            for p in self.geometry.panels:
                if p.clen + p.coffset <= 0:
                    raise ParameterError(f"{prefix}.geometry panel {p.name!r} has distance "
                                         f"{p.clen + p.coffset} m; it must be > 0 (downstream of the sample)")
        _num(f"{prefix}.beam_center_jitter_px", self.beam_center_jitter_px, lo=0, unit="px")
        if self.psf not in ("none", "pixel", "fibre"):
            raise ParameterError(f"{prefix}.psf must be 'none', 'pixel' or 'fibre', got {self.psf!r}")
        _num(f"{prefix}.psf_sigma_px", self.psf_sigma_px, lo=0, unit="px")
        _num(f"{prefix}.psf_tail_fraction", self.psf_tail_fraction, lo=0, hi=0.9)
        _num(f"{prefix}.psf_tail_sigma_px", self.psf_tail_sigma_px, lo=0, lo_open=True, unit="px")
        _num(f"{prefix}.gain", self.gain, lo=0, lo_open=True, unit="units/photon")
        _num(f"{prefix}.calibration_error", self.calibration_error, lo=0, hi=1)
        _num(f"{prefix}.read_noise", self.read_noise, lo=0, unit="photons")
        _num(f"{prefix}.offset", self.offset)
        _num(f"{prefix}.saturation", self.saturation, lo=0, lo_open=True)
        _num(f"{prefix}.dead_fraction", self.dead_fraction, lo=0, hi=0.5)
        _num(f"{prefix}.hot_fraction", self.hot_fraction, lo=0, hi=0.5)
        if self.output not in ("counts", "diffranet8"):
            raise ParameterError(f"{prefix}.output must be 'counts' or 'diffranet8', got {self.output!r}")
        if self.dtype not in ("uint16", "int32", "float32", "uint8"):
            raise ParameterError(f"{prefix}.dtype must be uint16, int32, float32 or uint8, got {self.dtype!r}")


@dataclass
class BackgroundConfig:
    """Non-Bragg scattering and shadows (all on by default where the preset says so).

    Attributes
    ----------
    air_path_mm : float
        Air path seen by the beam near the sample (mm; DiffraNet 5).
    water_um : (min, max)
        Thickness of liquid water / carrier in the beam (µm; DiffraNet 10), drawn uniformly;
        gives the water ring (peak at d = 3.25 Å, spanning ~3.7-2.9 Å).
    ice_prob : float
        Probability that a frame shows hexagonal-ice rings.
    ice_um : (min, max)
        Equivalent ice thickness when present (µm).
    diffuse : float
        Crystal diffuse scattering (disorder), as a fraction of the crystal's atoms that scatter
        as an amorphous solid; rises with angle.
    jet_streak : float
        Strength of the horizontal liquid-jet streak (0 = off), in the water ring's units.
    kapton_shadow : float
        Transmission (0-1) of a Kapton belt shadowing the lower part of the detector beyond
        ``kapton_edge_mm`` below the beam; 1 = no belt.
    kapton_edge_mm : float
    beamstop_radius_mm : float
        Radius of the round beamstop shadow around the nominal beam (0 = none).
    beamstop_arm_mm : float
        Width of the beamstop's holding arm, running from the stop to the +x edge (0 = none).
    """

    air_path_mm: float = 5.0
    water_um: tuple[float, float] = (5.0, 15.0)
    ice_prob: float = 0.0
    ice_um: tuple[float, float] = (0.5, 3.0)
    diffuse: float = 0.1
    jet_streak: float = 0.0
    kapton_shadow: float = 1.0
    kapton_edge_mm: float = 10.0
    beamstop_radius_mm: float = 2.0
    beamstop_arm_mm: float = 1.0

    def validate(self, prefix: str = "background") -> None:
        _num(f"{prefix}.air_path_mm", self.air_path_mm, lo=0, unit="mm")
        self.water_um = _range(f"{prefix}.water_um", self.water_um, unit="µm")
        _num(f"{prefix}.ice_prob", self.ice_prob, lo=0, hi=1)
        self.ice_um = _range(f"{prefix}.ice_um", self.ice_um, unit="µm")
        _num(f"{prefix}.diffuse", self.diffuse, lo=0)
        _num(f"{prefix}.jet_streak", self.jet_streak, lo=0)
        _num(f"{prefix}.kapton_shadow", self.kapton_shadow, lo=0, hi=1)
        _num(f"{prefix}.kapton_edge_mm", self.kapton_edge_mm, lo=0, unit="mm")
        _num(f"{prefix}.beamstop_radius_mm", self.beamstop_radius_mm, lo=0, unit="mm")
        _num(f"{prefix}.beamstop_arm_mm", self.beamstop_arm_mm, lo=0, unit="mm")


@dataclass
class LabelConfig:
    """How frame classes are chosen and defined.

    A spot is **visible** when its expected integrated photons ``I`` over its footprint (the
    2-sigma ellipse of the spot profile, which holds 86.5 % of it) exceed ``snr_min`` times the
    noise there: ``0.865 I / sigma >= snr_min``. ``sigma²`` is the variance of the footprint sum
    with the detector's whole noise: Poisson ``0.865 I + B`` (``B`` the expected background
    photons there), ``n read_noise²`` over its ``n`` pixels, the per-pixel gain error
    (``calibration_error`` times each pixel's expected photons) and, for a square-root 8-bit
    output, its rounding (a third of the counts' variance); see
    :func:`xtalscreen.simulate.labels.noise_terms`. Pixels masked (gaps, dead, hot) or in the
    beamstop shadow count as not visible.

    Ke class (paper 001): ``hit`` if at least ``ke_hit`` spots are visible, ``maybe`` with
    ``ke_maybe``..``ke_hit - 1``, else ``miss``.

    DiffraNet class: ``blank`` (no X-rays), ``no-crystal`` (beam, no lattice), and for a crystal
    in the beam by the number of visible spots ``n``: ``weak`` ``1 <= n < good_min``,
    ``good`` ``good_min <= n < strong_min``, ``strong`` ``n >= strong_min``.

    ``visibility`` chooses which SNR the rule reads:

    - ``"expected"`` (default): the expected values above. An exact property of the simulated physics, but
      not one an observer of the frame can know: a spot of expected SNR 5 is measured at 5 ± 1.
    - ``"measured"``: the SNR an ideal integrator measures in the recorded frame, knowing the
      spot's position and shape, the expected background and the detector's noise. Over the same
      footprint: the measured photons less the expected photons of everything else, over
      ``sqrt(S + calibration_error² sum(S_px²) + n read_noise²)`` (``S`` the measured photons,
      plus ``S / 3`` for the 8-bit rounding). A spot that overloads a pixel is visible. This is
      closer to what a human annotator (paper 001) or a peak count (paper 003) labels by: frames
      that look the same get the same label.

    Both counts are recorded for every frame (``n_spots_expected``, ``n_spots_measured`` in
    labels.csv; ``snr`` and ``snr_measured`` per spot), whichever rule names the classes.

    Attributes
    ----------
    class_probs : dict
        Probability of each DiffraNet class when a frame's class is drawn.
    draw_counts : dict or None
        Visible-spot count range ``[lo, hi)`` (``hi`` None: open) the simulator aims for when it
        makes a frame of a crystal class, e.g. ``{"weak": (5, 16), "good": (40, 100),
        "strong": (240, None)}``; each must lie inside the class's label range. None (default):
        the whole label range, so counts run continuously across the class boundaries. A
        narrower range makes separated populations (as DiffraNet's own generator did with its
        distinct weak/good/strong settings) without changing what a frame is *called*: labels are
        always computed from the final count.
    """

    class_probs: dict = field(default_factory=lambda: {c: 0.2 for c in DIFFRANET_CLASSES})
    draw_counts: dict | None = None
    snr_min: float = 5.0
    ke_hit: int = 10
    ke_maybe: int = 4
    good_min: int = 25
    strong_min: int = 150
    min_spot_photons: float = 0.5
    visibility: str = "expected"

    def validate(self, prefix: str = "labels") -> None:
        if self.visibility not in VISIBILITY_RULES:
            raise ParameterError(f"{prefix}.visibility must be one of {', '.join(VISIBILITY_RULES)}, "
                                 f"got {self.visibility!r}")
        unknown = set(self.class_probs) - set(DIFFRANET_CLASSES)
        if unknown:
            raise ParameterError(f"{prefix}.class_probs has unknown classes {sorted(unknown)}; "
                                 f"known: {', '.join(DIFFRANET_CLASSES)}")
        vals = [_num(f"{prefix}.class_probs[{k!r}]", v, lo=0) for k, v in self.class_probs.items()]
        if sum(vals) <= 0:
            raise ParameterError(f"{prefix}.class_probs must have a positive sum, got {self.class_probs}")
        _num(f"{prefix}.snr_min", self.snr_min, lo=0, lo_open=True)
        if not (1 <= self.ke_maybe <= self.ke_hit):
            raise ParameterError(f"{prefix}.ke_maybe/ke_hit must satisfy 1 <= ke_maybe <= ke_hit, "
                                 f"got {self.ke_maybe}, {self.ke_hit}")
        if not (1 < self.good_min < self.strong_min):
            raise ParameterError(f"{prefix}.good_min/strong_min must satisfy 1 < good_min < strong_min, "
                                 f"got {self.good_min}, {self.strong_min}")
        _num(f"{prefix}.min_spot_photons", self.min_spot_photons, lo=0)
        if self.draw_counts is not None:
            from xtalscreen.simulate.labels import count_range

            if not isinstance(self.draw_counts, dict):
                raise ParameterError(f"{prefix}.draw_counts must be a dict class -> (lo, hi), "
                                     f"got {self.draw_counts!r}")
            for cls, rng_ in self.draw_counts.items():
                name = f"{prefix}.draw_counts[{cls!r}]"
                if cls not in ("weak", "good", "strong"):
                    raise ParameterError(f"{name}: only weak, good and strong have a spot-count range")
                try:
                    lo, hi = rng_
                    lo = int(lo)
                    hi = None if hi is None else int(hi)
                except (TypeError, ValueError):
                    raise ParameterError(f"{name} must be (lo, hi) visible-spot counts, hi None for open; "
                                         f"got {rng_!r}") from None
                llo, lhi = count_range(cls, self)
                top = math.inf if hi is None else hi
                if not (llo <= lo < top <= lhi):
                    cap = lhi if math.isfinite(lhi) else "None (open)"
                    raise ParameterError(f"{name} = {rng_!r} must satisfy {llo} <= lo < hi <= {cap}, "
                                         f"the label range of {cls!r}")


@dataclass
class SimulationConfig:
    """Everything that defines a simulated frame; see the module docstring for units."""

    name: str = "diffranet"
    crystal: CrystalConfig = field(default_factory=CrystalConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)

    def validate(self) -> "SimulationConfig":
        """Check every field; raise :class:`ParameterError` naming the first bad one."""
        for f in fields(self):
            v = getattr(self, f.name)
            if hasattr(v, "validate"):
                v.validate(f.name)
        return self

    def copy(self) -> "SimulationConfig":
        return copy.deepcopy(self)

    def with_changes(self, changes: dict) -> "SimulationConfig":
        """A validated copy with ``changes`` applied: ``{"section.field": value}``, e.g.
        ``{"background.jet_streak": 3.0, "background.ice_um": [2, 5]}`` (a list becomes a tuple
        where the field holds one). Unknown names are refused with the known ones listed.

        >>> c = get_preset("jungfrau4m").with_changes({"background.jet_streak": 3.0})
        >>> c.background.jet_streak, get_preset("jungfrau4m").background.jet_streak
        (3.0, 0.3)
        """
        out = self.copy()
        sections = [f.name for f in fields(self) if hasattr(getattr(self, f.name), "validate")]
        for key, value in changes.items():
            parts = str(key).split(".")
            if len(parts) != 2 or parts[0] not in sections:
                raise ParameterError(f"simulation setting {key!r}: give section.field with section one of "
                                     f"{', '.join(sections)} (e.g. background.jet_streak)")
            sec = getattr(out, parts[0])
            known = [f.name for f in fields(sec)]
            if parts[1] not in known:
                raise ParameterError(f"simulation setting {key!r}: {parts[0]} has no field {parts[1]!r}; "
                                     f"its fields: {', '.join(known)}")
            old = getattr(sec, parts[1])
            if isinstance(value, list) and isinstance(old, tuple):
                value = tuple(value)
            setattr(sec, parts[1], value)
        try:
            return out.validate()
        except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong kind
            raise ParameterError(f"simulation settings {dict(changes)}: {exc}") from None


# ---------------------------------------------------------------------------------- presets
def _diffranet() -> SimulationConfig:
    """Paper 002 Appendix A: 512x512 172 µm at 80 mm, PSII cell, fibre-coupled CCD PSF."""
    return SimulationConfig(name="diffranet", detector=DetectorConfig(dtype="uint8", output="diffranet8"))


def _cspad_geometry(distance: float = 0.1):
    """LCLS CSPAD: 4 quadrants x 8 two-by-one sensors, data (32, 185, 388), 64 ASIC panels.

    Each 2x1 sensor is two 185x194 ASICs side by side with a 3-pixel-wide insensitive gap;
    quadrants are rotated by 90 degrees about the beam (pinwheel layout, simplified).
    """
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    res = 1.0 / 110e-6
    panels = []
    # sensor positions inside quadrant 0 (x right, y down, pixels from beam): (x0, y0, horizontal?)
    blocks = [(20, 20, True), (20, 230, True), (440, 20, False), (650, 20, False),
              (440, 440, True), (440, 650, True), (20, 440, False), (230, 440, False)]
    for q in range(4):
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][q]
        rot = lambda v: (c * v[0] - s * v[1], s * v[0] + c * v[1])  # noqa: E731
        for j, (x0, y0, horiz) in enumerate(blocks):
            slab = q * 8 + j
            fs_dir = (1.0, 0.0) if horiz else (0.0, 1.0)
            ss_dir = (0.0, 1.0) if horiz else (-1.0, 0.0)
            origin = (x0, y0) if horiz else (x0 + 185, y0)
            for a in range(2):
                ox = origin[0] + fs_dir[0] * a * (194 + 3)
                oy = origin[1] + fs_dir[1] * a * (194 + 3)
                cx, cy = rot((ox, oy))
                fx, fy = rot(fs_dir)
                sx, sy = rot(ss_dir)
                panels.append(Panel(name=f"q{q}a{2 * j + a}", min_fs=194 * a, max_fs=194 * a + 193,
                                    min_ss=0, max_ss=184, corner_x=cx, corner_y=cy,
                                    fs=(fx, fy, 0.0), ss=(sx, sy, 0.0), res=res, clen=distance, slab=slab))
    return DetectorGeometry(panels, name="cspad")


def _jungfrau4m_geometry(distance: float = 0.12):
    """PSI Jungfrau 4M: 8 modules of 512x1024 (75 µm), 2 columns x 4 rows, data (8, 512, 1024)."""
    from xtalscreen.io.geometry import DetectorGeometry, Panel

    res = 1.0 / 75e-6
    panels = []
    gx, gy = 38, 36  # gaps between modules (pixels)
    width, height = 2 * 1024 + gx, 4 * 512 + 3 * gy
    for m in range(8):
        col, row = m % 2, m // 2
        cx = -width / 2 + col * (1024 + gx) + 9.0  # beam slightly off the central gap
        cy = -height / 2 + row * (512 + gy) + 12.0
        panels.append(Panel(name=f"m{m}", min_fs=0, max_fs=1023, min_ss=0, max_ss=511, corner_x=cx,
                            corner_y=cy, res=res, clen=distance, slab=m))
    return DetectorGeometry(panels, name="jungfrau4m")


def _cspad() -> SimulationConfig:
    """LCLS CXI CSPAD (2.3 Mpx, 110 µm), thermolysin-like cell, 9.5 keV."""
    return SimulationConfig(
        name="cspad",
        crystal=CrystalConfig(cell=(93.0, 93.0, 130.0, 90.0, 90.0, 120.0), space_group="P 61 2 2",
                              b_factor=20.0, size_um=(1.0, 10.0), domain_size_um=(0.2, 0.6),
                              mosaic_spread_deg=(0.05, 0.3)),
        beam=BeamConfig(wavelength=1.305, bandwidth=0.0025, fluence=5e11, beam_size_um=3.0,
                        divergence_mrad=0.02),
        detector=DetectorConfig(name="CSPAD", geometry=_cspad_geometry(0.1), pixel_size=110e-6, distance=0.1,
                                psf="pixel", psf_sigma_px=0.3, gain=25.0, calibration_error=0.02,
                                read_noise=0.3, offset=0.0, saturation=14000.0, dead_fraction=2e-4,
                                hot_fraction=5e-5, dtype="int32", beam_center_jitter_px=0.5),
        background=BackgroundConfig(air_path_mm=2.0, water_um=(3.0, 10.0), jet_streak=0.3,
                                    beamstop_radius_mm=0.0, beamstop_arm_mm=0.0),
    )


def _rayonix_mx340() -> SimulationConfig:
    """LCLS MFX Rayonix MX340-HS, 2x2 binned (1920x1920, 177 µm), large fibre-optic PSF, PSII."""
    return SimulationConfig(
        name="rayonix_mx340",
        beam=BeamConfig(wavelength=1.3, bandwidth=0.003, fluence=1e12, beam_size_um=5.0),
        detector=DetectorConfig(name="Rayonix MX340-HS", shape=(1920, 1920), pixel_size=177e-6, distance=0.14,
                                psf="fibre", psf_sigma_px=1.2, psf_tail_fraction=0.25, psf_tail_sigma_px=4.0,
                                gain=1.0, read_noise=1.0, offset=10.0, dtype="uint16", beam_center_jitter_px=1.0),
        background=BackgroundConfig(air_path_mm=10.0, jet_streak=0.2, beamstop_radius_mm=3.0),
    )


def _pilatus6m() -> SimulationConfig:
    """Dectris Pilatus 6M (2527x2463, 172 µm, 5x12 modules of 195x487 with 17/7 px gaps)."""
    return SimulationConfig(
        name="pilatus6m",
        crystal=CrystalConfig(cell=(78.0, 78.0, 37.0, 90.0, 90.0, 90.0), space_group="P 43 21 2",
                              b_factor=20.0, size_um=(5.0, 50.0), domain_size_um=(0.5, 1.0),
                              mosaic_spread_deg=(0.05, 0.2)),
        beam=BeamConfig(wavelength=0.9763, bandwidth=2e-4, fluence=2e11, fluence_rms=0.05,
                        beam_size_um=20.0, divergence_mrad=0.1, polarization=0.99),
        detector=DetectorConfig(name="PILATUS 6M", shape=(2527, 2463), pixel_size=172e-6, distance=0.3,
                                module_shape=(195, 487), module_gap=(17, 7), psf="pixel", psf_sigma_px=0.3,
                                calibration_error=0.01, read_noise=0.0, offset=0.0, saturation=1048500.0,
                                dead_fraction=1e-4, dtype="int32", beam_center_jitter_px=0.2),
        background=BackgroundConfig(air_path_mm=20.0, water_um=(5.0, 30.0), beamstop_radius_mm=1.5),
    )


def _eiger16m() -> SimulationConfig:
    """Dectris Eiger 16M (4371x4150, 75 µm, 4x8 modules of 514x1030 with 37/10 px gaps)."""
    cfg = _pilatus6m()
    cfg.name = "eiger16m"
    cfg.detector = DetectorConfig(name="EIGER 16M", shape=(4371, 4150), pixel_size=75e-6, distance=0.2,
                                  module_shape=(514, 1030), module_gap=(37, 10), psf="pixel", psf_sigma_px=0.3,
                                  calibration_error=0.01, read_noise=0.0, offset=0.0, saturation=4294967.0,
                                  dead_fraction=1e-4, dtype="int32", beam_center_jitter_px=0.2)
    return cfg


def _jungfrau4m() -> SimulationConfig:
    """PSI Jungfrau 4M (8 modules 512x1024, 75 µm) at an XFEL, lysozyme-like cell."""
    return SimulationConfig(
        name="jungfrau4m",
        crystal=CrystalConfig(cell=(79.0, 79.0, 38.0, 90.0, 90.0, 90.0), space_group="P 43 21 2",
                              b_factor=25.0, size_um=(1.0, 10.0), domain_size_um=(0.2, 0.6),
                              mosaic_spread_deg=(0.05, 0.3)),
        beam=BeamConfig(wavelength=1.38, bandwidth=0.003, fluence=5e11, beam_size_um=2.0),
        detector=DetectorConfig(name="JUNGFRAU 4M", geometry=_jungfrau4m_geometry(0.12), pixel_size=75e-6,
                                distance=0.12, psf="pixel", psf_sigma_px=0.3, gain=1.0, calibration_error=0.02,
                                read_noise=0.1, offset=0.0, saturation=1e5, dead_fraction=1e-4,
                                dtype="float32", beam_center_jitter_px=0.5),
        background=BackgroundConfig(air_path_mm=3.0, water_um=(3.0, 10.0), jet_streak=0.3, kapton_shadow=1.0,
                                    beamstop_radius_mm=0.0, beamstop_arm_mm=0.0),
    )


_PRESETS = {
    "diffranet": _diffranet,
    "cspad": _cspad,
    "rayonix_mx340": _rayonix_mx340,
    "pilatus6m": _pilatus6m,
    "eiger16m": _eiger16m,
    "jungfrau4m": _jungfrau4m,
}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return list(_PRESETS)


def get_preset(name: str) -> SimulationConfig:
    """A fresh, editable :class:`SimulationConfig` for a named detector/beam setup.

    Parameters
    ----------
    name : str
        One of :func:`list_presets`: ``diffranet``, ``cspad``, ``rayonix_mx340``,
        ``pilatus6m``, ``eiger16m``, ``jungfrau4m``.

    Examples
    --------
    >>> cfg = get_preset("diffranet")
    >>> cfg.beam.wavelength = 1.3     # edit freely: every call returns a new copy
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _PRESETS:
        raise ParameterError(f"unknown preset {name!r}; known presets: {', '.join(_PRESETS)}")
    return _PRESETS[key]().validate()


def preset_from_geom(path: str, base: str = "cspad") -> SimulationConfig:
    """A preset whose detector is read from a CrystFEL ``.geom`` file.

    The crystal, beam and background of ``base`` are kept; the geometry (panels, distance,
    and the wavelength if the file gives one) comes from ``path``.
    """
    try:
        from xtalscreen.io.crystfel import read_geom
    except ImportError as exc:  # pragma: no cover - depends on another module
        raise ParameterError(f"reading {path} needs xtalscreen.io.crystfel, which is not available: {exc}") from None
    geom = read_geom(path)
    cfg = get_preset(base)
    cfg.name = f"{base}+{geom.name or 'geom'}"
    cfg.detector.geometry = geom
    cfg.detector.name = geom.name or str(path)
    cfg.detector.pixel_size = geom.panels[0].pixel_size
    cfg.detector.distance = geom.panels[0].clen + geom.panels[0].coffset
    if geom.wavelength:
        cfg.beam.wavelength = float(geom.wavelength)
    return cfg.validate()
