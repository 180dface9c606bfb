"""Diffraction-image simulator with exact labels (xtalscreen issue 3).

Public API
----------
get_preset(name) -> SimulationConfig
    Editable configuration of a detector/beam setup (``diffranet``, ``cspad``,
    ``rayonix_mx340``, ``pilatus6m``, ``eiger16m``, ``jungfrau4m``).
preset_from_geom(path, base="cspad") -> SimulationConfig
    The same with the detector read from a CrystFEL ``.geom`` file.
simulate_frame(config, *, rng=None, frame_class=None) -> (Frame, Truth)
    One frame and its ground truth (DiffraNet and Ke classes, spot table, parameters).
simulate_dataset(out_dir, *, presets, n, seed, workers, classes, split, fmt) -> DatasetSummary
    A labelled dataset on disk (HDF5 shards or DiffraNet PNG tree, labels.csv, spots.csv).
read_spots(dataset_dir, file, frame) -> ndarray
    The ground-truth spots of one dataset frame (for overlays).

See :mod:`xtalscreen.simulate.engine` for the physics and
:mod:`xtalscreen.simulate.labels` for the label definitions.
"""

from xtalscreen.simulate.config import (DIFFRANET_CLASSES, KE_CLASSES, BackgroundConfig, BeamConfig,
                                        CrystalConfig, DetectorConfig, LabelConfig, SimulationConfig,
                                        get_preset, list_presets, preset_from_geom)
from xtalscreen.simulate.engine import simulate_frame
from xtalscreen.simulate.labels import SPOT_DTYPE, Truth

__all__ = [
    "DIFFRANET_CLASSES", "KE_CLASSES", "BackgroundConfig", "BeamConfig", "CrystalConfig", "DetectorConfig",
    "LabelConfig", "SimulationConfig", "get_preset", "list_presets", "preset_from_geom", "simulate_frame",
    "SPOT_DTYPE", "Truth", "simulate_dataset", "read_spots",
]


def __getattr__(name):  # lazy: the dataset writer pulls in h5py / multiprocessing
    if name in ("simulate_dataset", "read_spots", "DatasetSummary"):
        from xtalscreen.simulate import dataset

        return getattr(dataset, name)
    raise AttributeError(name)
