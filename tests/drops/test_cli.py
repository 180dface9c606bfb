"""``xtalscreen drops init | import | render`` through xtalscreen.cli.main."""

from __future__ import annotations

import csv

import pytest

from xtalscreen.cli import main


def _one_line_error(capsys, rc) -> str:
    out = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out.err
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xtalscreen drops: error: ")
    return lines[0]


def test_render_init_import_round_trip(db_url, tmp_path, capsys):
    out = tmp_path / "plates"
    assert main(["drops", "render", "--plates", "2", "--out", str(out), "--seed", "4",
                 "--size", "64", "--wells", "5", "--format", "png"]) == 0
    text = capsys.readouterr().out
    assert "rendered 10 drop image(s) on 2 plate(s)" in text
    assert main(["drops", "init", "--db", db_url]) == 0
    assert "created the drop database" in capsys.readouterr().out
    assert main(["drops", "init", "--db", db_url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["drops", "import", "--db", db_url, str(out)]) == 0
    assert "2 plate(s), 2 inspection(s), 10 image(s), 0 score(s) created; 0 already present" \
        in capsys.readouterr().out
    assert main(["drops", "import", "--db", db_url, str(out / "plates.csv")]) == 0
    assert "0 image(s), 0 score(s) created; 10 already present" in capsys.readouterr().out


def test_import_reports_bad_rows_and_scores(db_url, tmp_path, capsys):
    out = tmp_path / "plates"
    main(["drops", "render", "--out", str(out), "--size", "64", "--wells", "2", "--format", "png"])
    main(["drops", "init", "--db", db_url])
    with open(out / "truth.csv") as fh:
        truth = list(csv.DictReader(fh))
    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_uri", "scorer", "class", "time"])
        w.writerow([str(out / truth[0]["image_uri"]), "ann", truth[0]["class"], "2026-02-01T10:00:00Z"])
        w.writerow([str(out / truth[1]["image_uri"]), "ann", "gem", "2026-02-01T10:00:00Z"])
    capsys.readouterr()
    rc = main(["drops", "import", "--db", db_url, str(out), "--scores", str(scores)])
    assert rc == 0
    res = capsys.readouterr()
    assert "2 image(s), 1 score(s) created" in res.out and "1 bad" in res.out
    assert f"skipped {scores}:3: unknown class 'gem'" in res.err


@pytest.mark.parametrize("db, match", [
    ("nosuch://x/y", "not supported"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot connect to the database"),
])
def test_bad_database_urls_give_one_line(tmp_path, capsys, db, match):
    rc = main(["drops", "init", "--db", db])
    assert match in _one_line_error(capsys, rc)


def test_missing_folder_and_missing_database(tmp_path, capsys):
    db = tmp_path / "d.sqlite"
    rc = main(["drops", "import", "--db", str(db), str(tmp_path)])
    assert "drops init" in _one_line_error(capsys, rc)
    assert not db.exists()  # a typo in --db does not leave an empty database behind
    assert main(["drops", "init", "--db", str(db)]) == 0
    capsys.readouterr()
    rc = main(["drops", "import", "--db", str(db), str(tmp_path / "nowhere")])
    assert "no such file or folder" in _one_line_error(capsys, rc)
    rc = main(["drops", "import", "--db", str(db)])
    assert "SOURCE" in _one_line_error(capsys, rc)
    rc = main(["drops", "init", "--db", str(tmp_path / "no" / "dir" / "d.sqlite")])
    assert "folder of the database file does not exist" in _one_line_error(capsys, rc)
    rc = main(["drops", "init", "--db", str(tmp_path)])
    assert "is a folder" in _one_line_error(capsys, rc)


def test_render_bad_arguments_give_one_line(tmp_path, capsys):
    rc = main(["drops", "render", "--out", str(tmp_path), "--plates", "0"])
    assert "--plates" in _one_line_error(capsys, rc)


def test_default_database_comes_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XTALSCREEN_DB", str(tmp_path / "env.sqlite"))
    assert main(["drops", "init"]) == 0
    assert (tmp_path / "env.sqlite").is_file()


@pytest.mark.parametrize("argv", [["drops", "--help"], ["drops", "init", "--help"],
                                  ["drops", "import", "--help"], ["drops", "render", "--help"]])
def test_help_has_examples(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
