"""Smoke tests on the real frames in ../shared/data/real (skip where absent)."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.spots import find_spots

pytestmark = pytest.mark.realdata


def _frame(real_dir, name):
    from xtalscreen.io import open_frames

    return next(iter(open_frames(str(real_dir / "xray" / name))))


def test_pilatus_l_cysteine_few_weak_spots(real_dir):
    # PROVENANCE: few weak spots (2-22 per frame); module gaps (-1) are masked by the reader
    fr = _frame(real_dir, "l-cyst_01_00001.cbf")
    t = find_spots(fr)
    assert 2 <= len(t) <= 30
    assert not np.any(fr.mask[t["ss"].astype(int), t["fs"].astype(int)])
    assert np.all(np.isfinite(t["d"])) and np.all(t["d"] > 0.5)


@pytest.mark.slow
def test_pilatus6m_frame_both_finders_agree_roughly(real_dir):
    fr = _frame(real_dir, "DLS_I03_smargon_0001.cbf.gz")
    a = find_spots(fr)
    b = find_spots(fr, algorithm="peakfinder8")
    assert 50 <= len(a) <= 1000 and 50 <= len(b) <= 1000
    # most dispersion spots have a peakfinder8 spot within 2 px
    d = np.hypot(a["x"][:, None] - b["x"][None], a["y"][:, None] - b["y"][None]).min(axis=1)
    assert np.mean(d <= 2) > 0.6


def test_cspad_multipanel_positions_are_per_panel(real_dir):
    fr = _frame(real_dir, "idx-20130301060858401.cbf")
    t = find_spots(fr, algorithm="peakfinder8")
    assert len(t) > 20
    g = fr.geometry
    for i in np.unique(t["panel"]):
        p = g.panels[i]
        sel = t["panel"] == i
        assert np.all((t["fs"][sel] >= p.min_fs) & (t["fs"][sel] <= p.max_fs + 1))
        assert np.all((t["ss"][sel] >= p.min_ss) & (t["ss"][sel] <= p.max_ss + 1))


def test_cspad_column_gain_removes_noise_spots(real_dir):
    # dark-subtracted CSPAD ADU: read noise differs between ASICs and is ~2x larger in the edge
    # columns; one gain for the frame found 1,688 "spots", mostly noise in the noisy columns
    fr = _frame(real_dir, "idx-20130301060858401.cbf")
    t_frame = find_spots(fr, gain_per="frame")
    t = find_spots(fr)
    assert len(t) < 0.5 * len(t_frame)
    assert len(find_spots(fr, hot_pixels=True)) < 0.7 * len(t)

    # the two noisy edge columns at each side of an ASIC (2 % of the area) collected 13 % of
    # the spots (218) with one gain; far fewer with per-column gains
    def edge(tab):
        return int(((tab["fs"] % 194 < 2) | (tab["fs"] % 194 > 192)).sum())

    assert edge(t) < 0.3 * edge(t_frame)


def test_cspad_hits_are_listed_as_plain_paths(real_dir, tmp_path, capsys):
    # A full-CBF CSPAD file holds one multi-panel frame: CrystFEL lists it without an event.
    from xtalscreen.cli import main

    src = real_dir / "xray" / "idx-20130301060858401.cbf"
    assert main(["spots", str(src), "--out", str(tmp_path)]) == 0
    hits = (tmp_path / "hits.lst").read_text().splitlines()
    assert hits == [str(src)]
