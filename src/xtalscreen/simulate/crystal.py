"""Crystal maths: unit cells, orientations, symmetry and structure-factor amplitudes.

Conventions: reciprocal vectors without the 2π (``|q| = 1/d``, Å⁻¹); ``B`` is the matrix whose
columns are a*, b*, c* in a Cartesian crystal frame (a along x, b in the xy plane); the lab
reciprocal vector of reflection ``h`` is ``U @ B @ h`` with ``U`` a rotation (crystal -> lab).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from xtalscreen.errors import InputError, ParameterError


def cell_volume(cell) -> float:
    """Unit-cell volume (Å³); <= 0 (or NaN) for impossible angles."""
    a, b, c, al, be, ga = (float(v) for v in cell)
    ca, cb, cg = (math.cos(math.radians(x)) for x in (al, be, ga))
    t = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return a * b * c * math.sqrt(t) if t > 0 else -1.0


def orthogonalization(cell) -> np.ndarray:
    """3x3 matrix with columns a, b, c (Å) in the Cartesian crystal frame (PDB convention)."""
    a, b, c, al, be, ga = (float(v) for v in cell)
    al, be, ga = (math.radians(x) for x in (al, be, ga))
    v = cell_volume(cell)
    if not v > 0:
        raise ParameterError(f"cell {tuple(cell)} has impossible angles")
    cx = c * math.cos(be)
    cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz = v / (a * b * math.sin(ga))
    return np.array([[a, b * math.cos(ga), cx], [0.0, b * math.sin(ga), cy], [0.0, 0.0, cz]])


def reciprocal_basis(cell) -> np.ndarray:
    """B: columns a*, b*, c* (Å⁻¹) so that ``q = B @ (h, k, l)``, ``|q| = 1/d``."""
    return np.linalg.inv(orthogonalization(cell)).T


def d_spacing(cell, hkl) -> np.ndarray:
    """d (Å) of reflections ``hkl`` (array (..., 3))."""
    q = np.asarray(hkl, dtype=float) @ reciprocal_basis(cell).T
    with np.errstate(divide="ignore"):
        return 1.0 / np.linalg.norm(q, axis=-1)


def random_rotation(rng) -> np.ndarray:
    """A rotation matrix drawn uniformly over SO(3) (normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    return quaternion_to_matrix(q)


def quaternion_to_matrix(q) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(m) -> np.ndarray:
    """(w, x, y, z) with w >= 0 of a rotation matrix."""
    m = np.asarray(m, dtype=float)
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def mosaic_rotations(n: int, spread_deg: float, rng) -> np.ndarray:
    """Small-rotation vectors (n, 3) in radians, uniform in a ball of diameter ``spread_deg``.

    A domain rotated by ``w`` moves a reciprocal vector ``q`` to ``q + w x q`` (first order),
    nanoBragg's top-hat mosaic model.
    """
    if n <= 0 or spread_deg <= 0:
        return np.zeros((0, 3))
    radius = math.radians(spread_deg) / 2
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * (radius * rng.random(n) ** (1 / 3))[:, None]


# ---------------------------------------------------------------------------------- symmetry
@functools.lru_cache(maxsize=32)
def symmetry_ops(space_group: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotation parts (n, 3, 3, int) and translations (n, 3, fractions) of a space group."""
    import gemmi

    sg = gemmi.find_spacegroup_by_name(str(space_group))
    if sg is None:
        raise ParameterError(f"crystal.space_group {space_group!r} is not a known space group")
    rots, trans = [], []
    for op in sg.operations():
        rots.append(np.array(op.rot, dtype=np.int64) // gemmi.Op.DEN)
        trans.append(np.array(op.tran, dtype=float) / gemmi.Op.DEN)
    return np.array(rots), np.array(trans)


def systematically_absent(hkl: np.ndarray, space_group: str) -> np.ndarray:
    """Bool (N,) True for reflections extinct by the space group's screw axes/glides/centring."""
    hkl = np.asarray(hkl, dtype=np.int64)
    rots, trans = symmetry_ops(space_group)
    absent = np.zeros(len(hkl), dtype=bool)
    for r, t in zip(rots, trans):
        if not np.any(t):
            continue
        hr = hkl @ r  # h^T R
        same = np.all(hr == hkl, axis=1)
        phase = hkl @ t
        absent |= same & (np.abs(phase - np.round(phase)) > 1e-6)
    return absent


def canonical_hkl(hkl: np.ndarray, space_group: str | None) -> np.ndarray:
    """One representative per symmetry-equivalent (and Friedel) set of reflections."""
    hkl = np.asarray(hkl, dtype=np.int64)
    if space_group is None:
        eq = np.stack([hkl, -hkl])
    else:
        rots, _ = symmetry_ops(space_group)
        eq = np.einsum("nj,oji->oni", hkl, rots)
        eq = np.concatenate([eq, -eq])
    key = (eq[..., 0] * 4096 + eq[..., 1]) * 4096 + eq[..., 2]
    best = np.argmax(key, axis=0)
    return eq[best, np.arange(len(hkl))]


# ---------------------------------------------------------------------------------- amplitudes
def _hash_uniform(hkl: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform (0, 1] per Miller index (splitmix64 of h, k, l and seed)."""
    h = hkl.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (h[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ h[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ h[:, 2] * np.uint64(0x165667B19E3779F9) ^ np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x27D4EB2F165667C5))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return ((x >> np.uint64(11)).astype(np.float64) + 1.0) / float(1 << 53)


def atoms_per_cell(cell, solvent_fraction: float) -> float:
    """Non-hydrogen protein atoms per cell (one per 20 Å³ of protein, H included in f)."""
    return cell_volume(cell) * (1.0 - solvent_fraction) / 20.0


def mean_atom_f2(s: np.ndarray) -> np.ndarray:
    """<f²> (electrons²) of an average protein atom (C/N/O + riding H) at ``s = 1/d`` (Å⁻¹)."""
    x = (np.asarray(s) / 2.0) ** 2  # (sin θ / λ)²
    return (7.0 * np.exp(-5.0 * x)) ** 2 + 0.9 * np.exp(-25.0 * x)


def solvent_damping(s: np.ndarray, k_sol: float, b_sol: float) -> np.ndarray:
    """|1 - k_sol exp(-B_sol s²/4)|²: bulk-solvent reduction of |F|² at low angle."""
    return (1.0 - k_sol * np.exp(-b_sol * np.asarray(s) ** 2 / 4.0)) ** 2


def wilson_intensities(hkl: np.ndarray, s: np.ndarray, crystal) -> np.ndarray:
    """|F|² (electrons²) from Wilson statistics (acentric, exponential), B fall-off and solvent.

    The random part is a deterministic function of the symmetry-unique index and
    ``crystal.structure_seed``, so every frame of a dataset shows the same structure.
    """
    canon = canonical_hkl(hkl, crystal.space_group)
    u = _hash_uniform(canon, crystal.structure_seed)
    mean = atoms_per_cell(crystal.cell, crystal.solvent_fraction) * mean_atom_f2(s)
    mean = mean * np.exp(-crystal.b_factor * s * s / 2.0)
    return -np.log(u) * mean * solvent_damping(s, crystal.k_sol, crystal.b_sol)


class ModelStructureFactors:
    """|F|² of a PDB/mmCIF model (gemmi), looked up by Miller index.

    Built once per model and resolution (cached); bulk-solvent damping is applied on top.
    """

    def __init__(self, path: str, d_min: float):
        import gemmi

        try:
            st = gemmi.read_structure(str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            raise InputError(f"cannot read the model: {exc}", path=str(path)) from None
        st.setup_entities()
        if not st.cell.is_crystal():
            raise InputError("the model has no unit cell (CRYST1); give crystal.cell", path=str(path))
        self.cell = (st.cell.a, st.cell.b, st.cell.c, st.cell.alpha, st.cell.beta, st.cell.gamma)
        self.space_group = st.find_spacegroup().hm if st.find_spacegroup() else None
        dc = gemmi.DensityCalculatorX()
        dc.d_min = float(d_min)
        dc.rate = 1.5
        dc.set_grid_cell_and_spacegroup(st)
        dc.set_refmac_compatible_blur(st[0])
        dc.put_model_density_on_grid(st[0])
        grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
        self._blur = float(dc.blur)
        self._arr = np.array(grid, copy=True)
        self._shape = self._arr.shape

    def intensities(self, hkl: np.ndarray, k_sol: float = 0.35, b_sol: float = 46.0) -> np.ndarray:
        hkl = np.asarray(hkl, dtype=np.int64)
        flip = hkl[:, 2] < 0
        h = np.where(flip[:, None], -hkl, hkl)
        nu, nv, nw = self._shape
        ok = (np.abs(h[:, 0]) < nu // 2) & (np.abs(h[:, 1]) < nv // 2) & (h[:, 2] < nw)
        f = np.zeros(len(h), dtype=np.complex128)
        hh = h[ok]
        f[ok] = self._arr[hh[:, 0] % nu, hh[:, 1] % nv, hh[:, 2]]
        s = 1.0 / d_spacing(self.cell, hkl)
        f2 = np.abs(f) ** 2 * np.exp(self._blur * s * s / 2.0)  # undo the blur used on the grid
        return f2 * solvent_damping(s, k_sol, b_sol)


@functools.lru_cache(maxsize=4)
def model_structure_factors(path: str, d_min: float) -> ModelStructureFactors:
    return ModelStructureFactors(path, round(d_min, 2))
