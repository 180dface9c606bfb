"""The model shipped inside the package, loaded with no network access.

``default`` is a ``spotcount`` hit-screening model (Hit / Maybe / Miss; a detect-and-count CNN,
see :mod:`xtalscreen.models.spotcount`) trained on a mix of simulated detectors (DiffraNet CCD,
CSPAD, Pilatus 2M) by ``scripts/train_default_model.py`` (from scratch, then fine-tuned on frames
near the Hit/Miss boundary); its card (``default_ke.json`` next to the weights) records the data,
the commands and the measured accuracy.

``diffranet5`` is the same network with a new last layer for DiffraNet's five classes (blank,
no-crystal, weak, good, strong), fitted by ``scripts/train_diffranet_head.py`` with
:func:`xtalscreen.train.head.fit_head` on its spot-count features at 8 test-time views (card
``diffranet5.json``). ``screen`` maps its classes to Hit (good, strong) / Maybe (weak) / Miss.

``rayonix`` is ``default`` fine-tuned for Rayonix MX340-HS frames (2 x 2 binned, 1920 x 1920):
its preprocessing smooths each frame with a Gaussian matched filter (1.2 px) and bins by 2
(:mod:`xtalscreen.preprocess.smooth`), because the fibre-optic taper spreads its spots; for
this detector only (card ``rayonix_ke.json``).

``ke2018_cspad`` is paper 001's own network (``ke2018`` at its layer sizes 4, 8, 16, 32; 6,463
parameters) trained from random weights on 10,000 simulated CSPAD frames in 15 minutes on 2
CPU cores (one network per detector, as in paper 001), with its CSPAD point at 8 views; for
this detector only (card ``ke2018_cspad.json``).

>>> from xtalscreen.models.pretrained import load_default, model_card   # doctest: +SKIP
>>> model, preprocess, meta = load_default()
>>> model_card()["test"]["overall"]["sensitivity"]
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from xtalscreen.errors import InputError

__all__ = ["PRETRAINED", "resolve_model", "load_default", "model_card", "load_screening_model"]

#: name -> (weights file, card file) inside ``xtalscreen.models.weights``
PRETRAINED = {"default": ("default_ke.pt", "default_ke.json"),
              "diffranet5": ("diffranet5.pt", "diffranet5.json"),
              "rayonix": ("rayonix_ke.pt", "rayonix_ke.json"),
              "ke2018_cspad": ("ke2018_cspad.pt", "ke2018_cspad.json")}


def _resource(name: str) -> Path:
    ref = resources.files("xtalscreen.models.weights").joinpath(name)
    p = Path(str(ref))
    if not p.is_file():
        raise InputError(f"the shipped model file {name} is missing from the installation; "
                         "reinstall xtalscreen or run scripts/train_default_model.sh", path=str(p))
    return p


def resolve_model(model="default") -> str:
    """Path of a model: a shipped name (``"default"``) or a checkpoint path (checked to exist)."""
    if isinstance(model, str) and model in PRETRAINED:
        return str(_resource(PRETRAINED[model][0]))
    p = Path(os.fspath(model))
    if not p.is_file():
        raise InputError(f"model not found: give a checkpoint file written by xtalscreen train or "
                         f"one of {sorted(PRETRAINED)}", path=str(p))
    return str(p)


def model_card(model="default") -> dict:
    """The JSON card of a shipped model ({} for a user checkpoint or a missing card)."""
    if not (isinstance(model, str) and model in PRETRAINED):
        return {}
    try:
        return json.loads(_resource(PRETRAINED[model][1]).read_text())
    except (InputError, ValueError):
        return {}


def load_screening_model(model="default"):
    """``(model, preprocess, meta)`` of a shipped name or checkpoint path, for screening.

    ``meta["card"]`` is the model card (shipped models), ``meta["path"]`` the file.

    Raises
    ------
    InputError
        Missing file, not a checkpoint, another schema version or task (one line, naming it).
    """
    from xtalscreen.train import load_model

    path = resolve_model(model)
    net, pp, meta = load_model(path)
    meta["card"] = model_card(model)
    return net, pp, meta


def load_default():
    """The shipped default hit-screening model: ``(model, preprocess, meta)``."""
    return load_screening_model("default")
