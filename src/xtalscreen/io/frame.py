"""The one record for a detector image: :class:`Frame`.

Units used throughout xtalscreen:

- lengths (pixel size, distance, pixel positions) in **metres**;
- wavelength in **ångström**;
- beam centre in **pixels** ``(fs, ss)`` = (column, row) of the 2-D image (for multi-panel
  detectors: of the image assembled through :attr:`Frame.geometry`), as a continuous
  coordinate in which pixel ``i`` spans ``[i, i + 1)`` (its centre is at ``i + 0.5``), the
  convention of DIALS and of the Pilatus ``Beam_xy`` header;
- exposure in **seconds**;
- pixel values in the detector's own units (photons, counts or ADU), never rescaled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from xtalscreen.io.geometry import DetectorGeometry


@dataclass
class Frame:
    """One detector image with its mask and metadata.

    Attributes
    ----------
    data : ndarray of float32, shape (H, W) or (panels, H, W)
        Pixel values in the detector's own units. Multi-panel detectors keep one slab per panel
        (or the slab layout of the file, see ``geometry``).
    mask : ndarray of bool, same shape as ``data``
        True where a pixel is bad, absent (tile gap) or excluded by the user.
    source : str
        Path of the file the frame came from ("" for frames made in memory).
    index : int
        Frame index inside ``source`` (0 for single-image files).
    format : str
        Reader that produced the frame ("hdf5", "cbf", "cbf-multi", "tiff", "png", "npy", ...).
    detector : str
        Detector name when known ("PILATUS 2M", "CSPAD", "diffranet", ...).
    pixel_size : float or None
        Pixel size in metres (square pixels; the fast-scan size for non-square ones).
    distance : float or None
        Sample-to-detector distance in metres.
    wavelength : float or None
        X-ray wavelength in ångström.
    beam_center : (float, float) or None
        Direct-beam position (fs, ss) in pixels on the 2-D (assembled) image.
    exposure : float or None
        Exposure time in seconds.
    dtype : str
        The dtype the values had in the file ("int32", "uint16", ...).
    geometry : DetectorGeometry or None
        Where every pixel is in space; None for monolithic detectors described by
        ``pixel_size``/``distance``/``beam_center`` alone.
    meta : dict
        Anything else the reader found (header fields, event ids, photon energy ...).
    """

    data: np.ndarray
    mask: np.ndarray | None = None
    source: str = ""
    index: int = 0
    format: str = ""
    detector: str = ""
    pixel_size: float | None = None
    distance: float | None = None
    wavelength: float | None = None
    beam_center: tuple[float, float] | None = None
    exposure: float | None = None
    dtype: str = ""
    geometry: "DetectorGeometry | None" = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim not in (2, 3):
            raise ValueError(
                f"Frame data must be 2-D (H, W) or 3-D (panels, H, W), got shape {data.shape}"
                + (f" from {self.source}" if self.source else "")
            )
        if not self.dtype:
            self.dtype = str(data.dtype)
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        self.data = data
        if self.mask is None:
            self.mask = np.zeros(data.shape, dtype=bool)
        else:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != data.shape:
                raise ValueError(
                    f"mask shape {mask.shape} does not match data shape {data.shape}"
                    + (f" in {self.source}" if self.source else "")
                )
            self.mask = mask
        if self.beam_center is not None:
            self.beam_center = (float(self.beam_center[0]), float(self.beam_center[1]))

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def is_multipanel(self) -> bool:
        return self.data.ndim == 3

    @property
    def masked_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def saturation_level(self) -> float | None:
        """The value at and above which a pixel is saturated: the file's own (NeXus
        ``saturation_value``, Eiger's count cut-off, CBF ``Count_cutoff``), else the largest
        value of an 8- or 16-bit unsigned type; None when unknown."""
        for key in ("saturation_value", "saturation"):
            v = self.meta.get(key)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    continue
                if np.isfinite(v) and v > 0:
                    return v
        return {"uint8": 255.0, "uint16": 65535.0}.get(self.dtype)

    def saturated_fraction(self, *, stride: int = 8) -> float:
        """Share of the pixels at or above :attr:`saturation_level` (0 when it is unknown),
        from every ``stride``-th row (whole rows: reads 1/stride of the memory, ~0.2 ms on a
        2.3 Mpx frame): a frame flooded by the beam or a bright background reads mostly
        saturated, and no spot can be seen there."""
        level = self.saturation_level
        if level is None:
            return 0.0
        sample = self.data.reshape(-1, self.data.shape[-1])[::max(int(stride), 1)]
        return float(np.count_nonzero(sample >= level)) / max(sample.size, 1)

    @property
    def label(self) -> str:
        """``path`` or ``path (frame N)``: how messages refer to this frame."""
        return f"{self.source} (frame {self.index})" if self.source else f"frame {self.index}"

    def replace(self, **changes: Any) -> "Frame":
        """A copy with some fields changed (arrays are shared unless replaced)."""
        return dataclasses.replace(self, **changes)

    def beam_center_or_default(self) -> tuple[float, float]:
        """The beam centre, else the geometry's, else the image centre (with no warning here)."""
        if self.beam_center is not None:
            return self.beam_center
        if self.geometry is not None:
            bc = self.geometry.beam_center_px()
            if bc is not None:
                return bc
        h, w = self.data.shape[-2:]
        return (w / 2.0, h / 2.0)

    def assembled(self, fill: float = np.nan) -> tuple[np.ndarray, np.ndarray]:
        """The 2-D image and its mask: through ``geometry`` when present, else the data itself.

        Multi-panel data without geometry are tiled side by side (panels stacked vertically).
        """
        if self.geometry is not None:
            img, msk = self.geometry.assemble(self.data, self.mask, fill=fill)
            return img, msk
        if self.data.ndim == 2:
            return self.data, self.mask
        p, h, w = self.data.shape
        return self.data.reshape(p * h, w), self.mask.reshape(p * h, w)

    def metadata(self) -> dict[str, Any]:
        """Plain-type summary used by ``xtalscreen info --json``."""
        return {
            "source": self.source,
            "index": self.index,
            "format": self.format,
            "detector": self.detector,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "masked_fraction": round(self.masked_fraction, 6),
            "beam_center": None if self.beam_center is None else list(self.beam_center),
            "pixel_size": self.pixel_size,
            "distance": self.distance,
            "wavelength": self.wavelength,
            "exposure": self.exposure,
            "panels": (len(self.geometry.panels) if self.geometry is not None else
                       (self.data.shape[0] if self.data.ndim == 3 else 1)),
        }
