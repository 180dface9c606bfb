"""Crystal maths: cells, rotations, absences, amplitudes (Wilson and gemmi)."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.simulate import crystal as xtal
from xtalscreen.simulate.config import CrystalConfig


def test_reciprocal_basis_gives_textbook_d_spacings():
    cell = (50.0, 60.0, 70.0, 90.0, 90.0, 90.0)
    d = xtal.d_spacing(cell, [[1, 0, 0], [0, 2, 0], [1, 1, 1]])
    np.testing.assert_allclose(d[:2], [50.0, 30.0])
    np.testing.assert_allclose(d[2], 1 / np.sqrt(1 / 50**2 + 1 / 60**2 + 1 / 70**2))
    hexa = (93.0, 93.0, 130.0, 90.0, 90.0, 120.0)
    # hexagonal: 1/d² = 4/3 (h² + hk + k²)/a² + l²/c²
    np.testing.assert_allclose(xtal.d_spacing(hexa, [[1, 1, 0]]), [93.0 / 2.0], rtol=1e-12)
    assert xtal.cell_volume((50, 50, 50, 10, 10, 170)) < 0


def test_random_rotations_are_uniform_rotations():
    rng = np.random.default_rng(0)
    ms = np.array([xtal.random_rotation(rng) for _ in range(2000)])
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", ms, ms), np.broadcast_to(np.eye(3), ms.shape), atol=1e-12)
    assert np.all(np.linalg.det(ms) > 0)
    # uniform over SO(3): the rotated z axis is uniform on the sphere (mean ~ 0, <z²> ~ 1/3)
    zc = ms[:, :, 2]
    assert np.all(np.abs(zc.mean(axis=0)) < 0.05)
    np.testing.assert_allclose((zc ** 2).mean(axis=0), 1 / 3, atol=0.03)
    q = xtal.matrix_to_quaternion(ms[0])
    np.testing.assert_allclose(xtal.quaternion_to_matrix(q), ms[0], atol=1e-12)


def test_mosaic_domains_fill_a_ball_of_the_given_diameter():
    w = xtal.mosaic_rotations(3000, 0.5, np.random.default_rng(1))
    r = np.degrees(np.linalg.norm(w, axis=1))
    assert r.max() <= 0.25 + 1e-12
    assert r.max() > 0.24
    # uniform in a ball: P(r < R/2) = 1/8
    assert abs(np.mean(r < 0.125) - 0.125) < 0.03


def test_systematic_absences_of_screw_axes():
    hkl = np.array([[0, 0, 1], [0, 0, 2], [1, 0, 0], [2, 0, 0], [0, 3, 0], [1, 1, 1], [0, 0, 6], [0, 0, 3]])
    absent = xtal.systematically_absent(hkl, "P 21 21 21")
    assert absent.tolist() == [True, False, True, False, True, False, False, True]
    a61 = xtal.systematically_absent(np.array([[0, 0, l] for l in range(1, 13)]), "P 61 2 2")
    assert [l for l, a in zip(range(1, 13), a61) if not a] == [6, 12]


def test_wilson_amplitudes_shared_by_equivalents_and_fall_with_resolution():
    cr = CrystalConfig(cell=(60.0, 70.0, 80.0, 90, 90, 90), space_group="P 21 21 21", b_factor=30.0)
    hkl = np.array([[3, 4, 5], [-3, 4, 5], [3, -4, -5], [-3, -4, -5]])
    s = 1.0 / xtal.d_spacing(cr.cell, hkl)
    f2 = xtal.wilson_intensities(hkl, s, cr)
    np.testing.assert_allclose(f2, f2[0])
    rng = np.random.default_rng(2)
    h = rng.integers(-30, 31, size=(20000, 3))
    h = h[np.any(h != 0, axis=1)]
    s = 1.0 / xtal.d_spacing(cr.cell, h)
    f2 = xtal.wilson_intensities(h, s, cr)
    lo, hi = f2[(s > 0.1) & (s < 0.15)].mean(), f2[(s > 0.35) & (s < 0.4)].mean()
    assert lo > 3 * hi
    # shell means follow the Wilson model: atoms x <f²> x exp(-B s²/2) x solvent damping
    expect = (xtal.atoms_per_cell(cr.cell, cr.solvent_fraction) * xtal.mean_atom_f2(s)
              * np.exp(-cr.b_factor * s * s / 2) * xtal.solvent_damping(s, cr.k_sol, cr.b_sol))
    for a, b in [(0.1, 0.2), (0.2, 0.3), (0.3, 0.4)]:
        m = (s > a) & (s < b)
        assert (f2[m] / expect[m]).mean() == pytest.approx(1.0, abs=0.1)
    # acentric Wilson: <I²>/<I>² = 2 in a thin shell
    shell = f2[(s > 0.3) & (s < 0.32)]
    assert 1.7 < (shell ** 2).mean() / shell.mean() ** 2 < 2.3


def test_bulk_solvent_damps_low_angles_only():
    d = xtal.solvent_damping(np.array([0.0, 0.05, 1.0]), 0.35, 46.0)
    assert d[0] == pytest.approx(0.65 ** 2)
    assert d[0] < d[1] < d[2]
    assert d[2] == pytest.approx(1.0, abs=0.01)




def test_model_structure_factors_match_gemmi_direct_sum(tiny_pdb):
    gemmi = pytest.importorskip("gemmi")
    path = tiny_pdb
    sf = xtal.ModelStructureFactors(str(path), 2.0)
    st = gemmi.read_structure(str(path))
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    hkl = np.array([[1, 0, 0], [0, 1, 0], [1, 2, 3], [-1, -2, -3], [3, -4, 5], [5, 5, -5], [0, 0, 0]])
    got = sf.intensities(hkl, k_sol=0.0)
    ref = np.array([abs(calc.calculate_sf_from_model(st[0], [int(v) for v in h])) ** 2 for h in hkl])
    np.testing.assert_allclose(got, ref, rtol=0.01)
    assert got[-1] == pytest.approx((7 + 6 + 6 + 8 + 16) ** 2, rel=0.01)  # F(000) = electrons


def test_bad_model_file(tmp_path):
    from xtalscreen.errors import InputError

    bad = tmp_path / "bad.pdb"
    bad.write_text("ATOM  garbage\n")
    with pytest.raises(InputError, match="bad.pdb"):
        xtal.ModelStructureFactors(str(bad), 2.0)
