"""Reading detector images: :class:`Frame` records, readers, geometry, masks and corrections."""

from xtalscreen.io.frame import Frame
from xtalscreen.io.geometry import DetectorGeometry, Panel

__all__ = ["Frame", "DetectorGeometry", "Panel"]
