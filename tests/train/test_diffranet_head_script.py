"""scripts/train_diffranet_head.py end to end on a few frames: sets, head file, card, tables."""

import json
import sys
from pathlib import Path

import pytest

from xtalscreen.train import load_labels, load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import train_diffranet_head  # noqa: E402


@pytest.mark.slow
def test_script_writes_a_tested_five_class_file(tmp_path, capsys):
    out = tmp_path / "d5.pt"
    rc = train_diffranet_head.main(["--work", str(tmp_path / "w"), "--train-frames", "25",
                                    "--test-frames", "10", "--test-seed", "5", "--views", "2",
                                    "--sim-workers", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "| 2 |" in text and "| 1 |" in text and "| blank |" in text
    # the sets: separated populations, measured labels
    made = json.loads((tmp_path / "w" / "train" / "dataset.json").read_text())
    assert made["seed"] == 823 and made["n"] == 25
    test = load_labels(tmp_path / "w" / "test", target="diffranet")
    assert len(test) == 10
    model, pp, meta = load_model(out)
    assert meta["views"] == 2 and meta["target"] == "diffranet" and len(meta["classes"]) == 5
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["test_data"]["seed"] == 5 and card["head"]["n_train"] == 25
    assert [r["views"] for r in card["test"]] == [1, 2]
    assert all(r["n"] == 10 and sum(map(sum, r["confusion"])) == 10 for r in card["test"])
