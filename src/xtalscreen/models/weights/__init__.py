"""Shipped model weights (package data): ``default_ke.pt`` + its card ``default_ke.json``.

Load them with :func:`xtalscreen.models.pretrained.load_default`; regenerate them with
``scripts/train_default_model.sh``.
"""
