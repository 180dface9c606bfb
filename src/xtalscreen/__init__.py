"""xtalscreen: decide, fast and reliably, which crystallography images are worth keeping.

Layers, bottom to top:

- :mod:`xtalscreen.io`: frames, readers, geometry, masks (pure arrays + metadata)
- :mod:`xtalscreen.simulate`: diffraction simulator with exact labels
- :mod:`xtalscreen.preprocess`, :mod:`xtalscreen.spots`, :mod:`xtalscreen.features`: array functions
- :mod:`xtalscreen.models`, :mod:`xtalscreen.train`, :mod:`xtalscreen.evaluate`: learning
- :mod:`xtalscreen.screen`, :mod:`xtalscreen.drops`: engines and services
- :mod:`xtalscreen.cli`: the command line, a thin skin over the above
"""

__version__ = "0.1.0"

from xtalscreen.errors import XtalscreenError, InputError, ParameterError

__all__ = ["__version__", "XtalscreenError", "InputError", "ParameterError"]
