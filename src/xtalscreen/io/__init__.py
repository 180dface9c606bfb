"""Reading detector images: :class:`Frame` records, readers, geometry, masks and corrections."""

from xtalscreen.io.frame import Frame
from xtalscreen.io.geometry import DetectorGeometry, Panel

from xtalscreen.io.readers import ReadError, count_frames, open_file, open_frames, read_frame
from xtalscreen.io.masks import combine_masks, data_mask, load_mask
from xtalscreen.io.corrections import apply_corrections, average_dark
from xtalscreen.io.writers import write_hdf5_run, write_image

__all__ = ["Frame", "DetectorGeometry", "Panel",
           "open_frames", "open_file", "read_frame", "count_frames", "ReadError",
           "data_mask", "load_mask", "combine_masks", "apply_corrections", "average_dark",
           "write_hdf5_run", "write_image"]
