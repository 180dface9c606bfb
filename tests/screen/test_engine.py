"""screen(): outputs consistent with each other, workers, bad input, partial results."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import open_frames, write_hdf5_run
from xtalscreen.io.frame import Frame
from xtalscreen.screen import screen
from xtalscreen.screen.collector import FileCollector
from xtalscreen.screen.workers import FrameResult


def rows(out):
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def kept_threshold(out):
    """A threshold that keeps about half the frames of a finished run."""
    s = sorted(float(r["p_hit"]) + float(r["p_maybe"]) for r in rows(out))
    return float(np.median(s))


def test_outputs_consistent(tmp_path, run_h5, tiny_model):
    s0 = screen([run_h5], out=tmp_path / "a", model=str(tiny_model), live=False)
    assert s0.frames == 12 and not s0.bad_items
    thr = kept_threshold(tmp_path / "a")
    s = screen([run_h5], out=tmp_path / "b", model=str(tiny_model), threshold=thr, batch=5, live=False)
    r = rows(tmp_path / "b")
    assert [int(x["frame"]) for x in r] == list(range(12))
    assert list(r[0]) == ["file", "frame", "p_hit", "p_maybe", "p_miss", "decision", "flags"]
    for x in r:
        p = float(x["p_hit"]) + float(x["p_maybe"]) + float(x["p_miss"])
        assert p == pytest.approx(1.0, abs=1e-4)
        assert (x["decision"] in ("hit", "maybe")) == (float(x["p_hit"]) + float(x["p_maybe"]) >= thr)
    kept = [int(x["frame"]) for x in r if x["decision"] in ("hit", "maybe")]
    assert 0 < len(kept) < 12 and s.hits == len(kept)
    lst = (tmp_path / "b" / "hits.lst").read_text().splitlines()
    assert lst == [f"{run_h5} //{i}" for i in kept]  # multi-event HDF5: path //N
    hits = list(open_frames(tmp_path / "b" / "hits.h5"))
    src = list(open_frames(run_h5))
    assert [h.meta["source_index"] for h in hits] == kept  # provenance travels with the frame
    for h, i in zip(hits, kept):
        np.testing.assert_array_equal(h.data, src[i].data)
    assert s.hit_rate == pytest.approx(len(kept) / 12)
    assert set(s.timings) >= {"read", "preprocess", "infer", "write"}


def test_two_workers_same_results(tmp_path, run_h5, tiny_model):
    s1 = screen([run_h5, run_h5], out=tmp_path / "w1", model=str(tiny_model), batch=5, live=False)
    s2 = screen([run_h5, run_h5], out=tmp_path / "w2", model=str(tiny_model), batch=5, workers=2,
                live=False)
    r1, r2 = rows(tmp_path / "w1"), rows(tmp_path / "w2")
    assert len(r1) == len(r2) == 24 and s1.hits == s2.hits
    for a, b in zip(r1, r2):
        assert (a["file"], a["frame"], a["decision"]) == (b["file"], b["frame"], b["decision"])
        assert float(a["p_hit"]) == pytest.approx(float(b["p_hit"]), abs=1e-4)
    assert (tmp_path / "w1" / "hits.lst").read_text() == (tmp_path / "w2" / "hits.lst").read_text()


def test_bad_files_and_frames_are_skipped_and_counted(tmp_path, run_h5, tiny_model):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an hdf5 file at all")
    lines = []
    s = screen([run_h5, tmp_path / "missing.h5", broken], out=tmp_path / "o", model=str(tiny_model),
               live=False, echo=lines.append)
    assert s.frames == 12
    assert len(s.bad_items) == 2
    bad = (tmp_path / "o" / "bad.txt").read_text()
    assert "missing.h5" in bad and "broken.h5" in bad
    assert sum("skipped" in ln for ln in lines) == 2


def test_workers_warmed_by_the_parent_and_sub_batches(tmp_path, run_h5, tiny_model):
    """With 2 forked workers the parent builds and warms the processor on the first task's
    first frame; a first task it cannot read is left to the worker, which reports it. A work
    unit larger than WORKER_FRAMES is processed in pieces with the same results, and nothing
    stays in the parent afterwards."""
    from xtalscreen.screen import workers as W

    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an hdf5 file at all")
    assert W.WORKER_FRAMES < 12
    s1 = screen([run_h5], out=tmp_path / "w1", model=str(tiny_model), batch=12, live=False)
    s2 = screen([broken, run_h5], out=tmp_path / "w2", model=str(tiny_model), workers=2, batch=12,
                live=False)
    assert s2.frames == s1.frames == 12 and s2.hits == s1.hits
    assert len(s2.bad_items) == 1 and "broken.h5" in s2.bad_items[0]
    assert rows(tmp_path / "w2") == rows(tmp_path / "w1")
    assert W._STATE == {}
    s3 = screen([run_h5], out=tmp_path / "w3", model=str(tiny_model), workers=2, batch=12, live=False)
    assert rows(tmp_path / "w3") == rows(tmp_path / "w1") and W._STATE == {}


def test_other_shapes_all_masked_and_missing_beam_center(tmp_path, tiny_model, frames_factory):
    make_frames = frames_factory
    a = tmp_path / "a.h5"
    frames = make_frames(3, (120, 90), beam_center=None)           # no beam centre at all
    frames[1] = frames[1].replace(mask=np.ones((120, 90), bool))   # all masked
    write_hdf5_run(frames, a)
    b = tmp_path / "b.npy"                                          # another detector size
    np.save(b, make_frames(1, (300, 310))[0].data)
    lines = []
    s = screen([a, b], out=tmp_path / "o", model=str(tiny_model), threshold=0.0, live=False,
               echo=lines.append)
    r = rows(tmp_path / "o")
    assert [x["decision"] for x in r][:3] == ["hit" if float(r[0]["p_hit"]) >= float(r[0]["p_maybe"])
                                             else "maybe", "bad", r[2]["decision"]]
    assert r[1]["p_hit"] == "" and "all_masked" in r[1]["flags"]
    assert s.bad_frames == 1 and s.frames == 4 and s.hits == 3
    assert all("no_beam_center" in x["flags"] for x in r[:3])
    warned = [ln for ln in lines if "no beam centre" in ln]
    assert len(warned) == 2  # once per file (a.h5 and b.npy), not per frame
    # single-image file: plain path in hits.lst; shapes split over hits.h5 / hits_2.h5
    lst = (tmp_path / "o" / "hits.lst").read_text().splitlines()
    assert lst[-1] == str(b)
    assert [len(list(open_frames(p))) for p in s.outputs["hits_h5"]] == [2, 1]


def test_far_detector_warns_once_per_file(tmp_path):
    lines = []
    c = FileCollector(tmp_path, live=False, trained_on={"angular_pixel": [5e-4, 2e-3]},
                      echo=lines.append)
    c.start()
    for i in range(3):
        c.add(FrameResult("x.h5", i, 0.1, 0.1, 0.8, "miss", pixel_size=75e-6, distance=2.0))
        c.add(FrameResult("y.h5", i, 0.1, 0.1, 0.8, "miss", pixel_size=172e-6, distance=0.2))
    s = c.finish()
    assert len(lines) == 1 and "x.h5" in lines[0] and "outside" in lines[0]
    assert s.frames == 6 and s.hits == 0 and s.outputs["hits_h5"] == []


def test_a_detector_measured_unreliable_warns_once_per_file(tmp_path):
    lines = []
    why = "keeps 70 % of the hits on simulated frames; calibrate or fine-tune on your own frames"
    c = FileCollector(tmp_path, live=False, echo=lines.append,
                      trained_on={"unreliable": [{"match": ["rayonix", "MX340"], "why": why}]})
    c.start()
    for i in range(3):
        c.add(FrameResult("r.h5", i, 0.1, 0.1, 0.8, "miss", detector="Rayonix MX340-HS"))
        c.add(FrameResult("m.cbf", i, 0.1, 0.1, 0.8, "miss", detector="mx340hs"))
        c.add(FrameResult("p.cbf", i, 0.1, 0.1, 0.8, "miss", detector="PILATUS 6M"))
        c.add(FrameResult("n.npy", i, 0.1, 0.1, 0.8, "miss"))
    c.finish()
    assert len(lines) == 2 and "r.h5" in lines[0] and "m.cbf" in lines[1]
    assert "'Rayonix MX340-HS'" in lines[0] and why in lines[0]


def test_a_model_for_one_detector_warns_on_others_once_per_file(tmp_path):
    lines = []
    c = FileCollector(tmp_path, live=False, echo=lines.append,
                      trained_on={"only": {"match": ["rayonix", "mx340"], "why": "made for the Rayonix only"}})
    c.start()
    for i in range(3):
        c.add(FrameResult("r.h5", i, 0.1, 0.1, 0.8, "miss", detector="Rayonix MX340-HS"))
        c.add(FrameResult("p.cbf", i, 0.1, 0.1, 0.8, "miss", detector="PILATUS 6M"))
        c.add(FrameResult("n.npy", i, 0.1, 0.1, 0.8, "miss"))  # no name: nothing to check
    c.finish()
    assert lines == ["warning: p.cbf: detector 'PILATUS 6M': made for the Rayonix only"]


@pytest.mark.parametrize("workers", [1, 2])
def test_crash_leaves_valid_partial_csv(tmp_path, tiny_model, frames_factory, workers):
    make_frames = frames_factory
    class Exploding:
        def count(self):
            return None

        def frames(self):
            yield from make_frames(7)
            raise RuntimeError("detector on fire")

        def close(self):
            pass

    with pytest.raises(RuntimeError, match="on fire"):
        screen(out=tmp_path / "o", model=str(tiny_model), source=Exploding(), batch=3, live=False,
               threshold=0.0, workers=workers)
    r = rows(tmp_path / "o")
    assert [int(x["frame"]) for x in r] == list(range(6))  # the two full batches are on disk
    assert all(x["decision"] in ("hit", "maybe") for x in r)
    # hits.h5 holds the kept frames of those batches (written as they came, closed on the way out)
    hits = list(open_frames(tmp_path / "o" / "hits.h5"))
    assert [h.meta["source_index"] for h in hits] == list(range(6))
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["bad.txt", "hits.h5", "hits.lst",
                                                                  "results.csv"]


def test_model_of_another_task_or_version_is_refused(tmp_path, run_h5, tiny_model):
    import torch

    from xtalscreen.models import create_model
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import save_checkpoint

    other = tmp_path / "drop.pt"
    save_checkpoint(other, create_model("ke2018", num_classes=3, img_size=64),
                    preprocess=PreprocessConfig(bin=2, crop=(64, 64)), classes=("a", "b", "c"),
                    target="ke", task="drop-scoring")
    with pytest.raises(InputError, match="task"):
        screen([run_h5], out=tmp_path / "o", model=str(other))
    state = torch.load(tiny_model, weights_only=True)
    state["schema"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(InputError, match="schema"):
        screen([run_h5], out=tmp_path / "o", model=str(newer))
    wrong = tmp_path / "classes.pt"
    save_checkpoint(wrong, create_model("ke2018", num_classes=3, img_size=64),
                    preprocess=PreprocessConfig(bin=2, crop=(64, 64)),
                    classes=("clear", "crystals", "precipitate"), target="ke")
    with pytest.raises(ParameterError, match="hit-screening"):
        screen([run_h5], out=tmp_path / "o", model=str(wrong))
    with pytest.raises(InputError, match="not found"):
        screen([run_h5], out=tmp_path / "o", model=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize("kw", [{"workers": 0}, {"batch": 0}, {"threshold": 1.5}, {"workers": 1.5},
                                {"device": "tpu7"}])
def test_bad_parameters(tmp_path, run_h5, tiny_model, kw):
    with pytest.raises(ParameterError):
        screen([run_h5], out=tmp_path / "o", model=str(tiny_model), **kw)


def test_device_cpu_explicit_and_cuda_refused_without_gpu(tmp_path, run_h5, tiny_model):
    """``device`` moves inference only: on the CPU it gives the same results as the default;
    asking for CUDA on a machine without a GPU is refused before any output is written."""
    import torch

    a = screen([run_h5], out=tmp_path / "a", model=str(tiny_model), live=False)
    b = screen([run_h5], out=tmp_path / "b", model=str(tiny_model), live=False, device="cpu",
               workers=2)
    ra = (tmp_path / "a" / "results.csv").read_text().splitlines()
    rb = (tmp_path / "b" / "results.csv").read_text().splitlines()
    assert a.frames == b.frames and ra == rb
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA GPU"):
            screen([run_h5], out=tmp_path / "c", model=str(tiny_model), device="cuda")
        assert not (tmp_path / "c").exists()


def _hits_content(path):
    return [(f.data, f.mask, f.meta.get("source"), f.meta["source_index"], f.beam_center,
             f.pixel_size, f.distance, f.wavelength, f.dtype) for f in open_frames(path)]


def test_two_workers_same_hits_h5(tmp_path, run_h5, tiny_model, frames_factory):
    # a second run whose masks differ frame by frame (per-frame mask in the part files)
    varied = tmp_path / "varied.h5"
    frames = frames_factory(7, seed=3)
    for i in (2, 5):
        m = np.zeros((200, 180), bool)
        m[i:i + 9, :20] = True
        frames[i] = frames[i].replace(mask=m)
    write_hdf5_run(frames, varied)
    paths = [run_h5, varied, run_h5]
    s1 = screen(paths, out=tmp_path / "w1", model=str(tiny_model), batch=4, threshold=0.0,
                live=False)
    s2 = screen(paths, out=tmp_path / "w2", model=str(tiny_model), batch=4, threshold=0.0,
                workers=2, live=False)
    assert s1.hits == s2.hits == 31
    assert sorted(p.name for p in (tmp_path / "w2").iterdir()) == ["bad.txt", "hits.h5", "hits.lst",
                                                                   "results.csv"]
    h1, h2 = _hits_content(tmp_path / "w1" / "hits.h5"), _hits_content(tmp_path / "w2" / "hits.h5")
    assert len(h1) == len(h2) == 31
    kept = [(x["file"], int(x["frame"])) for x in rows(tmp_path / "w2")
            if x["decision"] in ("hit", "maybe")]
    src = {str(p): list(open_frames(p)) for p in (run_h5, varied)}
    for a, b, (file, idx) in zip(h1, h2, kept):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]
        assert b[3] == idx  # same order as the hits in results.csv
        np.testing.assert_array_equal(b[0], src[file][idx].data)
        np.testing.assert_array_equal(b[1], src[file][idx].mask)
    assert sum(a[1].any() for a in h2) == 2  # only the two masked frames of varied.h5


def test_source_chunks_copied_only_when_the_layout_matches(tmp_path, run_h5, frames_factory):
    import h5py

    from xtalscreen.screen.workers import SourceChunks, encode_kept

    fr = list(open_frames(run_h5, frames=[1, 4]))
    gz = tmp_path / "gz.h5"
    write_hdf5_run(frames_factory(2), gz, compression="gzip")
    gz_fr = list(open_frames(gz))
    enc = encode_kept(fr + gz_fr, raw_chunks=True)
    # the bitshuffle-LZ4 source frames are named, not read: (file, dataset, frame)
    assert enc[0].chunk is None and enc[0].chunk_ref == (str(run_h5), "/entry/data/data", 1)
    assert enc[1].chunk is None and enc[1].chunk_ref == (str(run_h5), "/entry/data/data", 4)
    gz_raw = h5py.File(gz)["/entry/data/data"].id.read_direct_chunk((0, 0, 0))[1]
    assert enc[2].chunk_ref is None
    assert enc[2].chunk[1] != gz_raw  # gzip source: decoded by the reader, encoded again
    hook = SourceChunks()
    with h5py.File(tmp_path / "x.h5", "w") as f:
        ds = f.create_dataset("d", shape=(1, 200, 180), chunks=(1, 200, 180), dtype=np.float32,
                              compression="gzip")
        assert hook(fr[0], ds) is None and hook.ref(fr[0], ds) is None  # other filter pipeline
    hook.close()
    write_hdf5_run(enc, tmp_path / "hits.h5")
    got = list(open_frames(tmp_path / "hits.h5"))
    for g, f in zip(got, fr + gz_fr):
        np.testing.assert_array_equal(g.data, f.data)
        np.testing.assert_array_equal(g.mask, f.mask)
        assert g.meta["source_index"] == f.index
    with h5py.File(run_h5) as src, h5py.File(tmp_path / "hits.h5") as out:
        # the writer copied the source chunks as they are
        sd, od = src["/entry/data/data"], out["/entry/data/data"]
        assert od.id.read_direct_chunk((0, 0, 0))[1] == sd.id.read_direct_chunk((1, 0, 0))[1]
        assert od.id.read_direct_chunk((1, 0, 0))[1] == sd.id.read_direct_chunk((4, 0, 0))[1]


def test_chunk_ref_names_the_file_an_external_link_points_to(tmp_path, run_h5, frames_factory):
    """A frame read through an external link is referenced in the file that holds its data,
    not in the file that links to it (which may hold a dataset of the same name)."""
    import shutil

    import h5py

    from xtalscreen.screen.workers import encode_kept

    ext = tmp_path / "ext.h5"
    shutil.copy(run_h5, ext)
    master = tmp_path / "master.h5"
    write_hdf5_run([f.replace(data=np.zeros_like(f.data)) for f in frames_factory(12)], master)
    with h5py.File(master, "a") as f:
        f["/images"] = h5py.ExternalLink(str(ext), "/entry/data/data")
    fr = list(open_frames(master, dataset="/images", frames=[2, 5]))
    assert all(f.data.max() > 0 for f in fr)
    enc = encode_kept(fr, raw_chunks=True)
    assert [e.chunk_ref for e in enc] == [(str(ext), "/entry/data/data", 2), (str(ext), "/entry/data/data", 5)]
    write_hdf5_run(enc, tmp_path / "hits.h5")
    for g, f in zip(open_frames(tmp_path / "hits.h5"), fr):
        np.testing.assert_array_equal(g.data, f.data)


def test_source_chunks_keep_a_few_files_open(tmp_path, frames_factory):
    """Kept frames from many files never hold one open file each."""
    from xtalscreen.io.writers import ChunkEncoder
    from xtalscreen.screen.workers import SourceChunks

    paths = []
    for i in range(10):
        paths.append(tmp_path / f"r{i}.h5")
        write_hdf5_run(frames_factory(1, seed=i), paths[-1])
    hook, enc = SourceChunks(), ChunkEncoder()
    refs = [enc.encode(next(iter(open_frames(p))), raw_chunk=hook) for p in paths]
    assert all(r.chunk_ref is not None for r in refs) and len(hook._files) <= 4
    hook.close()
    enc.close()
    write_hdf5_run(refs, tmp_path / "hits.h5")
    assert len(list(open_frames(tmp_path / "hits.h5"))) == 10


def test_chunk_ref_that_cannot_be_read_names_the_file(tmp_path, run_h5):
    import shutil

    from xtalscreen.screen.workers import encode_kept

    moved = tmp_path / "moved.h5"
    shutil.copy(run_h5, moved)
    enc = encode_kept(list(open_frames(moved, frames=[0, 2])), raw_chunks=True)
    assert all(e.chunk_ref is not None for e in enc)
    moved.unlink()  # gone before the writer reads it
    with pytest.raises(InputError, match="moved.h5.*frame 2|could not be read back") as ei:
        write_hdf5_run(enc, tmp_path / "hits.h5")
    assert "moved.h5" in str(ei.value)
    assert not (tmp_path / "hits.h5").exists() and not (tmp_path / "hits.h5.part").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_kept_frames_keep_their_source_chunks(tmp_path, run_h5, tiny_model, workers, monkeypatch):
    """Uncorrected frames from a bitshuffle-LZ4 run go into hits.h5 as their compressed source
    chunks, byte for byte, in one process or several (not compressed again)."""
    import h5py

    from xtalscreen.screen.workers import SourceChunks

    copied = []
    call = SourceChunks.__call__

    def spy(self, frame, dataset):
        rc = call(self, frame, dataset)
        copied.append(rc is not None)
        return rc

    monkeypatch.setattr(SourceChunks, "__call__", spy)
    s = screen([run_h5], out=tmp_path / "o", model=str(tiny_model), workers=workers, batch=5,
               threshold=0.0, live=False)
    if workers == 1:  # the collector's writer took every source chunk (workers send references)
        assert copied == [True] * s.hits and s.hits == 12
    with h5py.File(run_h5) as src, h5py.File(tmp_path / "o" / "hits.h5") as out:
        sd, od = src["/entry/data/data"], out["/entry/data/data"]
        assert od.shape == sd.shape
        for i in range(sd.shape[0]):
            assert od.id.read_direct_chunk((i, 0, 0)) == sd.id.read_direct_chunk((i, 0, 0))


@pytest.mark.parametrize("workers", [1, 2])
def test_corrected_frames_are_written_corrected(tmp_path, run_h5, tiny_model, workers):
    dark = np.full((200, 180), 3.0, np.float32)
    screen([run_h5], out=tmp_path / "o", model=str(tiny_model), workers=workers, batch=5,
           threshold=0.0, dark=dark, live=False)
    got = list(open_frames(tmp_path / "o" / "hits.h5"))
    want = list(open_frames(run_h5, dark=dark))
    assert len(got) == 12
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.data, w.data)  # not the raw source chunk


def test_detectors_of_two_input_sizes_in_one_batch(tmp_path, frames_factory):
    """A model with ``unbinned_up_to`` sees a small detector at full resolution (a larger
    input) and a large one binned: one batch holding both is inferred per input size, with
    the same results as screening each file alone, in one process or two."""
    import torch

    from xtalscreen.models import create_model
    from xtalscreen.preprocess import PreprocessConfig
    from xtalscreen.train import save_checkpoint

    torch.manual_seed(0)
    pp = PreprocessConfig(bin="auto", crop=(32, 32), unbinned_up_to=2, bin_reduce="max")
    model = tmp_path / "any_size.pt"
    save_checkpoint(model, create_model("spotcount", num_classes=3, img_size=32), preprocess=pp,
                    classes=("hit", "maybe", "miss"), target="ke")
    small, large = tmp_path / "small.h5", tmp_path / "large.h5"
    write_hdf5_run(frames_factory(5, (60, 64), beam_center=(32.0, 30.0)), small)  # 1 x (64, 64)
    write_hdf5_run(frames_factory(5, (200, 180), seed=4), large)                 # 7 x (32, 32)
    assert pp.output_shape_for((60, 64)) == (1, 64, 64) and pp.output_shape_for((200, 180)) == (1, 32, 32)
    alone = []
    for p in (small, large):
        screen([p], out=tmp_path / p.stem, model=str(model), live=False)
        alone += rows(tmp_path / p.stem)
    for workers in (1, 2):
        s = screen([small, large], out=tmp_path / f"both{workers}", model=str(model), batch=8,
                   workers=workers, live=False)
        assert s.frames == 10 and s.bad_frames == 0
        both = rows(tmp_path / f"both{workers}")
        assert [(r["file"], r["frame"], r["p_hit"]) for r in both] == \
               [(r["file"], r["frame"], r["p_hit"]) for r in alone]


def test_multi_panel_frames_without_geometry_are_flagged_and_warned(tmp_path, tiny_model):
    """Panels with no geometry are stacked side by side: the crop is not the detector's, so the
    decision is flagged on every frame and the user is told once per file what to pass."""
    from xtalscreen.io.frame import Frame

    rng = np.random.default_rng(0)
    run = tmp_path / "panels.h5"
    write_hdf5_run([Frame(rng.poisson(3.0, (4, 40, 50)).astype(np.float32), index=i,
                          pixel_size=110e-6, distance=0.1, wavelength=1.3) for i in range(3)], run)
    lines = []
    screen([run], out=tmp_path / "o", model=str(tiny_model), live=False, echo=lines.append)
    assert all("no_geometry" in x["flags"] for x in rows(tmp_path / "o"))
    warned = [ln for ln in lines if "without a detector geometry" in ln]
    assert len(warned) == 1 and "4 panels" in warned[0] and "--geometry" in warned[0]


def test_saturated_frames_are_flagged_and_warned_once_per_file(tmp_path, tiny_model):
    """A 16-bit frame flooded to 65535 over a fifth of its pixels is flagged ``saturated``
    (its neighbours are not), and the user hears of it once for the file."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(3):
        d = rng.poisson(3.0, (64, 64)).astype(np.uint16)
        if i == 1:
            d[:13] = 65535
        frames.append(Frame(d, index=i, pixel_size=110e-6, distance=0.1, wavelength=1.3,
                            beam_center=(32.0, 32.0)))
    run = tmp_path / "flooded.h5"
    write_hdf5_run(frames, run)
    assert [f.dtype for f in open_frames(run)] == ["uint16"] * 3
    lines = []
    screen([run], out=tmp_path / "o", model=str(tiny_model), live=False, echo=lines.append)
    assert ["saturated" in x["flags"] for x in rows(tmp_path / "o")] == [False, True, False]
    warned = [ln for ln in lines if "saturated" in ln]
    assert len(warned) == 1 and "frame 1" in warned[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_screen_uses_the_geometry_beside_simulated_shards(tmp_path, tiny_model, workers, panel_run):
    """Multi-panel shards with their geometry.geom beside them are screened through it (no
    ``no_geometry`` flag) and the summary names the file; ``geometry_beside=False`` restores
    the flag."""
    run = panel_run(tmp_path / "shard-00000.h5")
    s = screen([run], out=tmp_path / "o", model=str(tiny_model), live=False, workers=workers)
    got = rows(tmp_path / "o")
    assert len(got) == 3 and not any("no_geometry" in r["flags"] for r in got)
    assert s.geometries == {str(tmp_path / "geometry.geom"): 1}
    s = screen([run], out=tmp_path / "o2", model=str(tiny_model), live=False, workers=workers,
               geometry_beside=False)
    assert all("no_geometry" in r["flags"] for r in rows(tmp_path / "o2"))
    assert s.geometries == {}
