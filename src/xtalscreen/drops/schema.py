"""The drop-scoring data model (SQLAlchemy 2 ORM), the same on SQLite and PostgreSQL.

::

    Plate 1-n Well 1-n Drop 1-n Image n-1 Inspection n-1 Plate
                                 Image 1-n Score n-1 SchemeClass n-1 ClassScheme

- A *plate* (unique barcode) has wells ("F1": row F, column 1) holding drops ("F1.2": drop 2 of
  well F1); see :class:`DropPosition`.
- An *inspection* is one imaging pass over a plate at one time by one imager; ``complete`` says
  whether the imager has finished writing its images.
- An *image* shows one drop in one inspection (``kind``: visible / uv / shg), stored at ``uri``
  (a local path or a URL) with ``um_per_pixel`` µm per pixel.
- A *score* puts an image into a class of a scheme, by a human (``scorer`` = name) or a machine
  (``scorer`` = model name, ``model_version``), with the full probability vector (JSON, class ->
  probability) for machine scores. A machine model version scores an image at most once; a human
  scores an image at most once per time stamp.

Times are stored as naive UTC ``datetime`` (both back-ends compare them the same way); use
:func:`utc` to convert. The indexes serve the pipeline's "complete inspections without a machine
score of model M version V" query (:func:`xtalscreen.drops.db.pending_inspections`), drops by
plate, images by inspection and scores by image.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import string
from dataclasses import dataclass

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Enum, Float, ForeignKey, Index,
                        Integer, MetaData, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from xtalscreen.errors import ParameterError

#: Constraint names are fixed so that Alembic migrations name them the same on every back-end.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Schema revision this code expects (the Alembic head).
SCHEMA_REVISION = "0003_web"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utc(t: _dt.datetime) -> _dt.datetime:
    """``t`` as naive UTC: aware times are converted, naive ones are taken to be UTC already."""
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return t


def now_utc() -> _dt.datetime:
    """The current time as naive UTC, the form times are stored in."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class ImageKind(str, enum.Enum):
    """What light the image was taken with."""

    visible = "visible"
    uv = "uv"
    shg = "shg"


class ScorerKind(str, enum.Enum):
    human = "human"
    machine = "machine"


# ----------------------------------------------------------------------------- positions
_POS = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,3})(?:\s*[._\-]\s*0*(\d{1,2}))?\s*$")


def _row_index(row: str) -> int:
    """1-based index of a row label: A=1 ... Z=26, AA=27 ... (spreadsheet style)."""
    n = 0
    for ch in row:
        n = n * 26 + (ord(ch) - 64)
    return n


def _row_label(index: int) -> str:
    s = ""
    while index > 0:
        index, r = divmod(index - 1, 26)
        s = string.ascii_uppercase[r] + s
    return s


@dataclass(frozen=True, order=True)
class DropPosition:
    """Where a drop sits on a plate: row letter(s), column (1-based) and drop number (1-based).

    ``str(pos)`` gives the canonical text ``"F1.2"``; :attr:`stem` gives the file-name form
    ``"F01_2"`` used by :func:`xtalscreen.drops.render.render_plates`.

    Examples
    --------
    >>> DropPosition.parse("F1.2")
    DropPosition(row='F', column=1, drop=2)
    >>> DropPosition.parse("f01_2").stem
    'F01_2'
    >>> str(DropPosition.parse("H12"))   # a well alone is drop 1
    'H12.1'
    """

    row: str
    column: int
    drop: int = 1

    #: Limits: rows A-AF (32, a 1536-well plate), columns 1-48, drops 1-16 per well.
    MAX_ROWS = 32
    MAX_COLUMNS = 48
    MAX_DROPS = 16

    def __post_init__(self):
        if not (isinstance(self.row, str) and self.row.isalpha() and self.row.isupper()
                and 1 <= _row_index(self.row) <= self.MAX_ROWS):
            raise ParameterError(f"drop row must be A..{_row_label(self.MAX_ROWS)}, got {self.row!r}")
        if not 1 <= int(self.column) <= self.MAX_COLUMNS:
            raise ParameterError(f"drop column must be 1..{self.MAX_COLUMNS}, got {self.column!r}")
        if not 1 <= int(self.drop) <= self.MAX_DROPS:
            raise ParameterError(f"drop number must be 1..{self.MAX_DROPS}, got {self.drop!r}")

    @classmethod
    def parse(cls, text: str, drop: int | str | None = None) -> DropPosition:
        """Parse ``"F1.2"``, ``"F01_2"``, ``"f1-2"`` or a well ``"F1"`` (+ ``drop``, default 1).

        Raises :class:`ParameterError` naming the text when it is not a position.
        """
        m = _POS.match(str(text))
        if m is None:
            raise ParameterError(f"drop position must look like 'F1.2' (row letter, column, "
                                 f"drop number), got {text!r}")
        row, col, d = m.group(1).upper(), int(m.group(2)), m.group(3)
        if d is not None and drop not in (None, "") and int(d) != int(drop):
            raise ParameterError(f"drop position {text!r} disagrees with drop number {drop!r}")
        if d is None:
            try:
                d = 1 if drop in (None, "") else int(drop)
            except (TypeError, ValueError):
                raise ParameterError(f"drop number must be an integer, got {drop!r}") from None
        return cls(row, col, int(d))

    @property
    def well(self) -> str:
        return f"{self.row}{self.column}"

    @property
    def stem(self) -> str:
        return f"{self.row}{self.column:02d}_{self.drop}"

    def __str__(self) -> str:
        return f"{self.row}{self.column}.{self.drop}"


# ----------------------------------------------------------------------------- schemes
class ClassScheme(Base):
    """A set of class labels (MARCO's 4, or a facility's own) with display colours."""

    __tablename__ = "class_scheme"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    classes: Mapped[list[SchemeClass]] = relationship(
        back_populates="scheme", order_by="SchemeClass.order", cascade="all, delete-orphan",
        foreign_keys="SchemeClass.scheme_id")

    def __repr__(self) -> str:
        return f"ClassScheme({self.name!r})"


class SchemeClass(Base):
    """One class of a scheme; ``maps_to`` is the MARCO class it counts as (None in MARCO)."""

    __tablename__ = "scheme_class"
    __table_args__ = (
        UniqueConstraint("scheme_id", "name", name="uq_scheme_class_scheme_id_name"),
        CheckConstraint("colour LIKE '#______'", name="colour_hex"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("class_scheme.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    colour: Mapped[str] = mapped_column(String(7))
    order: Mapped[int] = mapped_column("position", Integer)
    maps_to_id: Mapped[int | None] = mapped_column(ForeignKey("scheme_class.id"), nullable=True)

    scheme: Mapped[ClassScheme] = relationship(back_populates="classes", foreign_keys=[scheme_id])
    maps_to: Mapped[SchemeClass | None] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return f"SchemeClass({self.name!r}, {self.colour})"


# ----------------------------------------------------------------------------- plates
class Plate(Base):
    __tablename__ = "plate"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    barcode: Mapped[str] = mapped_column(String(64), unique=True)
    plate_type: Mapped[str | None] = mapped_column(String(64))
    screen: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)

    wells: Mapped[list[Well]] = relationship(back_populates="plate", cascade="all, delete-orphan")
    inspections: Mapped[list[Inspection]] = relationship(
        back_populates="plate", cascade="all, delete-orphan", order_by="Inspection.imaged_at")

    def __repr__(self) -> str:
        return f"Plate({self.barcode!r})"


class Well(Base):
    __tablename__ = "well"
    __table_args__ = (
        UniqueConstraint("plate_id", "row_label", "col", name="uq_well_plate_id_row_col"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate_id: Mapped[int] = mapped_column(ForeignKey("plate.id", ondelete="CASCADE"))
    row: Mapped[str] = mapped_column("row_label", String(2))
    column: Mapped[int] = mapped_column("col", Integer)

    plate: Mapped[Plate] = relationship(back_populates="wells")
    drops: Mapped[list[Drop]] = relationship(back_populates="well", cascade="all, delete-orphan")

    @property
    def name(self) -> str:
        return f"{self.row}{self.column}"


class Drop(Base):
    """A drop in a well; ``plate_id`` is repeated from the well so "drops of a plate" is one index."""

    __tablename__ = "well_drop"
    __table_args__ = (
        UniqueConstraint("well_id", "number", name="uq_well_drop_well_id_number"),
        Index("ix_well_drop_plate_id", "plate_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    well_id: Mapped[int] = mapped_column(ForeignKey("well.id", ondelete="CASCADE"))
    plate_id: Mapped[int] = mapped_column(ForeignKey("plate.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)

    well: Mapped[Well] = relationship(back_populates="drops")
    plate: Mapped[Plate] = relationship(foreign_keys=[plate_id])
    images: Mapped[list[Image]] = relationship(back_populates="drop", cascade="all, delete-orphan")

    @property
    def position(self) -> DropPosition:
        return DropPosition(self.well.row, self.well.column, self.number)


class Inspection(Base):
    __tablename__ = "inspection"
    __table_args__ = (
        UniqueConstraint("plate_id", "imaged_at", name="uq_inspection_plate_id_imaged_at"),
        Index("ix_inspection_complete_imaged_at", "complete", "imaged_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate_id: Mapped[int] = mapped_column(ForeignKey("plate.id", ondelete="CASCADE"))
    imaged_at: Mapped[_dt.datetime] = mapped_column(DateTime)
    imager: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)

    plate: Mapped[Plate] = relationship(back_populates="inspections")
    images: Mapped[list[Image]] = relationship(back_populates="inspection",
                                               cascade="all, delete-orphan")


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (
        UniqueConstraint("uri", name="uq_image_uri"),
        UniqueConstraint("inspection_id", "drop_id", "kind", name="uq_image_inspection_id_drop_id_kind"),
        Index("ix_image_drop_id", "drop_id"),
        CheckConstraint("um_per_pixel IS NULL OR um_per_pixel > 0", name="um_per_pixel_positive"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    drop_id: Mapped[int] = mapped_column(ForeignKey("well_drop.id", ondelete="CASCADE"))
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspection.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(1024))
    um_per_pixel: Mapped[float | None] = mapped_column(Float)
    kind: Mapped[ImageKind] = mapped_column(
        Enum(ImageKind, name="image_kind", native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]),
        default=ImageKind.visible)

    drop: Mapped[Drop] = relationship(back_populates="images")
    inspection: Mapped[Inspection] = relationship(back_populates="images")
    scores: Mapped[list[Score]] = relationship(back_populates="image", cascade="all, delete-orphan")


class Score(Base):
    """A class given to an image by a human or a machine (model name + version).

    ``probabilities`` (machine scores) maps each class label of the scheme to its probability.
    """

    __tablename__ = "score"
    __table_args__ = (
        CheckConstraint("scorer_kind = 'human' OR model_version IS NOT NULL",
                        name="machine_has_version"),
        Index("ix_score_image_id", "image_id"),
        Index("ix_score_scorer_model_version", "scorer", "model_version"),
        # A machine model version scores an image once; a human once per time stamp.
        Index("uq_score_machine", "image_id", "scorer", "model_version", unique=True,
              sqlite_where=text("scorer_kind = 'machine'"),
              postgresql_where=text("scorer_kind = 'machine'")),
        Index("uq_score_human", "image_id", "scorer", "scored_at", unique=True,
              sqlite_where=text("scorer_kind = 'human'"),
              postgresql_where=text("scorer_kind = 'human'")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    scorer_kind: Mapped[ScorerKind] = mapped_column(
        Enum(ScorerKind, name="scorer_kind", native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]))
    scorer: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64))
    class_id: Mapped[int] = mapped_column(ForeignKey("scheme_class.id"))
    probabilities: Mapped[dict | None] = mapped_column(JSON)
    scored_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)

    image: Mapped[Image] = relationship(back_populates="scores")
    scheme_class: Mapped[SchemeClass] = relationship()


__all__ = ["Base", "ClassScheme", "SchemeClass", "Plate", "Well", "Drop", "Inspection", "Image",
           "Score", "ImageKind", "ScorerKind", "DropPosition", "utc", "now_utc", "SCHEMA_REVISION"]


# ----------------------------------------------------------------------------- pipeline (0002)
class PipelineRun(Base):
    """One run of the scoring pipeline (:mod:`xtalscreen.drops.pipeline`) and its outcome.

    ``status``: ``running`` (or killed while running), ``done``, ``failed``.
    """

    __tablename__ = "pipeline_run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    inspections: Mapped[int] = mapped_column(Integer, default=0)
    images_scored: Mapped[int] = mapped_column(Integer, default=0)
    images_failed: Mapped[int] = mapped_column(Integer, default=0)
    #: Crystal-probability threshold of "interesting drops" used by the run (model's ROC choice).
    threshold: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)


class ImageFailure(Base):
    """An image a model version could not score (unreadable, missing, ...), with the reason.

    The pipeline does not retry a failed image for the same model version (delete the row to retry).
    """

    __tablename__ = "image_failure"
    __table_args__ = (
        UniqueConstraint("image_id", "scorer", "model_version",
                         name="uq_image_failure_image_model_version"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    scorer: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_run.id", ondelete="SET NULL"))


class PipelineLock(Base):
    """A named run lock with its holder and a heartbeat (see :mod:`xtalscreen.drops.lock`)."""

    __tablename__ = "pipeline_lock"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)
    heartbeat_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)


__all__ += ["PipelineRun", "ImageFailure", "PipelineLock"]


# ----------------------------------------------------------------------------- web app (0003)
class Role(str, enum.Enum):
    """What a web user may do: ``admin`` everything; ``scorer`` view own/shared plates and score
    in Cinder; ``owner`` view own/shared plates only."""

    admin = "admin"
    scorer = "scorer"
    owner = "owner"


class User(Base):
    """A web-app user; ``name`` is what ``Plate.owner`` and human ``Score.scorer`` hold."""

    __tablename__ = "web_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="web_role", native_enum=False, length=16,
             values_callable=lambda e: [m.value for m in e]))
    #: ``scrypt$N$r$p$salt_hex$hash_hex`` (see :mod:`xtalscreen.web.auth`); never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)


class PlateShare(Base):
    """Plate ``plate_id`` is visible to user ``user_id`` as well as to its owner."""

    __tablename__ = "plate_share"
    __table_args__ = (UniqueConstraint("user_id", "plate_id", name="uq_plate_share_user_id_plate_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate_id: Mapped[int] = mapped_column(ForeignKey("plate.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("web_user.id", ondelete="CASCADE"))


class CinderItem(Base):
    """An image queued for consensus scoring (Ashes puts it there; Cinder serves it).

    ``reason``: ``disagree`` (latest human score != machine score), ``uncertain`` (the model
    was least sure) or ``manual``. ``done_at`` is set when the image reaches consensus.
    """

    __tablename__ = "cinder_item"
    __table_args__ = (UniqueConstraint("image_id", name="uq_cinder_item_image_id"),
                      Index("ix_cinder_item_done_at", "done_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(16))
    queued_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)
    done_at: Mapped[_dt.datetime | None] = mapped_column(DateTime)

    image: Mapped[Image] = relationship()


class ConsensusRule(Base):
    """At least ``min_scorers`` human scorers and at least ``min_agreement`` (fraction, 0-1) of
    them on one MARCO class give a consensus label. The newest row is the rule in force."""

    __tablename__ = "consensus_rule"
    __table_args__ = (
        CheckConstraint("min_scorers >= 1", name="min_scorers_positive"),
        CheckConstraint("min_agreement > 0 AND min_agreement <= 1", name="min_agreement_fraction"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    min_scorers: Mapped[int] = mapped_column(Integer)
    min_agreement: Mapped[float] = mapped_column(Float)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)
    created_by: Mapped[str | None] = mapped_column(String(128))


class ConsensusLabel(Base):
    """The agreed MARCO class of an image (what ``drops export-training`` writes)."""

    __tablename__ = "consensus_label"
    __table_args__ = (UniqueConstraint("image_id", name="uq_consensus_label_image_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(ForeignKey("scheme_class.id"))
    n_scorers: Mapped[int] = mapped_column(Integer)
    agreement: Mapped[float] = mapped_column(Float)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("consensus_rule.id", ondelete="SET NULL"))
    labelled_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)

    image: Mapped[Image] = relationship()
    scheme_class: Mapped[SchemeClass] = relationship()


class ScoreSubmission(Base):
    """Idempotency key of a web score submission: the same form posted twice scores once."""

    __tablename__ = "score_submission"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_user.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    score_id: Mapped[int | None] = mapped_column(ForeignKey("score.id", ondelete="CASCADE"))
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=now_utc)


__all__ += ["Role", "User", "PlateShare", "CinderItem", "ConsensusRule", "ConsensusLabel",
            "ScoreSubmission"]
