"""scripts/make_calibration_set.py: simulated sets joined, Ke labels from the measured count."""

import sys
from pathlib import Path

from xtalscreen.simulate import simulate_dataset
from xtalscreen.simulate.config import LabelConfig
from xtalscreen.simulate.labels import ke_class
from xtalscreen.train import load_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import make_calibration_set  # noqa: E402


def test_sets_are_linked_and_relabelled_by_the_measured_count(tmp_path):
    for seed in (1, 2):
        simulate_dataset(tmp_path / f"s{seed}", presets="diffranet", n=5, seed=seed, split=(0, 0, 100),
                         spots="none", progress=False)
    n = make_calibration_set.make_set([tmp_path / "s1", tmp_path / "s2"], tmp_path / "cal")
    data = load_labels(tmp_path / "cal", target="ke")
    assert n == 10 and len(data) == 10 and not data.skipped
    assert all(Path(f).is_file() for f in data.files)
    lab = LabelConfig()
    assert [data.classes[y] for y in data.labels] == \
           [ke_class(int(m["n_spots_measured"]), lab) for m in data.meta]
    assert {Path(f).parent.name for f in data.files} == {"a", "b"}
    assert make_calibration_set.make_set([tmp_path / "s1"], tmp_path / "cal") == 5  # again: relinked
