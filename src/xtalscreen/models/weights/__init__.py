"""Shipped model weights (package data): ``default_ke.pt`` + its card ``default_ke.json``, and
``diffranet5.pt`` + ``diffranet5.json`` (DiffraNet's five classes: a new last layer on the same
network, ``scripts/train_diffranet_head.py``), and ``rayonix_ke.pt`` + ``rayonix_ke.json`` (the
default weights fine-tuned for Rayonix MX340-HS frames through a matched filter), and
``ke2018_cspad.pt`` + ``ke2018_cspad.json`` (paper 001's ke2018 network trained from scratch on
simulated CSPAD frames).

Load them with :func:`xtalscreen.models.pretrained.load_default`; regenerate them with
``scripts/train_default_model.sh``.
"""
