"""The streaming screening engine (OM-shaped): sources -> workers -> collector.

- :mod:`~xtalscreen.screen.sources`: data retrieval (:class:`FileSource` over files, folders,
  globs and HDF5 runs; :class:`ZmqSource` for live frames over ZeroMQ);
- :mod:`~xtalscreen.screen.prepare`: :class:`FastPreprocess`, the model's preprocessing touching
  only the crop's pixels;
- :mod:`~xtalscreen.screen.workers`: per-frame work (preprocess, batched inference, optional
  spot counting), in-process or in worker processes;
- :mod:`~xtalscreen.screen.collector`: one node writes ``results.csv``, ``hits.lst``,
  ``hits.h5`` and prints the live hit rate and the summary;
- :mod:`~xtalscreen.screen.engine`: :func:`screen`, the wiring;
- :mod:`~xtalscreen.screen.demo`: :func:`demo`, the main job on a small simulated run.

>>> from xtalscreen.screen import screen            # doctest: +SKIP
>>> summary = screen(["run_0001.h5"], out="screen_out", workers=2)
>>> print(summary.line())
"""

from xtalscreen.screen.collector import FileCollector, Summary
from xtalscreen.screen.engine import screen
from xtalscreen.screen.prepare import FastPreprocess
from xtalscreen.screen.sources import FileSource, FrameSource, ZmqSource, send_end, send_frame
from xtalscreen.screen.workers import FrameProcessor, FrameResult

__all__ = ["screen", "demo", "Summary", "FileCollector", "FileSource", "FrameSource", "ZmqSource",
           "send_frame", "send_end", "FastPreprocess", "FrameProcessor", "FrameResult"]


def demo(out_dir, **kwargs):
    """Simulate a small mixed run, screen it with the shipped model, print the confusion matrix
    and throughput (see :func:`xtalscreen.screen.demo.demo`)."""
    from xtalscreen.screen.demo import demo as _demo

    return _demo(out_dir, **kwargs)
