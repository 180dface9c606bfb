"""Training: datasets, class-balanced sampling, the loop, checkpoints, schedules, tuning.

>>> from xtalscreen.train import TrainConfig, load_labels, train, load_model   # doctest: +SKIP
>>> data = load_labels("sim/", target="ke")
>>> res = train(TrainConfig(epochs=120), data.split("train"), val=data.split("val"), out_dir="run/")
>>> model, preprocess, meta = load_model("run/best.pt")
"""

from xtalscreen.train.checkpoint import (SCHEMA_VERSION, TASK, load_model, read_checkpoint, save_checkpoint,
                                         update_checkpoint)
from xtalscreen.train.datasets import TARGETS, FrameDataset, LabelledSet, load_labels, map_label
from xtalscreen.train.loop import (TrainConfig, TrainResult, build_model, predict, recalibrate, resolve_device,
                                  train)
from xtalscreen.train.samplers import BalancedBatchSampler, RandomBatchSampler
from xtalscreen.train.schedules import SCHEDULES, learning_rate

__all__ = ["SCHEMA_VERSION", "TASK", "load_model", "read_checkpoint", "save_checkpoint", "TARGETS",
           "FrameDataset", "LabelledSet", "load_labels", "map_label", "TrainConfig", "TrainResult",
           "build_model", "predict", "recalibrate", "resolve_device", "train", "update_checkpoint",
           "BalancedBatchSampler",
           "RandomBatchSampler", "SCHEDULES", "learning_rate"]
