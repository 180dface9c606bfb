"""``xtalscreen simulate`` command line."""

from __future__ import annotations

import csv

import pytest

from xtalscreen.cli import main


def test_simulate_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "xtalscreen simulate --preset diffranet" in out and "--workers" in out


def test_simulate_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["simulate", "--preset", "diffranet", "--n", "3", "--out", str(out), "--seed", "2",
               "--classes", "weak,strong,no-crystal", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote 3 frames" in text and "DiffraNet classes" in text
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["diffranet_class"] for r in rows) == ["no-crystal", "strong", "weak"]
    # rerun: everything resumed
    assert main(["simulate", "--preset", "diffranet", "--n", "3", "--out", str(out), "--seed", "2",
                 "--classes", "weak,strong,no-crystal", "--no-progress"]) == 0
    assert "1 resumed" in capsys.readouterr().out


def test_simulate_list_presets(capsys):
    assert main(["simulate", "--list-presets"]) == 0
    out = capsys.readouterr().out
    for name in ("diffranet", "cspad", "rayonix_mx340", "pilatus6m", "eiger16m", "jungfrau4m"):
        assert name in out


@pytest.mark.parametrize("argv, match", [
    (["--preset", "nope", "--n", "2"], "unknown preset 'nope'"),
    (["--n", "2", "--split", "1,2"], "split"),
    (["--n", "2", "--classes", "superb"], "classes"),
])
def test_simulate_errors_are_one_line(tmp_path, capsys, argv, match):
    rc = main(["simulate", "--out", str(tmp_path / "o"), "--no-progress"] + argv)
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("xtalscreen simulate: error:") and match in err and err.count("\n") == 1


def test_simulate_needs_out(capsys):
    assert main(["simulate", "--n", "2"]) == 1
    assert "--out" in capsys.readouterr().err


def test_simulate_measured_visibility_labels_by_the_measured_count(tmp_path, capsys):
    rows = {}
    for rule in ("expected", "measured"):
        out = tmp_path / rule
        assert main(["simulate", "--preset", "diffranet", "--n", "4", "--out", str(out), "--seed", "5",
                     "--classes", "weak", "--visibility", rule, "--no-progress"]) == 0
        with open(out / "labels.csv", newline="") as fh:
            rows[rule] = list(csv.DictReader(fh))
    for e, m in zip(rows["expected"], rows["measured"]):
        assert (e["n_spots_expected"], e["n_spots_measured"]) == (m["n_spots_expected"], m["n_spots_measured"])
        assert e["n_spots"] == e["n_spots_expected"] and m["n_spots"] == m["n_spots_measured"]
    assert any(e["n_spots"] != m["n_spots"] for e, m in zip(rows["expected"], rows["measured"]))


def test_simulate_set_changes_settings_of_the_preset(tmp_path, capsys):
    """``--set``: the frames differ from the preset's only where the setting acts (here a
    stronger jet streak), and the run writes the same labels otherwise."""
    import h5py
    import numpy as np

    outs = {}
    for name, extra in (("plain", []), ("jet", ["--set", "background.jet_streak=30",
                                               "--set", "background.ice_um=[2, 5]"])):
        outs[name] = tmp_path / name
        assert main(["simulate", "--preset", "diffranet", "--n", "2", "--out", str(outs[name]), "--seed", "3",
                     "--classes", "no-crystal", "--no-progress"] + extra) == 0
    with h5py.File(outs["plain"] / "shard-00000.h5") as a, h5py.File(outs["jet"] / "shard-00000.h5") as b:
        pa, pb = a["/entry/data/data"][:].astype(float), b["/entry/data/data"][:].astype(float)
    assert pa.shape == pb.shape and pb.sum() > pa.sum()  # the streak adds photons


@pytest.mark.parametrize("value, match", [
    ("background.jet_streek=3", "background has no field 'jet_streek'; its fields: "),
    ("jet_streak=3", "give section.field with section one of crystal, beam, detector, background, labels"),
    ("background.jet_streak=-1", "jet_streak"),
    ("background.jet_streak", "give SECTION.FIELD=VALUE"),
    ("beam.wavelength=fast", "wavelength"),
    ("detector.geometry=3", "simulation settings {'detector.geometry': 3}"),
])
def test_simulate_set_errors_name_the_setting(tmp_path, capsys, value, match):
    rc = main(["simulate", "--out", str(tmp_path / "o"), "--n", "1", "--no-progress", "--set", value])
    assert rc == 1
    err = capsys.readouterr().err
    assert match in err and not (tmp_path / "o" / "labels.csv").exists()


def test_simulate_resume_with_other_settings_is_refused(tmp_path, capsys):
    """The folder records each preset's settings: resuming it with another --set (or --visibility)
    would mix frames of two setups, so it is refused; the same command resumes."""
    out = tmp_path / "o"
    argv = ["simulate", "--preset", "diffranet", "--n", "2", "--out", str(out), "--no-progress"]
    assert main(argv + ["--set", "background.jet_streak=2"]) == 0
    assert main(argv + ["--set", "background.jet_streak=2"]) == 0  # resumed
    capsys.readouterr()
    assert main(argv + ["--set", "background.jet_streak=3"]) == 1
    err = capsys.readouterr().err
    assert "different arguments (configs differ" in err
    assert main(argv + ["--set", "background.jet_streak=2", "--visibility", "measured"]) == 1


def test_a_dataset_json_from_before_the_settings_digest_still_resumes(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    argv = ["simulate", "--preset", "diffranet", "--n", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    meta = json.loads((out / "dataset.json").read_text())
    del meta["configs"]
    (out / "dataset.json").write_text(json.dumps(meta))
    assert main(argv) == 0
