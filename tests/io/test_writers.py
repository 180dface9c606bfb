"""write_hdf5_run round trips through open_frames; write_image."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.io import Frame, open_frames, read_frame, write_hdf5_run, write_image
from xtalscreen.io.geometry import DetectorGeometry, Panel


def _frames(n=4, shape=(16, 20), vary_mask=False):
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        raw = rng.poisson(4, shape).astype(np.int32)
        mask = np.zeros(shape, bool)
        mask[..., 3] = True
        if vary_mask and i == 2:
            mask[..., 0, 0] = True
        out.append(Frame(raw, mask=mask, source=f"in/img_{i:03d}.cbf", index=0, format="cbf",
                         detector="PILATUS 2M", pixel_size=172e-6, distance=0.2 + i * 0.01,
                         wavelength=0.6889, beam_center=(8.5, 7.25), exposure=0.1))
    if n > 1:
        out[1].wavelength = None  # unknown values survive as unknown
    return out


def _same(a: Frame, b: Frame):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.mask, b.mask)
    for k in ("pixel_size", "distance", "wavelength", "beam_center", "exposure", "detector", "dtype"):
        assert getattr(a, k) == getattr(b, k), k


@pytest.mark.parametrize("compression", ["bitshuffle-lz4", "gzip", None])
def test_round_trip(tmp_path, compression):
    src = _frames()
    out = tmp_path / "run.h5"
    assert write_hdf5_run(iter(src), out, compression=compression) == 4
    back = list(open_frames(str(out)))
    assert len(back) == 4
    for a, b in zip(src, back):
        _same(a, b)
        assert b.meta["original_source"] == a.source and b.meta["source_index"] == a.index
    with h5py.File(out) as f:
        assert f["/entry/data/mask"].shape == (16, 20)  # constant: stored once
        assert f["/entry/data/data"].shape == (4, 16, 20)


def test_varying_masks_stored_per_frame(tmp_path):
    src = _frames(vary_mask=True)
    write_hdf5_run(src, tmp_path / "r.h5", chunk_frames=2)
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["/entry/data/mask"].shape == (4, 16, 20)
    for a, b in zip(src, open_frames(str(tmp_path / "r.h5"))):
        _same(a, b)


def test_multipanel_with_geometry_and_integer_dtype(tmp_path):
    panels = [Panel(f"p{i}", 0, 9, 0, 4, corner_x=-5, corner_y=-8 + 6 * i, slab=i) for i in range(2)]
    geom = DetectorGeometry(panels, name="two")
    src = [Frame(np.full((2, 5, 10), i, np.int32), geometry=geom, source="a.cbf") for i in range(3)]
    write_hdf5_run(src, tmp_path / "mp.h5", dtype=np.int32)
    back = list(open_frames(str(tmp_path / "mp.h5")))
    assert len(back) == 3 and back[2].shape == (2, 5, 10) and back[2].data.max() == 2
    assert back[0].geometry is not None and [p.name for p in back[0].geometry.panels] == ["p0", "p1"]
    assert back[0].geometry.panels[1].corner_y == -2
    with h5py.File(tmp_path / "mp.h5") as f:
        assert f["/entry/data/data"].dtype == np.int32


def test_writer_errors(tmp_path):
    src = _frames()
    write_hdf5_run(src, tmp_path / "r.h5")
    with pytest.raises(InputError, match="exists"):
        write_hdf5_run(src, tmp_path / "r.h5")
    write_hdf5_run(src[:1], tmp_path / "r.h5", overwrite=True)
    assert len(list(open_frames(str(tmp_path / "r.h5")))) == 1
    with pytest.raises(InputError, match=r"\(5, 5\).*differs"):
        write_hdf5_run(src[:2] + [Frame(np.zeros((5, 5)))], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.part").exists()
    with pytest.raises(InputError, match="no frames"):
        write_hdf5_run([], tmp_path / "e.h5")
    with pytest.raises(ParameterError, match="compression"):
        write_hdf5_run(src, tmp_path / "c.h5", compression="zstd9")
    with pytest.raises(ParameterError, match="dtype uint8"):
        write_hdf5_run([Frame(np.full((2, 2), 300.0))], tmp_path / "d.h5", dtype=np.uint8)


def test_encoded_frames_written_as_their_chunks(tmp_path):
    """ChunkEncoder + EncodedFrame (the worker -> collector path of ``screen``): the same file
    content as writing the frames themselves, including a mask that changes and metadata."""
    import pickle

    from xtalscreen.io.writers import ChunkEncoder, EncodedFrame

    src = _frames(vary_mask=True)
    with ChunkEncoder() as enc:
        encoded = [pickle.loads(pickle.dumps(enc.encode(f))) for f in src]  # as sent between processes
    e = encoded[2]
    np.testing.assert_array_equal(e.mask, src[2].mask)
    assert e.shape == (16, 20) and e.label == "in/img_002.cbf (frame 0)"
    with pytest.raises(TypeError, match="compressed data only"):
        e.data
    write_hdf5_run(encoded, tmp_path / "enc.h5")
    write_hdf5_run(src, tmp_path / "plain.h5")
    for a, b, c in zip(src, open_frames(str(tmp_path / "enc.h5")), open_frames(str(tmp_path / "plain.h5"))):
        _same(a, b)
        _same(b, c)
    with h5py.File(tmp_path / "enc.h5") as f, h5py.File(tmp_path / "plain.h5") as g:
        assert f["/entry/data/mask"].shape == (4, 16, 20)
        for i in range(4):  # byte for byte the chunks the writer makes itself
            assert (f["/entry/data/data"].id.read_direct_chunk((i, 0, 0))
                    == g["/entry/data/data"].id.read_direct_chunk((i, 0, 0)))
    # a chunk made for another layout is refused, naming the frame; nothing is left behind
    with ChunkEncoder(compression="gzip") as enc:
        gz = enc.encode(src[0])
    assert isinstance(gz, EncodedFrame)
    with pytest.raises(InputError, match=r"img_000.cbf \(frame 0\).*another layout"):
        write_hdf5_run([gz], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists() and not (tmp_path / "bad.h5.part").exists()


def test_chunk_encoder_starts_a_fresh_memory_file_when_full():
    from xtalscreen.io.writers import ChunkEncoder

    enc = ChunkEncoder(compression=None)
    enc.max_bytes = 1  # every frame beyond the first finds the in-memory file "full"
    f = Frame(np.arange(12, dtype=np.float32).reshape(3, 4))
    chunks = [enc.encode(f).chunk for _ in range(3)]
    assert chunks[0] == chunks[1] == chunks[2]
    assert chunks[0][1] == f.data.tobytes()  # no filter: the raw little-endian float32 bytes
    enc.close()
    enc.close()  # twice is harmless


def test_write_image(tmp_path):
    f = _frames(1)[0]
    write_image(f, tmp_path / "a.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), f.data)
    write_image(f, tmp_path / "a.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), f.data)
    with pytest.raises(InputError, match="exists"):
        write_image(f, tmp_path / "a.npy")
    with pytest.raises(ParameterError, match=".npy, .tif or .cbf"):
        write_image(f, tmp_path / "a.gif")


def test_write_image_cbf_round_trip(tmp_path):
    f = _frames(1)[0]
    write_image(f, tmp_path / "a.cbf")
    g = read_frame(str(tmp_path / "a.cbf"))
    np.testing.assert_array_equal(g.data[~f.mask], f.data[~f.mask])
    assert g.mask[f.mask].all() and g.data[f.mask].max() == -1
    for k in ("pixel_size", "distance", "wavelength", "beam_center", "exposure"):
        assert getattr(g, k) == pytest.approx(getattr(f, k)), k
    with pytest.raises(ParameterError, match="int32"):
        write_image(Frame(np.full((2, 2), 0.5)), tmp_path / "b.cbf")
