"""``ensemble``: several trained networks of one task averaged into one model.

The members see the same input (one preprocessing, saved with the checkpoint) and their class
probabilities are averaged; the output is the log of that mean, so ``softmax(output)`` is the
mean probability and everything downstream (``screen``, ``evaluate``, ``calibrate``) treats an
ensemble like any model. Averaging the probabilities of networks trained from different data or
seeds lowers the variance of the decision near the class boundaries; the cost is one forward
pass per member.

``forward_features`` gives the members' pre-logit vectors side by side (as ``(N, F, 1, 1)``
maps), ``forward_head`` applies
each member's classifier to its part and averages (``pre_logits=True`` returns the vectors), so
``forward == forward_head(forward_features(x))`` and saliency / embeddings work as for a single
network.

>>> import torch
>>> from xtalscreen.models import create_model
>>> spec = {"model_name": "spotcount", "model_kwargs": {"img_size": 64}}
>>> m = create_model("ensemble", members=[spec, spec]).eval()
>>> m(torch.zeros(2, 1, 64, 64)).exp().sum(1)   # mean probabilities sum to 1
tensor([1.0000, 1.0000], grad_fn=<SumBackward1>)

Build one from trained checkpoints with :func:`ensemble_checkpoints` (or ``xtalscreen ensemble
A.pt B.pt --out E.pt``). An ensemble is for inference: the members' dropout before their
classifiers is not applied, and it is not fine-tuned as a whole (fine-tune the members).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xtalscreen.errors import InputError, ParameterError
from xtalscreen.models._base import XtalModel, create_model, register_model

__all__ = ["Ensemble", "ensemble", "ensemble_checkpoints"]


class Ensemble(XtalModel):
    """Mean of the members' class probabilities; output ``log(mean softmax)``."""

    def __init__(self, members) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ParameterError(f"an ensemble needs at least 2 members, got {len(members)}")
        n = {m.num_classes for m in members}
        c = {m.default_cfg["input_size"][0] for m in members}
        if len(n) != 1 or len(c) != 1:
            raise ParameterError(f"ensemble members must share classes and input channels; got "
                                 f"{sorted(n)} classes and {sorted(c)} channels")
        self.members = nn.ModuleList(members)
        self.num_classes = n.pop()
        self.splits = [int(m.num_features) for m in members]
        self.num_features = sum(self.splits)
        first = members[0].default_cfg
        self.default_cfg = {**first, "paper": "ensemble of " + ", ".join(
            getattr(m, "model_name", "") or type(m).__name__ for m in members)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The members' pre-logit vectors side by side, as ``(N, num_features, 1, 1)`` maps."""
        v = torch.cat([m.forward_head(m.forward_features(x), pre_logits=True) for m in self.members],
                      dim=1)
        return v[:, :, None, None]

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        if x.ndim == 4 and x.shape[2:] == (1, 1):
            x = x[:, :, 0, 0]
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ParameterError(f"the ensemble's head takes (N, {self.num_features}, 1, 1) features, "
                                 f"got {tuple(x.shape)}")
        if pre_logits:
            return x
        parts = torch.split(x, self.splits, dim=1)
        logp = torch.stack([torch.log_softmax(m.get_classifier()(f), dim=1)
                            for m, f in zip(self.members, parts)])
        return torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(len(self.members))))

    def get_classifier(self) -> nn.Module:
        raise ParameterError("an ensemble has one classifier per member; fine-tune the members "
                             "(their own checkpoints) and ensemble them again")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every member's last layer with a fresh one of ``num_classes`` outputs."""
        for i, m in enumerate(self.members):
            m.reset_classifier(num_classes)
            if hasattr(self, "model_kwargs"):
                self.model_kwargs["members"][i]["model_kwargs"]["num_classes"] = int(num_classes)
        self.num_classes = int(num_classes)


@register_model
def ensemble(*, members, num_classes: int | None = None) -> Ensemble:
    """Members given as ``{"model_name": ..., "model_kwargs": {...}}`` dicts (what a
    checkpoint stores); ``num_classes``, when given, must match theirs."""
    built = []
    for i, spec in enumerate(members or ()):
        if not isinstance(spec, dict) or "model_name" not in spec:
            raise ParameterError(f"ensemble member {i} must be a dict with 'model_name' and "
                                 f"'model_kwargs', got {spec!r}")
        if spec["model_name"] == "ensemble":
            raise ParameterError("an ensemble member cannot be an ensemble; list its members")
        kwargs = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in dict(spec.get("model_kwargs") or {}).items()}
        built.append(create_model(spec["model_name"], **kwargs))
    m = Ensemble(built)
    if num_classes is not None and num_classes != m.num_classes:
        raise ParameterError(f"num_classes={num_classes} but the members have {m.num_classes}")
    return m


def ensemble_checkpoints(paths, out, *, task: str | None = None) -> Path:
    """Write checkpoint ``out``: an :class:`Ensemble` of the trained checkpoints ``paths``.

    The members must share classes, target and preprocessing (the ensemble's input is
    prepared once); their weights, including per-input-size BatchNorm statistics, are copied.
    The first member's preprocessing is saved with the ensemble.

    Raises
    ------
    InputError
        A file is missing or not a checkpoint, or the members differ in classes, target or
        preprocessing (the message names the file and the difference).
    """
    from xtalscreen.train import load_model, save_checkpoint
    from xtalscreen.train.checkpoint import TASK

    paths = [str(p) for p in paths]
    if len(paths) < 2:
        raise ParameterError(f"give at least 2 checkpoints to ensemble, got {len(paths)}")
    loaded = [load_model(p, task=task or TASK) for p in paths]
    net0, pp0, meta0 = loaded[0]
    for p, (net, pp, meta) in zip(paths[1:], loaded[1:]):
        for what, a, b in (("classes", meta["classes"], meta0["classes"]),
                           ("target", meta["target"], meta0["target"]),
                           ("preprocessing", pp.to_dict(), pp0.to_dict())):
            if a != b:
                raise InputError(f"its {what} differ from {paths[0]}'s ({a} vs {b}); ensemble "
                                 "members must share them", path=p)
    specs = []
    for net, _, _ in loaded:
        if net.model_name == "ensemble":
            raise InputError("is an ensemble already; list its members instead", path=paths[0])
        specs.append({"model_name": net.model_name, "model_kwargs": dict(net.model_kwargs)})
    model = create_model("ensemble", members=specs)
    from xtalscreen.models.sizebn import restore_batchnorm_sizes

    state = {f"members.{i}.{k}": v for i, (net, _, _) in enumerate(loaded)
             for k, v in net.state_dict().items()}
    restore_batchnorm_sizes(model, state)
    model.load_state_dict(state)
    return save_checkpoint(out, model, preprocess=pp0, classes=meta0["classes"], target=meta0["target"],
                           best={"members": paths}, config={"ensemble_of": paths})
