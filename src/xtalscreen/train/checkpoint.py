"""Model checkpoints: everything needed to rebuild, resume and apply a trained model.

A checkpoint is a ``torch.save`` file of plain types (loaded with ``weights_only=True``, so no
code runs on load) holding:

``format``       ``"xtalscreen-checkpoint"``
``schema``       :data:`SCHEMA_VERSION` (layout of this dict)
``task``         what the model does (:data:`TASK`: frame classification)
``model_name``, ``model_kwargs``   ``create_model(model_name, **model_kwargs)`` rebuilds it
``state_dict``   the weights
``preprocess``   the :class:`~xtalscreen.preprocess.PreprocessConfig` dict used in training
``classes``, ``target``            output order and label scheme
``epoch``        epochs completed
``optimizer``, ``rng``, ``history``, ``best``, ``config``   for resuming identically
``xtalscreen_version``
``operating_points``  optional: ``{detector_key: OperatingPoint dict}`` written by
                 ``xtalscreen calibrate`` (:func:`update_checkpoint`), used by ``screen``
``views``        optional: the test-time views a head was fitted with (``xtalscreen
                 train-head``); ``evaluate``, ``calibrate`` and ``screen`` use them by default

:func:`load_model` refuses a file of another format, schema or task with an
:class:`~xtalscreen.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xtalscreen.errors import InputError

__all__ = ["SCHEMA_VERSION", "TASK", "FORMAT", "save_checkpoint", "read_checkpoint", "load_model",
           "update_checkpoint"]

SCHEMA_VERSION = 1
TASK = "frame-classification"
FORMAT = "xtalscreen-checkpoint"


def save_checkpoint(path, model, *, preprocess, classes, target: str, epoch: int = 0,
                    optimizer=None, rng_state=None, history=None, best=None, config=None,
                    task: str = TASK, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); returns the path.
    ``extra``: more training state to resume from (e.g. ``count_head``), stored as given."""
    import torch

    from xtalscreen import __version__

    pp = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    state = {
        "format": FORMAT,
        "schema": SCHEMA_VERSION,
        "task": task,
        "model_name": model.model_name,
        "model_kwargs": _plain(model.model_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "preprocess": pp,
        "classes": list(classes),
        "target": target,
        "epoch": int(epoch),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "rng": rng_state,
        "history": list(history or []),
        "best": dict(best or {}),
        "config": _plain(config or {}),
        "xtalscreen_version": __version__,
    }
    for k, v in (extra or {}).items():
        if k in state:
            raise ValueError(f"extra checkpoint entry {k!r} would replace a standard one")
        state[k] = v
    return _write(path, state)


def _write(path, state: dict) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def update_checkpoint(src, dst, **fields: Any) -> Path:
    """Copy checkpoint ``src`` to ``dst`` (atomically; ``dst`` may be ``src``) with ``fields``
    set, e.g. ``operating_points={...}``; the weights and everything else unchanged."""
    state = read_checkpoint(src, task=None)
    state.update({k: _plain(v) for k, v in fields.items()})
    return _write(dst, state)


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    return v


def read_checkpoint(path, *, task: str | None = TASK, map_location="cpu") -> dict[str, Any]:
    """The checkpoint dict, checked: format, schema version and (unless ``task=None``) task.

    Raises
    ------
    InputError
        Missing file, not a checkpoint, another schema version or another task.
    """
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError("model file not found; give a checkpoint written by xtalscreen train",
                         path=str(p))
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError,
            ValueError, AttributeError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not an xtalscreen model checkpoint (torch could not load it: "
                         f"{first[:200]})", path=str(p)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError("not an xtalscreen model checkpoint (no 'format: "
                         f"{FORMAT}' entry); train one with xtalscreen train", path=str(p))
    schema = state.get("schema")
    if schema != SCHEMA_VERSION:
        raise InputError(f"checkpoint schema version {schema!r}, this xtalscreen reads version "
                         f"{SCHEMA_VERSION}; retrain the model with this version (or use the "
                         f"xtalscreen version that wrote it, {state.get('xtalscreen_version', '?')})",
                         path=str(p))
    if task is not None and state.get("task") != task:
        raise InputError(f"this model is for task {state.get('task')!r}, not {task!r}; "
                         "give a model trained for it", path=str(p))
    missing = [k for k in ("model_name", "model_kwargs", "state_dict", "preprocess", "classes",
                           "target") if k not in state]
    if missing:
        raise InputError(f"checkpoint lacks {missing}; it is incomplete or corrupt", path=str(p))
    return state


def load_model(path, *, task: str | None = TASK, device="cpu"):
    """Rebuild a trained model from a checkpoint.

    Parameters
    ----------
    path : str or path-like
    task : str or None, keyword-only
        Required task (default :data:`TASK`); ``None`` accepts any.
    device : str or torch.device, keyword-only

    Returns
    -------
    model : XtalModel
        In eval mode, on ``device``.
    preprocess : PreprocessConfig
    meta : dict
        The checkpoint without weights and optimizer state (classes, target, epoch, history,
        best, config, versions).

    Raises
    ------
    InputError
        The file is missing, not a checkpoint, of another schema version or task, or its
        weights do not fit the model it names.
    """
    from xtalscreen.errors import ParameterError
    from xtalscreen.models import create_model
    from xtalscreen.models.sizebn import restore_batchnorm_sizes
    from xtalscreen.preprocess import PreprocessConfig

    state = read_checkpoint(path, task=task)
    kwargs = dict(state["model_kwargs"])
    for k, v in list(kwargs.items()):
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    try:
        model = create_model(state["model_name"], **kwargs)
        preprocess = PreprocessConfig.from_dict(state["preprocess"])
        restore_batchnorm_sizes(model, state["state_dict"])
        model.load_state_dict(state["state_dict"])
    except (ParameterError, RuntimeError, KeyError, TypeError) as exc:
        raise InputError(f"the checkpoint does not rebuild: {str(exc).splitlines()[0][:300]}",
                         path=str(path)) from None
    if state.get("views") is not None:
        from xtalscreen.preprocess.views import check_views

        try:
            check_views(state["views"])
        except ParameterError as exc:
            raise InputError(f"the checkpoint's test-time views entry is damaged: {exc}",
                             path=str(path)) from None
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "optimizer", "rng")}
    meta["path"] = str(path)
    return model, preprocess, meta
