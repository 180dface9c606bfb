"""Fixtures of the simulator tests."""

from __future__ import annotations

import pytest

TINY_PDB = """\
CRYST1   30.000   40.000   50.000  90.00  90.00  90.00 P 1           1
ATOM      1  N   ALA A   1       1.000   2.000   3.000  1.00 20.00           N
ATOM      2  CA  ALA A   1       2.400   2.100   3.200  1.00 20.00           C
ATOM      3  C   ALA A   1       3.000   3.500   3.100  1.00 20.00           C
ATOM      4  O   ALA A   1       2.500   4.500   3.600  1.00 20.00           O
ATOM      5  S   MET A   2      10.000  12.000  20.000  1.00 20.00           S
END
"""


@pytest.fixture
def tiny_pdb(tmp_path):
    """A 5-atom P1 model (30 x 40 x 50 Å cell; 49 electrons)."""
    path = tmp_path / "tiny.pdb"
    path.write_text(TINY_PDB)
    return path
