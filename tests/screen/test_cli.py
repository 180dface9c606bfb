"""``xtalscreen screen``: exit codes, one-line errors, outputs."""

from __future__ import annotations

import pytest

from xtalscreen.cli import main


def test_screen_command_writes_outputs(tmp_path, run_h5, tiny_model, capsys):
    rc = main(["screen", str(run_h5), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
               "--threshold", "0", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "screened 12 frames, 12 hits" in out and "frames/s" in out
    assert len((tmp_path / "o" / "hits.lst").read_text().splitlines()) == 12
    assert (tmp_path / "o" / "hits.h5").is_file()


def test_screen_with_spots_adds_column(tmp_path, run_h5, tiny_model, capsys):
    rc = main(["screen", str(run_h5), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
               "--spots", "--quiet", "--no-hits-h5"])
    assert rc == 0
    lines = (tmp_path / "o" / "results.csv").read_text().splitlines()
    assert lines[0].split(",")[6] == "n_spots"
    n = [int(line.split(",")[6]) for line in lines[1:]]
    assert n[0] >= 10 and n[1] <= 2  # frame 0 has 30 bright spots, frame 1 none
    assert not (tmp_path / "o" / "hits.h5").exists()


@pytest.mark.parametrize("args,needle", [
    (["--model", "{tmp}/nope.pt"], "model not found"),
    (["--model", "{tmp}/junk.pt"], "not an xtalscreen model checkpoint"),
    (["--workers", "0"], "workers"),
    (["--threshold", "2"], "threshold"),
    (["--device", "tpu7"], "device"),
] + ([] if __import__("torch").cuda.is_available() else [(["--device", "cuda"], "no CUDA GPU")]))
def test_errors_are_one_line_exit_1(tmp_path, run_h5, tiny_model, capsys, args, needle):
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model)]
    rc = main(["screen", str(run_h5), "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("xtalscreen screen: error:") and needle in err[0]


def test_no_input_and_no_readable_frame(tmp_path, tiny_model, capsys):
    assert main(["screen", "--model", str(tiny_model), "--out", str(tmp_path / "o")]) == 1
    assert "PATH" in capsys.readouterr().err
    rc = main(["screen", str(tmp_path / "missing.h5"), "--model", str(tiny_model),
               "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "missing.h5" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["screen", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_real_frames_plain_paths_in_hits_lst(tmp_path, real_dir, capsys):
    """Real single-image CBFs (monolithic and multi-panel) with the shipped model."""
    rc = main(["screen", str(real_dir / "xray"), "--out", str(tmp_path / "o"), "--quiet",
               "--threshold", "0"])
    assert rc == 0
    rows = (tmp_path / "o" / "results.csv").read_text().splitlines()[1:]
    assert len(rows) >= 5
    lst = (tmp_path / "o" / "hits.lst").read_text().splitlines()
    assert len(lst) == len(rows)
    assert all(" //" not in line for line in lst if ".cbf" in line)  # one frame per CBF file
