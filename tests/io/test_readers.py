"""open_frames over the HDF5 family, images, NumPy files and sources (directories, globs, lists)."""

from __future__ import annotations

import os

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile
from PIL import Image

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import ReadError, count_frames, open_file, open_frames, read_frame
from xtalscreen.io.geometry import DetectorGeometry, Panel


def _stack(n=4, h=32, w=48, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    return rng.poisson(5.0, (n, h, w)).astype(dtype)


def _write(path, data, dataset="/entry/data/data", **kw):
    with h5py.File(path, "w") as f:
        f.create_dataset(dataset, data=data, **kw)
    return str(path)


# ---------------------------------------------------------------------------- HDF5 family
def test_hdf5_3d_stream_values_and_indices(tmp_path):
    data = _stack()
    p = _write(tmp_path / "run.h5", data, chunks=(1, 32, 48))
    frames = list(open_frames(p))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for f, d in zip(frames, data):
        np.testing.assert_array_equal(f.data, d)  # values kept, never rescaled
        assert f.dtype == "uint16" and f.format == "hdf5" and f.source == p
        assert f.meta["dataset"] == "/entry/data/data"


def test_hdf5_2d_single_image_and_4d_multipanel(tmp_path):
    img = _stack(1)[0]
    p2 = _write(tmp_path / "one.h5", img, dataset="/data/data")
    (f,) = list(open_frames(p2))
    assert f.shape == (32, 48)
    p4 = _write(tmp_path / "panels.h5", np.ones((3, 2, 8, 16), np.int32))
    frames = list(open_frames(p4))
    assert len(frames) == 3 and frames[0].shape == (2, 8, 16) and frames[0].is_multipanel


def test_3d_dataset_is_one_multipanel_frame_with_slab_geometry(tmp_path):
    p = _write(tmp_path / "cspad.h5", np.ones((2, 8, 16), np.float32), dataset="/data/data")
    panels = [Panel(f"q{i}", 0, 15, 0, 7, corner_x=0, corner_y=10 * i, slab=i) for i in range(2)]
    frames = list(open_frames(p, geometry=DetectorGeometry(panels)))
    assert len(frames) == 1 and frames[0].shape == (2, 8, 16) and frames[0].geometry is not None


@pytest.mark.parametrize("compression", ["bitshuffle-lz4", "lz4", "gzip"])
def test_compressed_hdf5_reads_back_exactly(tmp_path, compression):
    data = _stack(3, dtype=np.uint32)
    filt = {"bitshuffle-lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
            "lz4": dict(hdf5plugin.LZ4()), "gzip": {"compression": "gzip"}}[compression]
    p = _write(tmp_path / "c.h5", data, chunks=(1, 32, 48), **filt)
    got = np.stack([f.data for f in open_frames(p)])
    np.testing.assert_array_equal(got, data)


def test_multi_frame_chunks_are_read_block_wise(tmp_path):
    data = _stack(10)
    p = _write(tmp_path / "c.h5", data, chunks=(4, 32, 48), compression="gzip")
    got = [f.data for f in open_frames(p, frames=[9, 0, 5, 6])]  # out of order too
    for g, i in zip(got, [9, 0, 5, 6]):
        np.testing.assert_array_equal(g, data[i])


def test_nexus_eiger_metadata_and_units(tmp_path):
    p = tmp_path / "nx.h5"
    with h5py.File(p, "w") as f:
        f["/entry/data/data"] = _stack(2)
        d = f.create_group("/entry/instrument/detector")
        d["x_pixel_size"] = 75.0
        d["x_pixel_size"].attrs["units"] = "um"
        d["detector_distance"] = 150.0
        d["detector_distance"].attrs["units"] = "mm"
        d["beam_center_x"] = 20.5
        d["beam_center_y"] = 15.25
        d["count_time"] = [0.01, 0.02]  # per frame
        d["description"] = "Dectris EIGER2 XE 16M"
        f["/entry/instrument/beam/incident_wavelength"] = 0.9763
    a, b = open_frames(str(p))
    assert a.pixel_size == pytest.approx(75e-6) and a.distance == pytest.approx(0.15)
    assert a.beam_center == (20.5, 15.25) and a.wavelength == pytest.approx(0.9763)
    assert (a.exposure, b.exposure) == (pytest.approx(0.01), pytest.approx(0.02))
    assert a.detector == "Dectris EIGER2 XE 16M"


def test_cxi_energy_in_joules_becomes_wavelength(tmp_path):
    p = tmp_path / "r.cxi"
    ev = 9500.0
    with h5py.File(p, "w") as f:
        f["/entry_1/instrument_1/detector_1/data"] = _stack(2)
        f["/entry_1/instrument_1/detector_1/distance"] = 0.1
        f["/entry_1/instrument_1/detector_1/x_pixel_size"] = 110e-6
        f["/entry_1/instrument_1/source_1/energy"] = ev * 1.602176634e-19
    f0 = next(open_frames(str(p)))
    assert f0.format == "cxi" and f0.distance == pytest.approx(0.1)
    assert f0.pixel_size == pytest.approx(110e-6)
    assert f0.wavelength == pytest.approx(12398.4198 / ev, rel=1e-6)


def test_cheetah_photon_energy_ev(tmp_path):
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f["/data/data"] = _stack(1)[0]
        f["/LCLS/photon_energy_eV"] = 8000.0
    assert read_frame(str(p)).wavelength == pytest.approx(1.5498, abs=1e-4)


def test_nxdata_signal_and_largest_dataset_fallbacks(tmp_path):
    p = tmp_path / "sig.nxs"
    with h5py.File(p, "w") as f:
        g = f.create_group("scan/measurement")
        g.attrs["NX_class"] = "NXdata"
        g.attrs["signal"] = "frames"
        g["frames"] = _stack(2, 8, 8)
        f["big/thing"] = np.zeros((64, 64))  # larger, but the NXdata signal wins
    assert next(open_frames(str(p))).meta["dataset"] == "/scan/measurement/frames"
    q = tmp_path / "plain.h5"
    with h5py.File(q, "w") as f:
        f["small"] = np.zeros((4, 4))
        f["x/images"] = _stack(3, 16, 16)
        f["x/trace"] = np.arange(100.0)
    frames = list(open_frames(str(q)))
    assert len(frames) == 3 and frames[0].meta["dataset"] == "/x/images"


def test_dataset_option_selects_and_wrong_path_lists_candidates(tmp_path):
    p = tmp_path / "two.h5"
    with h5py.File(p, "w") as f:
        f["a/img"] = _stack(2, 8, 8)
        f["b/img"] = _stack(5, 8, 8)
    assert len(list(open_frames(str(p), dataset="/a/img"))) == 2
    with pytest.raises(InputError) as exc:
        list(open_frames(str(p), dataset="/entry/data/data"))
    msg = str(exc.value)
    assert str(p) in msg and "/a/img" in msg and "/b/img" in msg and "dataset" in msg


def test_one_dimensional_dataset_is_not_an_image(tmp_path):
    p = tmp_path / "trace.h5"
    with h5py.File(p, "w") as f:
        f["/entry/data/data"] = np.arange(10)
    with pytest.raises(InputError, match="trace.h5.*(not an image|no image)"):
        list(open_frames(str(p)))
    with pytest.raises(InputError, match="not an image"):
        list(open_frames(str(p), dataset="/entry/data/data"))


def _eiger(tmp_path, sizes=(3, 2)):
    """A master file whose /entry/data/data_00000k are external links to data files."""
    d = tmp_path / "eiger"
    d.mkdir()
    rng = np.random.default_rng(1)
    chunks = []
    for k, n in enumerate(sizes, start=1):
        arr = rng.poisson(2, (n, 16, 24)).astype(np.uint32)
        arr[:, :, 12] = 2**32 - 1  # module gap value written by the firmware
        chunks.append(arr)
        with h5py.File(d / f"x_data_{k:06d}.h5", "w") as f:
            f.create_dataset("/entry/data/data", data=arr, chunks=(1, 16, 24),
                             **hdf5plugin.Bitshuffle(cname="lz4"))
    pm = np.zeros((16, 24), np.uint32)
    pm[3, 4] = 8  # a hot pixel flagged by the detector
    with h5py.File(d / "x_master.h5", "w") as f:
        for k in range(1, len(sizes) + 1):
            f[f"/entry/data/data_{k:06d}"] = h5py.ExternalLink(f"x_data_{k:06d}.h5", "/entry/data/data")
        det = f.create_group("/entry/instrument/detector")
        det["x_pixel_size"] = 75e-6
        det["detector_distance"] = 0.12
        det["beam_center_x"] = 12.0
        det["beam_center_y"] = 8.0
        det["count_time"] = 0.005
        det["description"] = "Dectris EIGER2 Si 4M"
        det["detectorSpecific/pixel_mask"] = pm
        det["saturation_value"] = 1_000_000
        f["/entry/instrument/beam/incident_wavelength"] = 1.0332
    return d, np.concatenate(chunks)


def test_eiger_master_reads_all_linked_files_in_order(tmp_path, monkeypatch):
    d, data = _eiger(tmp_path)
    monkeypatch.chdir(tmp_path)  # links resolve relative to the master, not the cwd
    frames = list(open_frames(str(d / "x_master.h5")))
    assert len(frames) == 5 and [f.index for f in frames] == list(range(5))
    for f, ref in zip(frames, data):
        np.testing.assert_array_equal(f.data[:, :12], ref[:, :12])
    f = frames[3]
    assert f.format == "eiger" and f.meta["data_file"] == "x_data_000002.h5"
    assert f.dtype == "uint32" and f.detector.startswith("Dectris")
    assert (f.pixel_size, f.distance, f.wavelength, f.exposure) == (75e-6, 0.12, 1.0332, 0.005)
    assert f.beam_center == (12.0, 8.0) and f.meta["saturation_value"] == 1e6
    assert f.mask[:, 12].all() and f.mask[3, 4]  # 2**32-1 sentinel and pixel_mask
    assert f.mask.sum() == 16 + 1
    # a directory holding master + data files yields the run once, through the master
    assert count_frames(str(d)) == 5


def test_eiger_bit_depth_narrower_than_container(tmp_path):
    p = tmp_path / "e.h5"
    data = np.full((2, 8, 8), 5, np.uint32)
    data[:, 2, :] = 2**16 - 1  # a 16-bit image stored in uint32
    with h5py.File(p, "w") as f:
        f["/entry/data/data"] = data
        f["/entry/instrument/detector/bit_depth_image"] = 16
    fr = read_frame(str(p))
    assert fr.mask[2].all() and fr.mask.sum() == 8


def test_eiger_missing_data_file_names_it(tmp_path):
    d, _ = _eiger(tmp_path)
    os.remove(d / "x_data_000002.h5")
    with pytest.raises(InputError, match="x_data_000002.h5") as exc:
        list(open_frames(str(d / "x_master.h5")))
    assert "x_master.h5" in str(exc.value)


def _idh5(path, chunks=(("run7_a", 3), ("run7_b", 2)), per_chunk_meta=False):
    rng = np.random.default_rng(3)
    n_total = sum(n for _, n in chunks)
    with h5py.File(path, "w") as f:
        f.attrs["detector"] = "CSPAD"
        frames = []
        for name, n in chunks:
            arr = rng.poisson(20, (n, 40, 40)).astype(np.int32)
            arr[:, 18:22, :] = 0  # tile gap: outside the active ASIC rectangles
            f[f"data/{name}/images"] = arr
            frames.append(arr)
        if per_chunk_meta:
            off = 0
            for name, n in chunks:
                f[f"metadata/{name}/photon_energy_ev"] = np.full(n, 9500.0)
                f[f"metadata/{name}/timestamp"] = np.arange(off, off + n) * 10
                off += n
        else:
            f["metadata/wavelength"] = np.linspace(1.30, 1.31, n_total)
            f["metadata/distance"] = 88.5
            f["metadata/distance"].attrs["units"] = "mm"
            f["metadata/timestamp"] = np.arange(n_total) * 10
            f["metadata/fiducial"] = np.arange(n_total) + 1000
    return np.concatenate(frames)


def test_idh5_layout(tmp_path):
    p = tmp_path / "ke2018.h5"
    data = _idh5(p)
    frames = list(open_frames(str(p)))
    assert len(frames) == 5
    for f, ref in zip(frames, data):
        np.testing.assert_array_equal(f.data, ref)
    f = frames[4]
    assert f.format == "idh5" and f.detector == "CSPAD" and f.dtype == "int32"
    assert f.meta["chunk"] == "run7_b" and f.meta["chunk_index"] == 1
    assert f.meta["timestamp"] == 40 and f.meta["fiducial"] == 1004
    assert f.wavelength == pytest.approx(1.31) and f.distance == pytest.approx(0.0885)
    assert f.mask[18:22].all() and f.mask.sum() == 4 * 40  # the zero tile gap, nothing else


def test_idh5_per_chunk_metadata(tmp_path):
    p = tmp_path / "k.h5"
    _idh5(p, per_chunk_meta=True)
    frames = list(open_frames(str(p)))
    assert [f.meta["timestamp"] for f in frames] == [0, 10, 20, 30, 40]
    assert frames[0].wavelength == pytest.approx(12398.4198 / 9500, rel=1e-6)


# ---------------------------------------------------------------------------- images / numpy
def test_tiff_multipage_is_many_frames(tmp_path):
    data = _stack(3, dtype=np.int32)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, data, photometric="minisblack")
    frames = list(open_frames(str(p)))
    assert len(frames) == 3 and frames[2].format == "tiff" and frames[2].dtype == "int32"
    np.testing.assert_array_equal(frames[2].data, data[2])


def test_pilatus_tiff_header_and_sentinels(tmp_path):
    img = np.full((20, 30), 3, np.int32)
    img[:, 10] = -1
    img[5, 5] = -2
    hdr = ("# Detector: PILATUS 2M, S/N 24-0109\n# Pixel_size 172e-6 m x 172e-6 m\n"
           "# Exposure_time 0.1 s\n# Wavelength 0.6889 A\n# Detector_distance 0.2 m\n"
           "# Beam_xy (730.00, 865.00) pixels\n")
    p = tmp_path / "p.tif"
    tifffile.imwrite(p, img, description=hdr)
    f = read_frame(str(p))
    assert f.detector.startswith("PILATUS 2M") and f.pixel_size == pytest.approx(172e-6)
    assert (f.exposure, f.wavelength, f.distance) == (0.1, 0.6889, 0.2)
    assert f.beam_center == (730.0, 865.0)
    assert f.mask.sum() == 21 and f.mask[5, 5] and f.mask[:, 10].all()


def test_png_grey_and_rgb_luminance_not_rescaled(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    f = read_frame(str(tmp_path / "g.png"))
    assert f.format == "png" and f.dtype == "uint8" and f.data.max() == 255
    np.testing.assert_array_equal(f.data, grey)
    assert not f.mask.any()  # 8-bit images: 0 and 255 are real values
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    f = read_frame(str(tmp_path / "c.png"))
    assert f.shape == (4, 5)
    np.testing.assert_allclose(f.data, 0.299 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-6)


def test_pgm_16bit_and_jpeg(tmp_path):
    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) % 60000
    Image.fromarray(img).save(tmp_path / "d.pgm")
    f = read_frame(str(tmp_path / "d.pgm"))
    assert f.format == "pgm" and f.data.max() > 255
    np.testing.assert_array_equal(f.data, img)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "e.jpg")
    f = read_frame(str(tmp_path / "e.jpg"))
    assert f.format == "jpeg" and abs(float(f.data.mean()) - 128) < 2


def test_npy_2d_3d_and_npz_with_mask_and_metadata(tmp_path):
    data = _stack(3, dtype=np.float32)
    np.save(tmp_path / "one.npy", data[0])
    np.save(tmp_path / "stack.npy", data)
    assert len(list(open_frames(str(tmp_path / "one.npy")))) == 1
    frames = list(open_frames(str(tmp_path / "stack.npy")))
    assert len(frames) == 3 and frames[1].format == "npy"
    np.testing.assert_array_equal(frames[1].data, data[1])
    m = np.zeros((32, 48), bool)
    m[0, :3] = True
    np.savez(tmp_path / "a.npz", data=data, mask=m, wavelength=1.1, beam_center=[10, 12])
    f = list(open_frames(str(tmp_path / "a.npz")))[2]
    assert f.mask[0, :3].all() and f.mask.sum() == 3
    assert f.wavelength == 1.1 and f.beam_center == (10.0, 12.0)
    np.savez(tmp_path / "b.npz", np.ones((5, 5)))  # unnamed: first array
    assert read_frame(str(tmp_path / "b.npz")).shape == (5, 5)


# ---------------------------------------------------------------------------- sources
def _tree(tmp_path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    for i in (1, 2, 10):
        np.save(d / f"img_{i}.npy", np.full((4, 4), i, np.float32))
    _write(d / "sub" / "run.h5", np.ones((2, 4, 4), np.float32))
    (d / "notes.md").write_text("not an image")
    (d / ".hidden.npy").write_bytes(b"junk")
    return d


def test_directory_recurses_in_natural_order_and_skips_unknown(tmp_path):
    d = _tree(tmp_path)
    frames = list(open_frames(str(d)))
    names = [os.path.relpath(f.source, d) for f in frames]
    assert names == ["img_1.npy", "img_2.npy", "img_10.npy", "sub/run.h5", "sub/run.h5"]


def test_glob_and_list_file_with_events(tmp_path):
    d = _tree(tmp_path)
    assert [f.data[0, 0] for f in open_frames(str(d / "img_*.npy"))] == [1, 2, 10]
    _write(d / "r.h5", np.arange(5 * 4, dtype=np.float32).reshape(5, 2, 2))
    lst = d / "files.lst"
    lst.write_text("# chosen events\nr.h5 //3\nr.h5 //1\n\nimg_2.npy\n")
    frames = list(open_frames(str(lst)))
    assert [(os.path.basename(f.source), f.index) for f in frames] == [
        ("r.h5", 3), ("r.h5", 1), ("img_2.npy", 0)]
    bad = d / "bad.lst"
    bad.write_text("r.h5 //entry/3\n")
    with pytest.raises(InputError, match="bad.lst.*line 1"):
        list(open_frames(str(bad)))


def test_sequence_of_sources_and_frame_selection(tmp_path):
    d = _tree(tmp_path)
    h = _write(tmp_path / "r.h5", _stack(6))
    frames = list(open_frames([h, str(d / "img_1.npy")], frames=slice(0, 2)))
    assert [(os.path.basename(f.source), f.index) for f in frames] == [
        ("r.h5", 0), ("r.h5", 1), ("img_1.npy", 0)]
    assert [f.index for f in open_frames(h, frames=[-1, 2])] == [5, 2]
    assert [f.index for f in open_frames(h, frames=(i for i in (4, 1)))] == [4, 1]
    with pytest.raises(InputError, match="r.h5.*frame 9 does not exist"):
        list(open_frames(h, frames=[9]))
    assert count_frames([h, str(d)]) == 6 + 5


def test_mixed_shapes_allowed_unless_check_shapes(tmp_path):
    a = _write(tmp_path / "a.h5", np.ones((2, 4, 4), np.float32))
    b = _write(tmp_path / "b.h5", np.ones((3, 6, 4), np.float32))
    assert len(list(open_frames([a, b]))) == 5
    with pytest.raises(InputError) as exc:
        list(open_frames([a, b], check_shapes=True))
    assert "b.h5 (frame 0)" in str(exc.value) and "(6, 4)" in str(exc.value)
    errs: list = []
    got = list(open_frames([a, b], check_shapes=True, on_error="skip", errors=errs))
    assert len(got) == 2 and len(errs) == 3


# ---------------------------------------------------------------------------- options
def test_user_mask_file_overrides_and_mask_shape_mismatch(tmp_path):
    p = _write(tmp_path / "r.h5", _stack(2))
    m = np.zeros((32, 48), np.uint8)
    m[:2] = 1
    np.save(tmp_path / "m.npy", m)
    f = next(open_frames(p, mask=str(tmp_path / "m.npy"), beam_center=(1, 2), wavelength=1.5,
                         distance=0.3, pixel_size=1e-4))
    assert f.mask[:2].all() and f.mask.sum() == 2 * 48
    assert (f.beam_center, f.wavelength, f.distance, f.pixel_size) == ((1.0, 2.0), 1.5, 0.3, 1e-4)
    # CrystFEL-style 1 = good mask
    f = next(open_frames(p, mask=str(tmp_path / "m.npy"), invert_mask=True))
    assert f.mask.sum() == 30 * 48
    np.save(tmp_path / "small.npy", np.zeros((10, 10)))
    with pytest.raises(InputError) as exc:
        list(open_frames(p, mask=str(tmp_path / "small.npy")))
    msg = str(exc.value)
    assert "small.npy" in msg and "(10, 10)" in msg and "(32, 48)" in msg
    with pytest.raises(ParameterError, match="wavelength"):
        open_frames(p, wavelength=-1)
    with pytest.raises(ParameterError, match="on_error"):
        open_frames(p, on_error="ignore")


def test_geometry_file_attached_and_checked(tmp_path):
    p = _write(tmp_path / "r.h5", _stack(2))
    geom = tmp_path / "det.geom"
    geom.write_text("clen = 0.1\nres = 5814.0\n"
                    "p0/min_fs = 0\np0/max_fs = 47\np0/min_ss = 0\np0/max_ss = 31\n"
                    "p0/corner_x = -24\np0/corner_y = -16\np0/fs = x\np0/ss = y\n")
    f = next(open_frames(p, geometry=str(geom)))
    assert f.geometry is not None and f.geometry.data_shape() == (32, 48)
    big = _write(tmp_path / "big.h5", np.ones((1, 8, 8), np.float32))
    with pytest.raises(InputError, match="big.h5.*geometry"):
        list(open_frames(big, geometry=str(geom)))


def test_dark_and_gain_applied_by_open_frames(tmp_path):
    data = _stack(2).astype(np.float32) + 100
    p = _write(tmp_path / "r.h5", data)
    np.save(tmp_path / "dark.npy", np.full((32, 48), 100, np.float32))
    frames = list(open_frames(p, dark=str(tmp_path / "dark.npy"), gain=2.0))
    np.testing.assert_allclose(frames[1].data, (data[1] - 100) / 2)
    assert frames[1].meta["corrections"] == ["dark", "gain (divide)"]


# ---------------------------------------------------------------------------- bad input
def test_missing_file_unknown_extension_empty_dir_and_glob(tmp_path):
    with pytest.raises(InputError, match="nope.h5: no such file"):
        open_frames(str(tmp_path / "nope.h5"))
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(InputError, match=r"x.xyz: unknown file type.*\.h5"):
        open_frames(str(tmp_path / "x.xyz"))
    with pytest.raises(ParameterError, match="frames must be"):
        open_frames(str(tmp_path / "x.xyz"), frames="all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: the directory holds no readable image"):
        open_frames(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="matches no readable image files"):
        open_frames(str(tmp_path / "*.cbf"))


@pytest.mark.parametrize("name", ["g.h5", "g.tif", "g.png", "g.npy", "g.npz", "g.jpg"])
def test_garbage_bytes_raise_input_error_naming_the_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x00garbage, not an image" * 20)
    with pytest.raises(InputError) as exc:
        list(open_frames(str(p)))
    assert name in str(exc.value) and ("corrupt" in str(exc.value) or "truncated" in str(exc.value))


def test_truncated_hdf5_raises_naming_file(tmp_path):
    p = _write(tmp_path / "t.h5", _stack(20), chunks=(1, 32, 48))
    size = os.path.getsize(p)
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(InputError) as exc:
        list(open_frames(p))
    assert "t.h5" in str(exc.value)


def test_skip_reports_exactly_one_error_and_yields_the_rest(tmp_path):
    good1 = _write(tmp_path / "a.h5", _stack(3))
    bad = tmp_path / "b.h5"
    bad.write_bytes(b"corrupt" * 100)
    np.save(tmp_path / "c.npy", _stack(2))
    errs: list = []
    stream = open_frames(str(tmp_path), on_error="skip", errors=errs)
    frames = list(stream)
    assert len(frames) == 5 and stream.n_frames == 5
    assert len(errs) == 1 and stream.errors == errs
    e = errs[0]
    assert isinstance(e, ReadError) and e.path.endswith("b.h5") and e.frame is None
    assert "b.h5" in str(e)
    # callables work as sinks too; with raise, the same batch stops at the bad file
    seen = []
    list(open_frames(str(tmp_path), on_error="skip", errors=seen.append))
    assert len(seen) == 1
    with pytest.raises(InputError, match="b.h5"):
        list(open_frames([good1, str(bad)]))


def test_skip_continues_after_a_bad_frame(tmp_path):
    p = _write(tmp_path / "r.h5", _stack(3))
    errs: list = []
    got = list(open_frames(p, frames=[0, 7], on_error="skip", errors=errs))
    assert [f.index for f in got] == [0]
    assert len(errs) == 1 and errs[0].frame == 7 and "does not exist" in errs[0].reason


def test_nothing_readable_raises_even_when_skipping(tmp_path):
    bad = tmp_path / "b.h5"
    bad.write_bytes(b"junk")
    with pytest.raises(InputError, match="no frame could be read"):
        list(open_frames(str(bad), on_error="skip"))


def test_stream_stops_early_and_closes_its_file(tmp_path):
    p = _write(tmp_path / "r.h5", _stack(4))
    with open_frames(p) as stream:
        first = next(stream)
    assert first.index == 0
    with pytest.raises(StopIteration):
        next(stream)
    with h5py.File(p, "a"):  # no handle left open by the stream
        pass


def test_open_file_reader_api(tmp_path):
    p = _write(tmp_path / "r.h5", _stack(4))
    with open_file(p) as r:
        assert len(r) == 4 and r.read(3).index == 3
        info = r.info()
        assert info["frames"] == 4 and info["dataset"] == "/entry/data/data"
        with pytest.raises(InputError, match="frame 4 does not exist"):
            r.read(4)


# ---------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_jpeg_drop_images(real_dir):
    frames = list(open_frames(str(real_dir / "drops")))
    shapes = sorted(f.shape for f in frames)
    assert shapes == [(1024, 1224), (2028, 2532)]
    for f in frames:
        assert f.dtype == "uint8" and 0 <= f.data.min() and f.data.max() <= 255
        assert f.data.max() > 1  # not rescaled to [0, 1]


@pytest.mark.realdata
def test_real_xray_folder_reads_every_file(real_dir):
    errs: list = []
    frames = list(open_frames(str(real_dir / "xray"), on_error="skip", errors=errs))
    assert errs == [] and len(frames) == 7
    assert {f.format for f in frames} >= {"cbf"}


def test_the_detector_name_of_a_simulated_run_is_read(tmp_path):
    """``xtalscreen simulate`` keeps the detector's name as the NXdetector group's
    ``description`` attribute; the reader gives it as ``Frame.detector`` (``screen`` warns by it)."""
    from xtalscreen.io import read_frame
    from xtalscreen.simulate import get_preset, simulate_dataset

    simulate_dataset(tmp_path, presets="diffranet", n=1, seed=1, split=(0, 0, 100), spots="none",
                     progress=False)
    assert read_frame(tmp_path / "shard-00000.h5", 0).detector == get_preset("diffranet").detector.name
