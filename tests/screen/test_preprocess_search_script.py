"""scripts/preprocess_search.py: one detector's frames under several preprocessings."""

import sys
from pathlib import Path

import pytest

from xtalscreen.simulate import simulate_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import preprocess_search  # noqa: E402


@pytest.fixture(scope="module")
def rayonix_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("set")
    simulate_dataset(out, presets="rayonix_mx340", n=8, seed=5, split=(0, 0, 100), spots="none",
                     classes="blank,strong", progress=False)
    return out


def test_candidates_are_scored_and_bad_ones_named(rayonix_set, capsys):
    assert preprocess_search.main([str(rayonix_set), "--preset", "rayonix_mx340", "--threads", "1",
                                   "--try", "none", "--try", "prefilter_sigma=1.2,bin=2"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| model's") or line.startswith("| bin=2")]
    assert [r[0] for r in rows] == ["model's", "bin=2, prefilter_sigma=1.2"]
    assert rows[0][1] == "256 x 256" and rows[1][1] == "256 x 256"  # auto bins 1920 px by 8; bin 2 crops
    assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    assert "8 rayonix_mx340 frames (4 hit+maybe, 4 miss)" in out
    with pytest.raises(SystemExit, match="no test frames of preset 'cspad'"):
        preprocess_search.main([str(rayonix_set), "--preset", "cspad", "--try", "none"])
    from xtalscreen.errors import ParameterError
    with pytest.raises(ParameterError, match="may change only"):
        preprocess_search.main([str(rayonix_set), "--preset", "rayonix_mx340", "--try", "contrast=none"])
