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
    assert cells[1] == "512x512" and cells[2] == "model's"
    assert cells[5].startswith("100.00 % (") and cells[6].startswith("100.00 % (")
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


def test_a_point_that_changes_the_preprocessing_is_scored_with_it(ccd_set, capsys, tmp_path):
    """A point with a matched filter: the detector's frames are scored through it, once per
    distinct preprocessing, and the saved probabilities are per model."""
    import numpy as np

    from xtalscreen.models.pretrained import resolve_model
    from xtalscreen.train import load_model, update_checkpoint

    path = resolve_model("default")
    points = dict(load_model(path)[2]["operating_points"])
    points["512x512"] = {**points["512x512"], "preprocess": {"prefilter_sigma": 1.0}}
    update_checkpoint(path, tmp_path / "filtered.pt", operating_points=points)
    assert points_on_set.main([str(ccd_set), "--preset", "diffranet", "--views", "8", "--threads", "1",
                               "--model", "default", "--model", f"filtered={tmp_path / 'filtered.pt'}",
                               "--save", str(tmp_path / "p.npz")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| filtered |"))
    assert [c.strip() for c in row.strip("|").split("|")][2] == "prefilter_sigma=1.0"
    saved = np.load(tmp_path / "p.npz")
    assert not np.allclose(saved["probs_default"], saved["probs_filtered"])
    np.testing.assert_array_equal(saved["probs"], saved["probs_default"])
