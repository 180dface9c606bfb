"""``xtalscreen train`` / ``evaluate`` / ``tune`` end to end on a tiny simulate-layout dataset."""

import json
import sys
from pathlib import Path

import pytest
import torch

from xtalscreen.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_synthetic import make_sim_dataset  # noqa: E402  (the train tests' synthetic data)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_sim_dataset(root / "sim", n=60, maybe=True)
    rc = main(["train", "--data", str(data), "--target", "ke", "--img-size", "32", "--preprocess", "max_shift=4",
               "--epochs", "3", "--batch-size", "12", "--batches-per-epoch", "3", "--lr", "0.05",
               "--out", str(root / "run"), "--no-progress"])
    assert rc == 0
    return data, root / "run"


def test_train_writes_checkpoints_and_logs(trained, capsys):
    _, run = trained
    for name in ("best.pt", "last.pt", "metrics.jsonl", "train.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "train.json").read_text())["classes"] == ["hit", "maybe", "miss"]


def test_train_resume_extends_the_run(trained, tmp_path, capsys):
    data, run = trained
    import shutil
    shutil.copytree(run, tmp_path / "run")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--resume",
               str(tmp_path / "run" / "last.pt"), "--epochs", "4", "--no-progress"])
    assert rc == 0
    assert "epoch 4/4" in capsys.readouterr().out
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 4


def test_evaluate_writes_the_report_folder(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "rep"
    rc = main(["evaluate", "--model", str(run / "best.pt"), "--data", str(data), "--split", "test",
               "--out", str(out), "--saliency", "2", "--embedding", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "sensitivity" in text and str(out) in text
    for name in ("metrics.json", "report.md", "confusion.png", "confusion_binary.png", "roc.png",
                 "reliability.png", "predictions.csv", "embedding.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "saliency").glob("*.png"))) == 2
    m = json.loads((out / "metrics.json").read_text())
    assert m["classes"] == ["hit", "maybe", "miss"] and m["binary"]["positive"] == ["hit", "maybe"]
    assert len(m["confusion"]) == 3 and len(m["binary"]["confusion"]) == 2
    assert sum(map(sum, m["confusion"])) == m["n"] > 0
    assert "## Collapsed: hit + maybe vs miss" in (out / "report.md").read_text()


def test_evaluate_refuses_a_bad_model_file(trained, tmp_path, capsys):
    data, _ = trained
    bad = tmp_path / "model.pt"
    bad.write_text("hello")
    rc = main(["evaluate", "--model", str(bad), "--data", str(data), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err and "not an xtalscreen model checkpoint" in err
    assert len(err.strip().splitlines()) == 1


def test_train_bad_dataset_one_line_error(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "dataset not found" in err


def test_tune_prints_the_table(trained, tmp_path, capsys):
    data, _ = trained
    rc = main(["tune", "--data", str(data), "--target", "binary", "--img-size", "32", "--epochs", "1",
               "--batches-per-epoch", "1", "--trials", "1", "--out", str(tmp_path / "t"),
               "--storage", f"sqlite:///{tmp_path / 't.db'}"])
    assert rc == 0
    assert "| trial | state | val accuracy" in capsys.readouterr().out
    assert (tmp_path / "t" / "results.md").is_file()


@pytest.mark.parametrize("cmd", ["train", "train-head", "evaluate", "tune"])
def test_help_has_examples(cmd, capsys):
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    assert "examples:" in capsys.readouterr().out


def test_train_with_the_spot_count_loss(trained, tmp_path, capsys):
    data, _ = trained
    base = ["train", "--data", str(data), "--target", "ke", "--img-size", "32", "--preprocess", "max_shift=4",
            "--epochs", "1", "--batch-size", "12", "--batches-per-epoch", "2", "--lr", "0.05", "--no-progress",
            "--count-loss", "0.5"]
    assert main(base + ["--count-column", "n_spots", "--out", str(tmp_path / "a")]) == 0
    line = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["train_count_loss"] > 0
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "b")]) == 1  # this set has no n_spots_measured column
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("xtalscreen") and "'n_spots_measured' column" in last


def test_train_head_then_evaluate_at_its_views(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "h.pt"
    rc = main(["train-head", "--model", str(run / "best.pt"), "--data", str(data), "--target", "binary",
               "--split", "all", "--views", "2", "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0 and out.is_file() and f"wrote {out}" in cap.out and "2 view(s)" in cap.out
    assert "cross-validated log-loss" in cap.err  # C chosen by cross-validation, each C printed
    rc = main(["evaluate", "--model", str(out), "--data", str(data), "--split", "test",
               "--out", str(tmp_path / "rep"), "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["classes"] == ["hit", "miss"] and m["provenance"]["views"] == 2


def test_train_head_errors_name_the_problem(trained, tmp_path, capsys):
    data, run = trained
    rc = main(["train-head", "--model", str(tmp_path / "nope.pt"), "--data", str(data), "--out",
               str(tmp_path / "h.pt")])
    err = capsys.readouterr().err
    assert rc == 1 and "model not found" in err and "nope.pt" in err
    # the synthetic set has no blank and no good frame: a DiffraNet head cannot be fitted
    rc = main(["train-head", "--model", str(run / "best.pt"), "--data", str(data), "--target", "diffranet",
               "--split", "all", "--out", str(tmp_path / "h.pt")])
    err = capsys.readouterr().err
    assert rc == 1 and "blank (0)" in err and not (tmp_path / "h.pt").exists()
    rc = main(["train-head", "--model", str(run / "best.pt"), "--data", str(data), "--c", "-1",
               "--target", "ke", "--out", str(tmp_path / "h.pt")])
    assert rc == 1 and "--c must be a positive number" in capsys.readouterr().err


def test_train_on_windows_then_evaluate_the_raw_frames(trained, tmp_path, capsys):
    """--windows: the frames are binned and cut once into OUT/windows/, the run says so, and its
    best.pt evaluates the raw frames (its preprocessing bins them as training did)."""
    data, _ = trained
    rc = main(["train", "--data", str(data), "--target", "ke", "--img-size", "32", "--preprocess", "bin=2",
               "--preprocess", "max_shift=4", "--windows", "--windows-workers", "1", "--epochs", "1",
               "--batch-size", "12", "--batches-per-epoch", "2", "--lr", "0.05", "--no-progress",
               "--out", str(tmp_path / "w")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "training windows: cut" in out and "windows cut in" in out
    assert (tmp_path / "w" / "windows" / "train" / "windows.json").is_file()
    assert json.loads((tmp_path / "w" / "train.json").read_text())["preprocess"]["bin"] == 2
    rc = main(["evaluate", "--model", str(tmp_path / "w" / "best.pt"), "--data", str(data), "--split", "test",
               "--out", str(tmp_path / "rep"), "--no-progress"])
    assert rc == 0 and "sensitivity" in capsys.readouterr().out
    assert main(["train", "--data", str(data), "--target", "ke", "--windows", "--windows-workers", "0",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "windows_workers must be an integer >= 1" in capsys.readouterr().err
