"""Crystallisation-drop scoring: data model, class schemes, import and a procedural drop renderer.

- :mod:`xtalscreen.drops.schema`: SQLAlchemy 2 models (Plate, Well, Drop, Inspection, Image,
  Score, ClassScheme, SchemeClass) and :class:`~xtalscreen.drops.schema.DropPosition`.
- :mod:`xtalscreen.drops.db`: engines (SQLite file by default, PostgreSQL by URL), ``init_db``
  (Alembic ``upgrade head`` + class schemes), sessions, shared queries.
- :mod:`xtalscreen.drops.schemes`: MARCO's 4 classes and the paper-000 Table 1 mappings, as data.
- :mod:`xtalscreen.drops.importer`: folder-tree / CSV import of plates, inspections and images,
  and of human scores.
- :mod:`xtalscreen.drops.render`: procedural drop images and imager-style plate folders.
- :mod:`xtalscreen.drops.pipeline`: the scoring pipeline (find, fetch, classify, checkpoint,
  post-process, upload in one transaction, archive); ``xtalscreen drops run | score``.
- :mod:`xtalscreen.drops.classifier`: the 4-class drop-model interface (built-in torch models,
  ONNX, class mappings, single-class thresholds); :mod:`xtalscreen.drops.demo_model`: the shipped
  demonstration model (rendered drops only).
- :mod:`xtalscreen.drops.fetch`, :mod:`xtalscreen.drops.lock`, :mod:`xtalscreen.drops.notify`:
  bounded image fetching, the run lock, webhook/e-mail notifications.

Submodules are imported on use, so ``import xtalscreen.drops`` stays light.
"""

from xtalscreen.drops.schemes import MARCO_CLASSES, map_class

__all__ = ["MARCO_CLASSES", "map_class"]
