"""scripts/points_on_set.py: one detector's frames of a simulated set at models' points."""

import sys
from pathlib import Path

import pytest

from xtalscreen.simulate import simulate_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import points_on_set  # noqa: E402


@pytest.fixture(scope="module")
def ccd_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("set")
    simulate_dataset(out, presets="diffranet", n=12, seed=3, split=(0, 0, 100), spots="none",
                     classes="blank,strong", progress=False)
    return out


def test_a_detector_at_the_shipped_point_and_the_pooled_one(ccd_set, capsys, tmp_path):
    assert points_on_set.main([str(ccd_set), "--preset", "diffranet", "--views", "8", "--threads", "1",
                               "--model", "default", "--save", str(tmp_path / "p.npz")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| default |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "512x512" and cells[4].startswith("100.00 % (") and cells[5].startswith("100.00 % (")
    assert "12 diffranet frames (6 hit+maybe, 6 miss), 8 view(s)" in out
    assert (tmp_path / "p.npz").is_file()


def test_a_point_of_other_views_and_a_missing_preset_are_refused(ccd_set):
    with pytest.raises(SystemExit, match="fitted at 8 view"):
        points_on_set.main([str(ccd_set), "--preset", "diffranet", "--views", "1", "--model", "default"])
    with pytest.raises(SystemExit, match="no test frames of preset 'cspad'"):
        points_on_set.main([str(ccd_set), "--preset", "cspad", "--model", "default"])
    with pytest.raises(SystemExit, match="weights differ"):  # another network: not one set of probabilities
        points_on_set.main([str(ccd_set), "--preset", "diffranet", "--views", "8", "--model", "default",
                            "--model", "d5=diffranet5"])
