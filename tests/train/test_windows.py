"""Training windows (xtalscreen.train.windows): cut once, the same inputs, the raw-frame model."""

import json

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.preprocess import PreprocessConfig
from xtalscreen.train import FrameDataset, TrainConfig, load_labels, load_model, predict, train
from xtalscreen.train.windows import cut_window, cut_windows, window_preprocess


@pytest.fixture(scope="module")
def mixed_raw(tmp_path_factory):
    """Simulated frames of a multi-panel CSPAD (2.3 Mpx, geometry beside the shards) and of
    the 512 px DiffraNet CCD, in one set (frame i of preset i % 2), with ice in some."""
    from xtalscreen.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("raw")
    simulate_dataset(root, presets=("cspad", "diffranet"), n=6, seed=3, split=(50, 50, 0), spots="none",
                     classes="blank,weak,strong", progress=False)
    return root


CASES = {
    # the CSPAD binned by 7 into 64 px (each window 64 + 2 * 6), the CCD by 8
    "binned": PreprocessConfig(bin="auto", bin_reduce="max", crop=(64, 64), lcn_window=5, max_shift=6),
    # the CCD (factor 8 > 1, so binned too) and a fixed factor with the matched filter
    "fixed+filter": PreprocessConfig(bin=4, bin_reduce="mean", crop=(48, 48), lcn_window=5, max_shift=5,
                                     prefilter_sigma=1.0),
    # the CCD kept at full resolution (factor 2 <= 2: a 512 px input), the CSPAD binned to 256
    "unbinned": PreprocessConfig(bin="auto", crop=(256, 256), lcn_window=9, max_shift=8, unbinned_up_to=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_window_gives_exactly_the_raw_frames_input(mixed_raw, tmp_path, case):
    """Cropping a window with window_preprocess gives what the raw-frame preprocessing gives on
    the whole frame: without augmentation and with the same random shifts, flips and scaling."""
    pp = CASES[case]
    raw = load_labels(mixed_raw, target="ke")
    win = cut_windows(raw, tmp_path / "w", pp)
    assert len(win) == len(raw) and list(win.labels) == list(raw.labels) and win.splits == raw.splits
    assert [m["raw_frame"] for m in win.meta] == [int(f) for f in raw.frames]
    wpp = window_preprocess(pp)
    for augment in (False, True):
        want = FrameDataset(raw, pp, augment=augment, seed=5)
        got = FrameDataset(win, wpp, augment=augment, seed=5)
        want.set_epoch(2)
        got.set_epoch(2)
        for i in range(len(raw)):
            x, y, _ = got[i]
            x0, y0, _ = want[i]
            assert y == y0 >= 0
            np.testing.assert_allclose(x.numpy(), x0.numpy(), atol=1e-5, err_msg=f"{case} item {i}")
    shapes = json.loads((tmp_path / "w" / "windows.json").read_text())["shapes"]
    if case == "unbinned":  # two window shapes, one file each
        assert sorted(map(tuple, shapes.values())) == [(272, 272), (528, 528)]


def test_a_window_is_small_and_centred_on_the_beam(mixed_raw):
    raw = load_labels(mixed_raw, target="ke")
    ds = FrameDataset(raw, CASES["binned"])
    frame = ds.read(0)  # the CSPAD: 32 panels, assembled to ~1.7k px
    w = cut_window(frame, CASES["binned"])
    assert w.shape == (76, 76) and w.data.dtype == np.float32 and w.mask is not None
    assert w.beam_center == pytest.approx((38, 38), abs=0.5)
    assert frame.data.size > 300 * w.data.size


def test_windows_are_reused_recut_when_the_settings_change_and_the_same_for_any_workers(mixed_raw, tmp_path):
    raw = load_labels(mixed_raw, target="ke")
    lines = []
    one = cut_windows(raw, tmp_path / "w", CASES["binned"], echo=lines.append)
    assert "cut 6 of 6 frames" in lines[-1]
    again = cut_windows(raw, tmp_path / "w", CASES["binned"], echo=lines.append)
    assert "reusing 6" in lines[-1] and again.files == one.files
    other = cut_windows(raw, tmp_path / "w", CASES["binned"].replace(max_shift=2), echo=lines.append)
    assert "cut 6 of 6" in lines[-1]
    assert FrameDataset(other, window_preprocess(CASES["binned"])).read(0).shape == (68, 68)
    two = cut_windows(raw, tmp_path / "w2", CASES["binned"], workers=2)  # real processes
    a, b = FrameDataset(one, window_preprocess(CASES["binned"])), FrameDataset(two, window_preprocess(CASES["binned"]))
    cut_windows(raw, tmp_path / "w", CASES["binned"])
    for i in range(len(raw)):
        np.testing.assert_array_equal(a.read(i).data, b.read(i).data)


def test_unreadable_frames_are_reported_and_left_out(mixed_raw, tmp_path, caplog):
    raw = load_labels(mixed_raw, target="ke")
    raw.frames = raw.frames.copy()
    raw.frames[1] = 999
    win = cut_windows(raw, tmp_path / "w", CASES["binned"])
    kept = [(f, int(i)) for k, (f, i) in enumerate(zip(raw.files, raw.frames)) if k != 1]
    assert len(win) == len(raw) - 1 and [(m["raw_file"], m["raw_frame"]) for m in win.meta] == kept
    assert len(win.skipped) == 1 and "999" in win.skipped[0] and "skipped" in caplog.text
    raw.frames[:] = 999
    with pytest.raises(InputError, match="no frame could be cut"):
        cut_windows(raw, tmp_path / "w3", CASES["binned"])


def test_windows_refuse_image_preprocessing_and_windowed_settings():
    from xtalscreen.preprocess.pipeline import ImagePreprocessConfig

    with pytest.raises(ParameterError, match="X-ray frames"):
        window_preprocess(ImagePreprocessConfig(size=(32, 32)))
    with pytest.raises(ParameterError, match="already reads windows"):
        window_preprocess(CASES["binned"].replace(margin=6))
    with pytest.raises(ParameterError, match="drop images"):
        TrainConfig(target="marco", windows=True)
    with pytest.raises(ParameterError, match="windows_workers"):
        TrainConfig(windows=True, windows_workers=0)


def test_training_on_windows_ships_the_raw_frame_preprocessing(mixed_raw, tmp_path):
    """train(windows=True): the checkpoints keep the raw-frame preprocessing, the model gives the
    same probabilities on raw frames as on its windows, and a resumed run reuses the windows."""
    raw = load_labels(mixed_raw, target="ke")
    pp = CASES["binned"]
    cfg = TrainConfig(model="spotcount", img_size=64, target="ke", batch_size=3, batches_per_epoch=2, epochs=2,
                      optimizer="adamw", lr=0.01, preprocess={"bin": "auto", "bin_reduce": "max", "lcn_window": 5,
                                                              "max_shift": 6},
                      windows=True, windows_workers=1)
    lines = []
    res = train(cfg, raw.split("train"), val=raw.split("val"), out_dir=tmp_path / "run", progress=False,
                echo=lines.append)
    assert any("cut 3 of 3" in ln for ln in lines) and res.windows_seconds > 0
    model, got_pp, _ = load_model(res.best_path)
    assert got_pp == pp.replace(lcn_window=5)
    side = json.loads((tmp_path / "run" / "train.json").read_text())
    assert side["preprocess"]["margin"] == 0 and side["windows"]["preprocess"]["margin"] == 6
    val = raw.split("val")
    p_raw, _ = predict(model, FrameDataset(val, got_pp), batch_size=4)
    win = cut_windows(val, tmp_path / "run" / "windows" / "val", got_pp)
    p_win, _ = predict(model, FrameDataset(win, window_preprocess(got_pp)), batch_size=4)
    np.testing.assert_allclose(p_raw, p_win, atol=1e-5)
    lines.clear()
    more = train(cfg.replace(epochs=3), raw.split("train"), val=val, out_dir=tmp_path / "run",
                 resume=res.last_path, progress=False, echo=lines.append)
    assert more.epochs_run == 3 and any("reusing 3" in ln for ln in lines)


def test_interleaved_detectors_give_one_file_each(mixed_raw, tmp_path):
    """Items of two detectors in alternation (window shapes 272 and 528 px) are cut grouped by
    their preset: one file per detector, every item's window in place."""
    raw = load_labels(mixed_raw, target="ke")
    presets = [m["preset"] for m in raw.meta]
    a = [i for i, p in enumerate(presets) if p == "cspad"]
    b = [i for i, p in enumerate(presets) if p == "diffranet"]
    mixed = raw.subset(np.array([x for pair in zip(a, b) for x in pair]))
    assert [m["preset"] for m in mixed.meta][:2] == ["cspad", "diffranet"]
    pp = CASES["unbinned"]
    win = cut_windows(mixed, tmp_path / "w", pp, workers=2)
    index = json.loads((tmp_path / "w" / "windows.json").read_text())
    assert len(index["files"]) == 2 and sorted(map(tuple, index["shapes"].values())) == [(272, 272), (528, 528)]
    assert [m["preset"] for m in win.meta] == [m["preset"] for m in mixed.meta]
    got, want = FrameDataset(win, window_preprocess(pp)), FrameDataset(mixed, pp)
    for i in (0, 1, 4, 5):
        np.testing.assert_allclose(got[i][0].numpy(), want[i][0].numpy(), atol=1e-5)
