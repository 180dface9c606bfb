"""One frame in, one fixed-size tensor out: :class:`PreprocessConfig`.

The config is what a model checkpoint stores next to its weights (``to_dict`` / ``from_dict``),
so ``xtalscreen screen`` applies exactly the preprocessing that ``xtalscreen train`` used.

Steps of :meth:`PreprocessConfig.apply`, in order:

1. assemble the frame into one 2-D image through its geometry (multi-panel detectors), pixels
   no panel covers being masked;
2. (``prefilter_sigma > 0``) smooth with a Gaussian of that many detector pixels, masked pixels
   left out (:func:`~xtalscreen.preprocess.gaussian_prefilter`: the matched filter of a spot
   spread by a wide point-spread function, so that max-binning keeps it);
   then bin ``bin x bin`` (masked pixels left out, see :func:`~xtalscreen.preprocess.bin_image`);
3. crop ``crop`` pixels around the direct beam (paper 001: 720 x 720 after 2 x 2 binning;
   paper 003: 350 x 350 unbinned; paper 002: 512 x 512), padding with masked zeros where the
   crop leaves the detector; with ``augment=True`` the crop window is first shifted by up to
   ``max_shift`` pixels (paper 001's random crop);
4. (augment) scale the intensities;
5. contrast: LCN (paper 001 eqs 6-9), the viewer's linear ramp, sqrt, log or none; masked
   pixels are 0 afterwards;
6. (augment) flips and quarter turns;
7. repeat into ``channels`` identical channels: ``(C, H, W)`` float32.

Drop photographs (crystallisation drops, :mod:`xtalscreen.drops`) use the sibling
:class:`ImagePreprocessConfig` instead: the whole image resized to the model input, grey or RGB,
scaled to [0, 1] and standardised (:func:`image_to_tensor`, shared with the drop pipeline),
with flips, quarter turns and brightness as augmentation.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from xtalscreen.errors import ParameterError, check_positive
from xtalscreen.preprocess.augment import IDENTITY, flip_rotate, sample_augmentation, scale_intensity
from xtalscreen.preprocess.binning import BIN_REDUCE, bin_image
from xtalscreen.preprocess.contrast import CONTRASTS, apply_contrast
from xtalscreen.preprocess.crop import center_crop
from xtalscreen.preprocess.smooth import gaussian_prefilter

__all__ = ["PreprocessConfig", "ImagePreprocessConfig", "image_to_tensor", "SCHEMA_VERSION"]

#: Version of the dictionary layout written by :meth:`PreprocessConfig.to_dict`.
SCHEMA_VERSION = 3  # 2: unbinned_up_to and margin; 3: prefilter_sigma


def _pos_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _from_fields(cls, d: dict, what: str, tuple_keys: tuple[str, ...]):
    """``cls(**d)`` for a settings dict read back from JSON: unknown keys are an error naming
    them, and the JSON lists in ``tuple_keys`` become tuples again."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ParameterError(f"unknown {what} settings {unknown}; known: {sorted(names)}")
    for key in tuple_keys:
        if key in d and isinstance(d[key], list):
            d[key] = tuple(d[key])
    return cls(**d)


def _ratio_range(name: str, value) -> tuple[float, float]:
    """``(low, high)`` with ``0 < low <= high < inf`` as floats, else a ParameterError naming it."""
    try:
        r = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 2 or not (0 < r[0] <= r[1] < float("inf")):
        raise ParameterError(f"{name} must be (low, high) with 0 < low <= high, got {value!r}")
    return r


@dataclass(frozen=True)
class PreprocessConfig:
    """How a detector frame becomes a network input.

    Parameters
    ----------
    bin : int or "auto"
        Binning factor (1 = none; paper 001 uses 2). ``"auto"`` picks, per detector, the
        smallest factor that fits the whole (assembled) image into ``crop``:
        ``ceil(max(H / crop_h, W / crop_w))`` (see :meth:`bin_for`), so one model sees the full
        detector of a 512 x 512 CCD (factor 2 at a 256 crop) and of a 2.3 Mpx CSPAD (factor 7)
        alike. Paper 001's fixed factor with a beam-centred crop shows only the inner part of
        a large detector, where a weak hit may have none of its spots.
    crop : (int, int)
        Output (height, width) in pixels *after* binning.
    unbinned_up_to : int
        With ``bin="auto"``: a detector whose automatic factor ``f`` is at most this is **not
        binned**; it is cropped at full resolution to ``f * crop`` instead (the same field of
        view, ``f²`` times the pixels), so its faint spots are not averaged away. E.g. with a
        256 crop and ``unbinned_up_to=2`` a 512 x 512 CCD gives a 512 x 512 input at factor 1,
        a 2.3 Mpx CSPAD a 256 x 256 input at factor 7. 1 (default): always bin. The output
        size then depends on the detector (:meth:`output_shape_for`); models with a global
        head (``spotcount``) take any size. Training on inputs of several sizes keeps
        BatchNorm running statistics per size (:mod:`xtalscreen.models.sizebn`).
    margin : int
        Pixels on each side of the input image that lie outside the field of view: training
        windows cut with room for random shifts (``crop + 2 * max_shift`` after binning) use
        ``margin=max_shift``, so the binning and size rules see the image they were cut from.
        0 (default) for detector frames.
    center : {"beam", "image"}
        Crop around the direct beam (default) or the image centre. Frames without a beam
        centre fall back to the image centre with a warning naming the frame.
    contrast : {"lcn", "linear", "sqrt", "log", "none"}
        See :mod:`xtalscreen.preprocess.contrast`.
    lcn_window : int
        LCN neighbourhood edge (odd, pixels, after binning).
    lcn_eps : float
        LCN floor of the local standard deviation (units of the global standard deviation).
    linear_percentile : float
        Linear contrast: percentile of the valid pixels mapped to 1 (100 = plain min-max
        rescaling to [0, 1], as paper 002 does).
    bin_reduce : {"sum", "mean", "max"}
        Binning sums counts (default), averages them, or keeps each block's brightest pixel
        (``"max"``: max-pooling, which keeps a one-pixel spot's peak through strong binning).
    channels : int
        Number of identical output channels (1 for grey models; 3 for RGB-pretrained ones).
    max_shift : int
        Augmentation: random crop shift range ±``max_shift`` pixels (paper 001: 120).
    flips, rot90 : bool
        Augmentation: random flips / quarter turns (non-square crops: half turns only).
    scale_range : (float, float)
        Augmentation: intensity multiplier range (log-uniform). LCN ignores it by construction.
    prefilter_sigma : float
        Gaussian smoothing before binning, sigma in unbinned (assembled) detector pixels; 0
        (default): none. The matched filter for detectors whose point-spread function spreads
        a spot over several pixels (fibre-optic-taper CCDs such as the Rayonix MX series); see
        :mod:`xtalscreen.preprocess.smooth`. Usually set per detector by an operating point
        (``xtalscreen calibrate --preprocess prefilter_sigma=1.2``), not for the whole model.

    Examples
    --------
    >>> import numpy as np
    >>> from xtalscreen.io.frame import Frame
    >>> cfg = PreprocessConfig(bin=2, crop=(64, 64), contrast="lcn")
    >>> f = Frame(np.random.default_rng(0).poisson(3.0, (200, 180)), beam_center=(90.0, 100.0))
    >>> cfg.apply(f).shape
    (1, 64, 64)
    >>> PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    bin: int | str = 2
    crop: tuple[int, int] = (720, 720)
    unbinned_up_to: int = 1
    margin: int = 0
    center: str = "beam"
    contrast: str = "lcn"
    lcn_window: int = 9
    lcn_eps: float = 1e-3
    linear_percentile: float = 99.5
    bin_reduce: str = "sum"
    channels: int = 1
    max_shift: int = 120
    flips: bool = True
    rot90: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    prefilter_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.bin != "auto":
            if isinstance(self.bin, str):
                raise ParameterError(f"bin must be an integer >= 1 or 'auto', got {self.bin!r}")
            object.__setattr__(self, "bin", _pos_int("bin", self.bin))
        crop = self.crop
        if np.isscalar(crop):
            crop = (crop, crop)
        if len(crop) != 2:
            raise ParameterError(f"crop must be (height, width) in pixels, got {self.crop!r}")
        object.__setattr__(self, "crop", (_pos_int("crop height", crop[0]), _pos_int("crop width", crop[1])))
        object.__setattr__(self, "unbinned_up_to", _pos_int("unbinned_up_to", self.unbinned_up_to))
        object.__setattr__(self, "margin", _pos_int("margin", self.margin, minimum=0))
        if self.center not in ("beam", "image"):
            raise ParameterError(f"center must be 'beam' or 'image', got {self.center!r}")
        if self.contrast not in CONTRASTS:
            raise ParameterError(f"contrast must be one of {', '.join(CONTRASTS)}; got {self.contrast!r}")
        w = _pos_int("lcn_window", self.lcn_window)
        if w % 2 == 0:
            raise ParameterError(f"lcn_window must be odd (pixels), got {w}")
        object.__setattr__(self, "lcn_eps", check_positive("lcn_eps", self.lcn_eps))
        lp = check_positive("linear_percentile", self.linear_percentile)
        if lp > 100:
            raise ParameterError(f"linear_percentile must be in (0, 100], got {self.linear_percentile!r}")
        object.__setattr__(self, "linear_percentile", lp)
        if self.bin_reduce not in BIN_REDUCE:
            raise ParameterError(f"bin_reduce must be one of {', '.join(BIN_REDUCE)}, got {self.bin_reduce!r}")
        _pos_int("channels", self.channels)
        _pos_int("max_shift", self.max_shift, minimum=0)
        object.__setattr__(self, "scale_range", _ratio_range("scale_range", self.scale_range))
        object.__setattr__(self, "flips", bool(self.flips))
        object.__setattr__(self, "rot90", bool(self.rot90))
        try:
            ps = float(self.prefilter_sigma)
        except (TypeError, ValueError):
            ps = float("nan")
        if isinstance(self.prefilter_sigma, (bool, np.bool_)) or not (0.0 <= ps < 64.0):
            raise ParameterError(f"prefilter_sigma must be a number of pixels in [0, 64), got "
                                 f"{self.prefilter_sigma!r}")
        object.__setattr__(self, "prefilter_sigma", ps)

    # ------------------------------------------------------------------ presets
    @classmethod
    def ke2018(cls, **changes: Any) -> "PreprocessConfig":
        """Paper 001: 2 x 2 binning, 720 x 720 beam-centred crop, LCN, ±120 px random crops."""
        return cls(**{"bin": 2, "crop": (720, 720), "contrast": "lcn", "max_shift": 120, **changes})

    @classmethod
    def li2018(cls, **changes: Any) -> "PreprocessConfig":
        """Paper 003: no binning, 350 x 350 centre crop (raw intensities)."""
        return cls(**{"bin": 1, "crop": (350, 350), "contrast": "none", **changes})

    @classmethod
    def deepfreak(cls, **changes: Any) -> "PreprocessConfig":
        """Paper 002: 512 x 512 images (DiffraNet size), intensities rescaled to [0, 1]."""
        return cls(**{"bin": 1, "crop": (512, 512), "contrast": "linear",
                      "linear_percentile": 100.0, **changes})

    def plan(self, image_shape) -> tuple[int, tuple[int, int]]:
        """Binning factor and output (height, width) for an (assembled) image of ``image_shape``.

        A fixed ``bin`` gives ``(bin, crop)``. ``bin="auto"`` takes the smallest factor that
        fits the image (less ``margin`` on each side) into the crop,
        ``f = ceil(max(H / crop_h, W / crop_w))`` (at least 1), and gives ``(f, crop)``, or
        ``(1, f * crop)`` when ``f <= unbinned_up_to``.

        Examples
        --------
        >>> PreprocessConfig(bin="auto", crop=(256, 256)).plan((1670, 1670))
        (7, (256, 256))
        >>> PreprocessConfig(bin="auto", crop=(256, 256), unbinned_up_to=2).plan((512, 512))
        (1, (512, 512))
        >>> PreprocessConfig(bin="auto", crop=(256, 256), unbinned_up_to=2, margin=32).plan((320, 320))
        (1, (256, 256))
        """
        if self.bin != "auto":
            return int(self.bin), self.crop
        h, w = (max(1, int(v) - 2 * self.margin) for v in image_shape[-2:])
        f = max(1, math.ceil(max(h / self.crop[0], w / self.crop[1])))
        if 1 < f <= self.unbinned_up_to:
            return 1, (f * self.crop[0], f * self.crop[1])
        return f, self.crop

    def bin_for(self, image_shape) -> int:
        """Binning factor used for an (assembled) image of ``image_shape`` = (H, W) pixels
        (:meth:`plan`).

        Examples
        --------
        >>> PreprocessConfig(bin="auto", crop=(256, 256)).bin_for((1670, 1670))
        7
        >>> PreprocessConfig(bin=2).bin_for((1670, 1670))
        2
        """
        return self.plan(image_shape)[0]

    def output_shape_for(self, image_shape) -> tuple[int, int, int]:
        """(C, H, W) of the tensor :meth:`apply` returns for an image of ``image_shape``."""
        h, w = self.plan(image_shape)[1]
        return (self.channels, h, w)

    # ------------------------------------------------------------------ (de)serialisation
    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the tensors :meth:`apply` returns (all of them unless
        ``unbinned_up_to > 1``: then those of binned detectors, see :meth:`output_shape_for`)."""
        return (self.channels, self.crop[0], self.crop[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists) with a ``schema`` version."""
        d: dict[str, Any] = {"schema": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        """Inverse of :meth:`to_dict`; unknown keys or a newer schema raise ParameterError.

        A dict with ``mode: "image"`` (a drop-image model) gives an
        :class:`ImagePreprocessConfig` instead."""
        if not isinstance(d, dict):
            raise ParameterError(f"preprocessing settings must be a dict, got {type(d).__name__}")
        if d.get("mode") == IMAGE_MODE:  # a drop-image model's settings
            return ImagePreprocessConfig.from_dict(d)
        d = dict(d)
        schema = d.pop("schema", SCHEMA_VERSION)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise ParameterError(
                f"preprocessing settings have schema {schema!r}, this xtalscreen reads up to "
                f"{SCHEMA_VERSION}; upgrade xtalscreen to use this model")
        return _from_fields(cls, d, "preprocessing", ("crop", "scale_range"))

    def replace(self, **changes: Any) -> "PreprocessConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ application
    def _frame_center(self, frame, image_shape) -> tuple[float, float]:
        h, w = image_shape
        if self.center == "image":
            return (w / 2.0, h / 2.0)
        if frame.beam_center is not None:
            return frame.beam_center
        if frame.geometry is not None:
            return frame.geometry.beam_center_px(tuple(frame.data.shape))
        warnings.warn(f"{frame.label}: no beam centre in the frame or its geometry; cropping "
                      "around the image centre instead", stacklevel=3)
        return (w / 2.0, h / 2.0)

    def apply(self, frame, *, rng=None, augment: bool = False) -> np.ndarray:
        """Turn a :class:`~xtalscreen.io.frame.Frame` into a ``(C, H, W)`` float32 tensor.

        Parameters
        ----------
        frame : Frame
            Any detector shape: 2-D, or multi-panel with geometry (assembled first).
        rng : int, numpy.random.Generator or None, keyword-only
            Randomness of the augmentation (ignored unless ``augment``).
        augment : bool, keyword-only
            Draw a random crop shift, flips, quarter turns and intensity scale.

        Returns
        -------
        ndarray of float32, shape :attr:`output_shape`
        """
        image, mask = frame.assembled()
        center = self._frame_center(frame, image.shape)
        return self.apply_array(image, mask=mask, center=center, rng=rng, augment=augment)

    def apply_batch(self, frames, *, rng=None, augment: bool = False,
                    workers: int = 1) -> np.ndarray:
        """Preprocess several frames into one ``(N, C, H, W)`` float32 array.

        Each frame gets its own child generator of ``rng`` (``Generator.spawn``), so the result
        is the same for any ``workers``. ``workers > 1`` runs frames in threads (binning and
        LCN release the GIL). Errors are raised as they are (the caller decides whether a bad
        frame is skipped).

        Parameters
        ----------
        frames : sequence of Frame
        rng : int, numpy.random.Generator or None, keyword-only
        augment : bool, keyword-only
        workers : int, keyword-only
            Threads to use (>= 1).
        """
        frames = list(frames)
        workers = _pos_int("workers", workers)
        if not frames:
            return np.empty((0,) + self.output_shape, dtype=np.float32)
        rngs = np.random.default_rng(rng).spawn(len(frames)) if augment else [None] * len(frames)

        def one(i: int) -> np.ndarray:
            return self.apply(frames[i], rng=rngs[i], augment=augment)

        if workers == 1 or len(frames) == 1:
            xs = [one(i) for i in range(len(frames))]
        else:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=min(workers, len(frames))) as pool:
                xs = list(pool.map(one, range(len(frames))))
        shapes = sorted({x.shape for x in xs})
        if len(shapes) > 1:
            raise ParameterError(f"these frames give inputs of different sizes {shapes} "
                                 f"(unbinned_up_to={self.unbinned_up_to} keeps small detectors at "
                                 "full resolution); preprocess each detector's frames separately")
        return np.stack(xs)

    def apply_array(self, image, *, mask=None, center: tuple[float, float] | None = None,
                    rng=None, augment: bool = False) -> np.ndarray:
        """Same as :meth:`apply` for a bare 2-D image; ``center`` = (fs, ss) in unbinned pixels
        (default: the image centre)."""
        img = np.asarray(image)
        if img.ndim != 2:
            raise ParameterError(f"image must be 2-D (H, W), got shape {img.shape}; assemble "
                                 "multi-panel data first (Frame.assembled())")
        if center is None:
            center = (img.shape[1] / 2.0, img.shape[0] / 2.0)
        b, size = self.plan(img.shape)
        if self.prefilter_sigma > 0:
            img = gaussian_prefilter(img, self.prefilter_sigma, mask=mask)
        binned, bmask = bin_image(img, b, mask=mask, reduce=self.bin_reduce)
        c = (float(center[0]) / b, float(center[1]) / b)
        aug = IDENTITY
        if augment:
            aug = sample_augmentation(rng, max_shift=self.max_shift, flips=self.flips,
                                      rot90=self.rot90, scale_range=self.scale_range,
                                      square=size[0] == size[1])
        crop, cmask = center_crop(binned, size, center=c, mask=bmask, shift=aug.shift)
        if aug.scale != 1.0:
            crop = scale_intensity(crop, aug.scale)
        out = apply_contrast(crop, self.contrast, mask=cmask, window=self.lcn_window,
                             eps=self.lcn_eps, white_percentile=self.linear_percentile)
        out = flip_rotate(out, aug)
        if self.channels == 1:
            return out[None].astype(np.float32, copy=False)
        return np.repeat(out[None], self.channels, axis=0).astype(np.float32, copy=False)


# ====================================================================================== images
#: ``mode`` entry of an :class:`ImagePreprocessConfig` dict (absent for :class:`PreprocessConfig`).
IMAGE_MODE = "image"


def image_to_tensor(img, *, size: tuple[int, int], channels: int, mean: float = 0.5,
                    std: float = 0.25, flip_ud: bool = False, flip_lr: bool = False,
                    rot90: int = 0, brightness: float = 1.0) -> np.ndarray:
    """A decoded photograph (drop image) as a ``(channels, H, W)`` float32 network input.

    The one implementation of drop-image preprocessing: ``xtalscreen train`` (through
    :class:`ImagePreprocessConfig`) and the drop pipeline
    (:class:`xtalscreen.drops.classifier.Preprocess`) both call it, so a model sees at
    inference exactly what it saw in training.

    Steps: to uint8 (clipped); RGB -> grey (``channels=1``) or grey -> 3 identical channels
    (``channels=3``); resize the whole image to ``size`` (area interpolation, aspect ratio not
    kept); scale to [0, 1]; (augmentation) multiply by ``brightness`` and clip to [0, 1], flip,
    turn; standardise ``(x - mean) / std``.

    Parameters
    ----------
    img : array_like, shape (H, W) or (H, W, 3|4)
        Pixel values 0-255 (RGB order for colour).
    size : (int, int), keyword-only
        Output (height, width) in pixels.
    channels : {1, 3}, keyword-only
    mean, std : float, keyword-only
        Standardisation of the [0, 1] values (the drop pipeline's 0.5 and 0.25 by default).
    flip_ud, flip_lr, rot90, brightness : keyword-only
        Augmentation (identity by default): flips, counter-clockwise quarter turns,
        brightness multiplier.

    Returns
    -------
    ndarray of float32, shape (channels, H, W)
    """
    import cv2

    a = np.asarray(img)
    if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ParameterError(f"image must be (H, W) or (H, W, 3) pixels, got shape {a.shape}")
    if channels not in (1, 3):
        raise ParameterError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if channels == 1 and a.ndim == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)
    elif channels == 3 and a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.ndim == 3:
        a = a[..., :3]
    h, w = int(size[0]), int(size[1])
    if a.shape[:2] != (h, w):
        a = cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=cv2.INTER_AREA)
    x = a.astype(np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if brightness != 1.0:
        x = np.clip(x * np.float32(brightness), 0.0, 1.0)
    if flip_ud:
        x = x[:, ::-1, :]
    if flip_lr:
        x = x[:, :, ::-1]
    if rot90 % 4:
        x = np.rot90(x, int(rot90) % 4, axes=(1, 2))
    x = (x - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass(frozen=True)
class ImagePreprocessConfig:
    """How a drop photograph (JPEG/PNG, grey or RGB) becomes a network input.

    The sibling of :class:`PreprocessConfig` for crystallisation-drop images: the whole image
    is resized to the model input (no binning, no beam-centred crop, no LCN), see
    :func:`image_to_tensor`. It round-trips through a checkpoint dict (``to_dict`` adds
    ``"mode": "image"``; :meth:`PreprocessConfig.from_dict` hands such a dict to
    :meth:`from_dict`), so ``xtalscreen train`` checkpoints carry it to the drop pipeline.

    Parameters
    ----------
    size : (int, int)
        Network input (height, width) in pixels (MARCO's Inception-v3: 299; C4's CNN: 128).
    channels : {1, 3}
        1 = grey, 3 = RGB.
    mean, std : float
        Standardisation of the [0, 1] pixel values.
    flips, rot90 : bool
        Augmentation: random flips / quarter turns (non-square sizes: half turns only).
    brightness_range : (float, float)
        Augmentation: brightness multiplier range (uniform), applied in [0, 1] units.

    Examples
    --------
    >>> import numpy as np
    >>> cfg = ImagePreprocessConfig(size=(64, 64), channels=3)
    >>> cfg.apply_image(np.zeros((120, 100, 3), np.uint8)).shape
    (3, 64, 64)
    >>> PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    size: tuple[int, int] = (128, 128)
    channels: int = 3
    mean: float = 0.5
    std: float = 0.25
    flips: bool = True
    rot90: bool = True
    brightness_range: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        size = self.size
        if np.isscalar(size):
            size = (size, size)
        if len(size) != 2:
            raise ParameterError(f"size must be (height, width) in pixels, got {self.size!r}")
        object.__setattr__(self, "size", (_pos_int("size height", size[0], 8),
                                          _pos_int("size width", size[1], 8)))
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ParameterError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", check_positive("std", self.std))
        object.__setattr__(self, "brightness_range",
                           _ratio_range("brightness_range", self.brightness_range))
        object.__setattr__(self, "flips", bool(self.flips))
        object.__setattr__(self, "rot90", bool(self.rot90))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every tensor :meth:`apply_image` returns."""
        return (self.channels, self.size[0], self.size[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with ``mode: "image"`` and a ``schema`` version."""
        d: dict[str, Any] = {"schema": SCHEMA_VERSION, "mode": IMAGE_MODE}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImagePreprocessConfig":
        """Inverse of :meth:`to_dict`; also takes the drop pipeline's ``Preprocess`` dict
        (``in_chans``, ``size``, ``mean``, ``std``). Unknown keys raise ParameterError."""
        if not isinstance(d, dict):
            raise ParameterError(f"preprocessing settings must be a dict, got {type(d).__name__}")
        d = dict(d)
        schema = d.pop("schema", SCHEMA_VERSION)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise ParameterError(
                f"preprocessing settings have schema {schema!r}, this xtalscreen reads up to "
                f"{SCHEMA_VERSION}; upgrade xtalscreen to use this model")
        mode = d.pop("mode", IMAGE_MODE)
        if mode != IMAGE_MODE:
            raise ParameterError(f"preprocessing mode {mode!r} is not {IMAGE_MODE!r}")
        if "in_chans" in d:
            d["channels"] = d.pop("in_chans")
        return _from_fields(cls, d, "image preprocessing", ("size", "brightness_range"))

    def replace(self, **changes: Any) -> "ImagePreprocessConfig":
        return dataclasses.replace(self, **changes)

    def apply_image(self, image, *, rng=None, augment: bool = False) -> np.ndarray:
        """A decoded image (uint8 (H, W) or (H, W, 3) RGB, any size) -> ``(C, H, W)`` float32.

        With ``augment``, draws from ``rng`` (``np.random.default_rng(rng)``) a brightness
        multiplier, flips and quarter turns.
        """
        kw: dict[str, Any] = {}
        if augment:
            g = np.random.default_rng(rng)
            lo, hi = self.brightness_range
            kw["brightness"] = float(g.uniform(lo, hi)) if hi > lo else lo
            if self.flips:
                kw["flip_ud"], kw["flip_lr"] = bool(g.integers(2)), bool(g.integers(2))
            if self.rot90:
                k = int(g.integers(4))
                kw["rot90"] = k if self.size[0] == self.size[1] else 2 * (k % 2)
        return image_to_tensor(image, size=self.size, channels=self.channels, mean=self.mean,
                               std=self.std, **kw)

    def apply(self, frame, *, rng=None, augment: bool = False) -> np.ndarray:
        """A :class:`~xtalscreen.io.frame.Frame` read from an image file (its data 0-255) ->
        ``(C, H, W)``; multi-panel frames are assembled first."""
        image, _ = frame.assembled()
        return self.apply_image(image, rng=rng, augment=augment)
