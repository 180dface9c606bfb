"""Classical spot finders, hit rules and labelling.

- :func:`find_spots` — DIALS-style dispersion or peakfinder8-style search on an array or Frame,
  returning a :class:`SpotTable` (panel, fs, ss, x, y, intensity, n_pixels, max_pixel,
  background, snr, d).
- :mod:`.hitrules` — spot-count hit rule, Ke's Hit/Maybe/Miss bands, Po-Nan Li's labeller.
- :mod:`.batch` — running over files with worker processes and writing CSV / CXI / list outputs.
- :mod:`.reference` — plain numpy/scipy implementations (tests and benchmark baseline).
"""

from xtalscreen.spots.dispersion import DispersionParams, estimate_gain
from xtalscreen.spots.find import ALGORITHMS, ICE_RINGS_D, find_spots, make_params
from xtalscreen.spots.hitrules import KeBands, LiLabeller, SpotCountRule, make_rule
from xtalscreen.spots.peakfinder8 import Peakfinder8Params
from xtalscreen.spots.table import FIELDS, SPOT_DTYPE, SpotTable

__all__ = [
    "ALGORITHMS", "ICE_RINGS_D", "FIELDS", "SPOT_DTYPE", "DispersionParams", "KeBands",
    "LiLabeller", "Peakfinder8Params", "SpotCountRule", "SpotTable", "estimate_gain",
    "find_spots", "make_params", "make_rule",
]
