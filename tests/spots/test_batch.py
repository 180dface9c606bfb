"""Batch runs: outputs, workers, bad files, and the CLI commands."""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest

from xtalscreen.cli import main
from xtalscreen.io import Frame, write_hdf5_run
from xtalscreen.spots.batch import process_frames, run_spots
from xtalscreen.spots.hitrules import SpotCountRule


@pytest.fixture
def run_dir(tmp_path, synth):
    make_image = synth
    frames = []
    for i in range(6):
        img, _ = make_image((96, 96), n_spots=0 if i % 2 else 12, rng=i)
        frames.append(Frame(data=img, wavelength=1.0, pixel_size=172e-6, distance=0.1))
    write_hdf5_run(frames, tmp_path / "run.h5")
    img, _ = make_image((64, 64), n_spots=11, rng=9)
    np.save(tmp_path / "single.npy", img)
    (tmp_path / "broken.h5").write_text("not hdf5")
    return tmp_path


def test_run_writes_all_outputs(run_dir, tmp_path):
    out = tmp_path / "out"
    bad = []
    s = run_spots([run_dir / "run.h5", run_dir / "single.npy", run_dir / "broken.h5"], out_dir=out,
                  rule=SpotCountRule(min_spots=10), report=bad.append, progress=False)
    assert (s.frames, s.bad, s.hits) == (7, 1, 4)
    assert len(bad) == 1 and "broken.h5" in bad[0]
    assert s.spots_per_hit == pytest.approx((3 * 12 + 11) / 4)
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert [int(r["n_spots"]) for r in rows] == [12, 0, 12, 0, 12, 0, 11]
    assert [r["decision"] for r in rows][:2] == ["hit", "miss"]
    spots = list(csv.DictReader(open(out / "spots.csv")))
    assert len(spots) == 47
    hits = (out / "hits.lst").read_text().splitlines()
    assert hits[0].endswith("run.h5 //0") and hits[-1].endswith("single.npy")
    with h5py.File(out / "peaks.h5") as f:
        g = f["entry_1/result_1"]
        n = g["nPeaks"][:]
        assert n.tolist() == [12, 0, 12, 0, 12, 0, 11]
        x = g["peakXPosRaw"][0, :12]
        # CXI raw positions: pixel centres at integers = our continuous coordinate - 0.5
        fs0 = sorted(float(r["fs"]) for r in spots if r["frame"] == "0" and r["file"].endswith("run.h5"))
        np.testing.assert_allclose(sorted(x), np.array(fs0) - 0.5, atol=1e-3)
        assert np.all(g["peakXPosRaw"][1] == 0)
        assert g["source_frame"][:].tolist() == [0, 1, 2, 3, 4, 5, 0]


def test_workers_give_the_same_results_in_order(run_dir):
    from xtalscreen.io import open_frames

    one = [(r.index, r.n_spots) for r in process_frames(open_frames(run_dir / "run.h5"))]
    two = [(r.index, r.n_spots) for r in process_frames(open_frames(run_dir / "run.h5"), workers=2)]
    assert one == two == [(0, 12), (1, 0), (2, 12), (3, 0), (4, 12), (5, 0)]


def test_workers_read_their_own_frames(run_dir, tmp_path):
    # workers > 1: jobs are (file, frames), results in input order, bad items reported
    lst = tmp_path / "in.lst"
    lst.write_text(f"{run_dir / 'run.h5'} //5\n{run_dir / 'run.h5'} //9\n")
    paths = [run_dir / "run.h5", run_dir / "single.npy", run_dir / "broken.h5", lst]
    bad1, bad2 = [], []
    s1 = run_spots(paths, out_dir=tmp_path / "o1", report=bad1.append, progress=False)
    s2 = run_spots(paths, out_dir=tmp_path / "o2", report=bad2.append, progress=False, workers=2)
    assert (s1.frames, s1.bad, s1.hits) == (s2.frames, s2.bad, s2.hits) == (8, 2, 4)
    assert any("broken.h5" in b for b in bad2) and any("frame 9" in b for b in bad2)
    assert (tmp_path / "o1" / "frames.csv").read_text() == (tmp_path / "o2" / "frames.csv").read_text()
    assert (tmp_path / "o1" / "spots.csv").read_text() == (tmp_path / "o2" / "spots.csv").read_text()


def test_bad_frame_is_reported_not_fatal():
    frames = [Frame(data=np.zeros((32, 32), np.float32)),
              Frame(data=np.zeros((32, 32), np.float32), source="x", index=1)]
    res = list(process_frames(frames, filters={"d_min": 2.0}))
    assert all(r.error is not None and "wavelength" in r.error for r in res)


def test_cli_spots_and_label(run_dir, tmp_path, capsys):
    rc = main(["spots", str(run_dir / "run.h5"), "--out", str(tmp_path / "o"), "--no-progress",
               "-p", "min_snr=5", "--algorithm", "peakfinder8"])
    out = capsys.readouterr().out
    assert rc == 0 and "hits: 3 (50.0 %)" in out
    rc = main(["spots", str(run_dir / "run.h5"), str(run_dir / "broken.h5"), "--no-progress"])
    assert rc == 2 and "1 bad" in capsys.readouterr().out
    rc = main(["spots", str(run_dir / "run.h5"), "-p", "bogus=1"])
    assert rc == 1 and "bogus" in capsys.readouterr().err
    lab = tmp_path / "labels.csv"
    rc = main(["label", str(run_dir / "run.h5"), str(run_dir / "single.npy"), "--out", str(lab),
               "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader(open(lab)))
    assert [r["label"] for r in rows] == ["hit", "miss", "hit", "miss", "hit", "miss", "hit"]
    assert set(rows[0]) == {"file", "frame", "split", "label", "n_spots"}
    assert {r["split"] for r in rows} <= {"train", "val", "test"}
    # Li's rule drops the ambiguous frames (2..10 spots)
    rc = main(["label", str(run_dir / "run.h5"), "--out", str(lab), "--overwrite",
               "-r", "hit_above=12", "--no-progress"])
    assert rc == 0 and len(list(csv.DictReader(open(lab)))) == 3
    assert main(["label", str(run_dir / "run.h5"), "--out", str(lab)]) == 1  # exists


def test_cli_help_has_examples(capsys):
    for cmd in ("spots", "label", "baseline"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "examples:" in capsys.readouterr().out
