"""``LabelConfig.draw_counts``: separated class populations without changing the labels."""

from __future__ import annotations

import numpy as np
import pytest

from xtalscreen.errors import ParameterError
from xtalscreen.simulate import get_preset, simulate_frame


def test_draw_counts_keep_frames_inside_the_asked_range():
    cfg = get_preset("diffranet")
    cfg.labels.draw_counts = {"weak": (5, 16), "good": (40, 100)}
    cfg.validate()
    counts = {"weak": [], "good": []}
    for i in range(6):
        for cls in counts:
            _, tr = simulate_frame(cfg, rng=40 + i, frame_class=cls)
            counts[cls].append(tr.n_visible)
            assert tr.diffranet_class == cls  # the label is still computed from the count
    assert all(5 <= n < 16 for n in counts["weak"]), counts
    assert all(40 <= n < 100 for n in counts["good"]), counts


def test_default_draws_use_the_whole_label_range():
    cfg = get_preset("diffranet")
    ns = [simulate_frame(cfg, rng=60 + i, frame_class="weak")[1].n_visible for i in range(10)]
    assert min(ns) < 5  # the continuous default reaches the 1-4 spot frames


@pytest.mark.parametrize("bad", [{"weak": (0, 10)}, {"weak": (5, 40)}, {"good": (30, 20)},
                                 {"blank": (1, 2)}, {"strong": (100, None)}, {"weak": 5}, [1, 2]])
def test_bad_draw_counts_name_the_setting(bad):
    cfg = get_preset("diffranet")
    cfg.labels.draw_counts = bad
    with pytest.raises(ParameterError, match="draw_counts"):
        cfg.validate()
