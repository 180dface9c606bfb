"""Sources: the ZeroMQ stream (real sockets on 127.0.0.1) and file chunks."""

from __future__ import annotations

import csv
import socket
import threading

import numpy as np
import pytest

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.screen import FileSource, ZmqSource, screen, send_end, send_frame
from xtalscreen.screen.sources import decode_message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender(address, frames, *, garbage=True):
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.connect(address)
    for i, f in enumerate(frames):
        send_frame(sock, f)
        if garbage and i == 1:
            sock.send_multipart([b"{not json", b"xx"])                        # bad header
            sock.send_multipart([b'{"shape": [9, 9], "dtype": "<f4"}', b"short"])  # bad size
    send_end(sock)
    sock.close()


def test_zmq_stream_is_screened(tmp_path, tiny_model, frames_factory):
    address = f"tcp://127.0.0.1:{free_port()}"
    frames = frames_factory(5, source="detector-A")
    src = ZmqSource(address, bind=True, timeout=20.0)
    t = threading.Thread(target=_sender, args=(address, frames))
    t.start()
    s = screen(out=tmp_path / "o", model=str(tiny_model), source=src, threshold=0.0, live=False)
    t.join()
    assert s.frames == 5 and len(s.bad_items) == 2
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        r = list(csv.DictReader(fh))
    assert [(x["file"], int(x["frame"])) for x in r] == [("detector-A", i) for i in range(5)]
    assert "bad header" in (tmp_path / "o" / "bad.txt").read_text()


def test_zmq_max_frames_and_timeout(frames_factory):
    address = f"tcp://127.0.0.1:{free_port()}"
    src = ZmqSource(address, bind=True, max_frames=2, timeout=10.0)
    t = threading.Thread(target=_sender, args=(address, frames_factory(4)), kwargs={"garbage": False})
    t.start()
    got = list(src.frames())
    t.join()
    src.close()
    assert len(got) == 2 and got[0].beam_center == (90.0, 100.0)
    np.testing.assert_array_equal(got[1].data, frames_factory(4)[1].data)
    quiet = ZmqSource(f"tcp://127.0.0.1:{free_port()}", bind=True, timeout=0.2)
    assert list(quiet.frames()) == []
    quiet.close()


def test_zmq_bad_arguments():
    with pytest.raises(ParameterError, match="max_frames"):
        ZmqSource("tcp://127.0.0.1:1", max_frames=0)
    with pytest.raises(InputError, match="ZeroMQ"):
        ZmqSource("not-an-address", bind=True)
    with pytest.raises(InputError, match="parts"):
        decode_message([b'{"shape": [2, 2], "dtype": "<f4"}'])
    assert decode_message([b'{"end": true}']) is None


def test_file_chunks_cover_every_frame(run_h5):
    bad = []
    src = FileSource([run_h5, run_h5], report=bad.append, frames=[0, 5, 11, 40])
    chunks = list(src.chunks(2))
    assert chunks == [(str(run_h5), [0, 5]), (str(run_h5), [11])] * 2
    assert len(bad) == 2 and "frame 40" in bad[0]
    assert src.count() == 6
