"""Non-Bragg scattering as radial functions of ``s = 1/d = 2 sin θ / λ`` (Å⁻¹).

Each function returns the scattering per unit area of the beam cross-section: (scatterers per
Å²) x (electrons² per scatterer), so that the photons in a pixel are
``fluence * r_e² * table(s) * polarisation * solid_angle`` (Holton's nonBragg in spirit; the
curves are documented empirical approximations, not tabulated form factors):

- **air**: N₂ at 2.5e-5 molecules/Å³ over ``air_path_mm``, independent-atom coherent
  scattering plus Compton (``Z - f²/Z`` per atom), falling off quickly with angle;
- **water / carrier**: 0.0334 molecules/Å³ over ``water_um``; liquid structure factor
  suppressed at low angle (compressibility) with its main peak at ``d = 3.25 Å`` (the water
  ring, spanning about 3.7-2.9 Å), tending to independent atoms plus Compton at high angle;
- **ice**: hexagonal-ice powder rings at their d-spacings (:data:`ICE_RINGS`) with relative
  intensities, broadened by the beam bandwidth;
- **crystal diffuse**: the crystal's atoms (fraction ``diffuse``) scattering as an amorphous
  solid with the crystal's B factor removed: ``f²(s) (1 - exp(-B s²/2))``, rising with angle.
"""

from __future__ import annotations

import numpy as np

#: Hexagonal ice (Ih) d-spacings (Å) and relative powder intensities.
ICE_RINGS = ((3.897, 100.0), (3.669, 60.0), (3.441, 55.0), (2.671, 20.0), (2.249, 45.0),
             (2.072, 35.0), (1.948, 6.0), (1.918, 25.0), (1.883, 12.0), (1.721, 5.0))
#: d-spacing (Å) of the liquid-water ring maximum.
WATER_RING_D = 3.25

R_E2 = (2.8179403e-5) ** 2  # classical electron radius squared, Å²
TABLE_DS = 0.0005  # Å⁻¹ per table step
TABLE_N = 3000  # covers s up to 1.5 Å⁻¹ (d = 0.67 Å)


def s_grid() -> np.ndarray:
    return np.arange(TABLE_N) * TABLE_DS


def _atom_f(s, z, b):
    return z * np.exp(-b * (s / 2.0) ** 2)


def air(s: np.ndarray, path_mm: float) -> np.ndarray:
    """Air (N₂) scattering per Å² of beam over ``path_mm``."""
    f = _atom_f(s, 7.0, 5.2)
    per_molecule = 2.0 * (f * f + (7.0 - f * f / 7.0))
    return 2.5e-5 * path_mm * 1e7 * per_molecule


def water(s: np.ndarray, thickness_um: float) -> np.ndarray:
    """Liquid water per Å² of beam over ``thickness_um``; ring at :data:`WATER_RING_D`."""
    fo = _atom_f(s, 8.0, 4.5)
    fh = _atom_f(s, 1.0, 12.0)
    indep = fo * fo + 2.0 * fh * fh
    compton = (8.0 - fo * fo / 8.0) + 2.0 * (1.0 - fh * fh)
    s0 = 1.0 / WATER_RING_D
    struct = (1.0 - 0.93 * np.exp(-(s / 0.24) ** 4)) + 1.25 * np.exp(-0.5 * ((s - s0) / 0.035) ** 2)
    return 0.0334 * thickness_um * 1e4 * (indep * struct + compton)


def ice(s: np.ndarray, thickness_um: float, width: np.ndarray | float) -> np.ndarray:
    """Hexagonal-ice rings per Å² of beam; Gaussian rings of RMS width ``width`` (Å⁻¹)."""
    out = np.zeros_like(s)
    total = sum(i for _, i in ICE_RINGS)
    for d, inten in ICE_RINGS:
        sr = 1.0 / d
        w = np.maximum(width * sr if np.ndim(width) == 0 else width, 1e-4)
        out += inten / total * np.exp(-0.5 * ((s - sr) / w) ** 2) / (np.sqrt(2 * np.pi) * w)
    # integrated ring strength comparable to water's structured scattering per molecule
    fo = _atom_f(s, 8.0, 4.5)
    return 0.031 * thickness_um * 1e4 * 2.0 * (fo * fo + 2.0) * out


def diffuse(s: np.ndarray, atoms_per_area: float, b_factor: float, fraction: float) -> np.ndarray:
    """Crystal diffuse scattering per Å² of beam (``atoms_per_area`` atoms/Å² illuminated)."""
    from xtalscreen.simulate.crystal import mean_atom_f2

    return fraction * atoms_per_area * mean_atom_f2(s) * (1.0 - np.exp(-max(b_factor, 5.0) * s * s / 2.0))
