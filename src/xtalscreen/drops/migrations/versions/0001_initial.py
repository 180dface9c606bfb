"""initial schema: plates, wells, drops, inspections, images, scores, class schemes

Revision ID: 0001
Revises:
Create Date: 2026-11-21 10:27:59.821453
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('class_scheme',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_class_scheme')),
    sa.UniqueConstraint('name', name=op.f('uq_class_scheme_name'))
    )
    op.create_table('plate',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('barcode', sa.String(length=64), nullable=False),
    sa.Column('plate_type', sa.String(length=64), nullable=True),
    sa.Column('screen', sa.String(length=128), nullable=True),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plate')),
    sa.UniqueConstraint('barcode', name=op.f('uq_plate_barcode'))
    )
    op.create_table('inspection',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plate_id', sa.Integer(), nullable=False),
    sa.Column('imaged_at', sa.DateTime(), nullable=False),
    sa.Column('imager', sa.String(length=64), nullable=True),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['plate_id'], ['plate.id'], name=op.f('fk_inspection_plate_id_plate'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inspection')),
    sa.UniqueConstraint('plate_id', 'imaged_at', name='uq_inspection_plate_id_imaged_at')
    )
    op.create_index('ix_inspection_complete_imaged_at', 'inspection', ['complete', 'imaged_at'], unique=False)

    op.create_table('scheme_class',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scheme_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('colour', sa.String(length=7), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('maps_to_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("colour LIKE '#______'", name=op.f('ck_scheme_class_colour_hex')),
    sa.ForeignKeyConstraint(['maps_to_id'], ['scheme_class.id'], name=op.f('fk_scheme_class_maps_to_id_scheme_class')),
    sa.ForeignKeyConstraint(['scheme_id'], ['class_scheme.id'], name=op.f('fk_scheme_class_scheme_id_class_scheme'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheme_class')),
    sa.UniqueConstraint('scheme_id', 'name', name='uq_scheme_class_scheme_id_name')
    )
    op.create_table('well',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plate_id', sa.Integer(), nullable=False),
    sa.Column('row_label', sa.String(length=2), nullable=False),
    sa.Column('col', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plate_id'], ['plate.id'], name=op.f('fk_well_plate_id_plate'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_well')),
    sa.UniqueConstraint('plate_id', 'row_label', 'col', name='uq_well_plate_id_row_col')
    )
    op.create_table('well_drop',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('well_id', sa.Integer(), nullable=False),
    sa.Column('plate_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plate_id'], ['plate.id'], name=op.f('fk_well_drop_plate_id_plate'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['well_id'], ['well.id'], name=op.f('fk_well_drop_well_id_well'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_well_drop')),
    sa.UniqueConstraint('well_id', 'number', name='uq_well_drop_well_id_number')
    )
    op.create_index('ix_well_drop_plate_id', 'well_drop', ['plate_id'], unique=False)

    op.create_table('image',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('drop_id', sa.Integer(), nullable=False),
    sa.Column('inspection_id', sa.Integer(), nullable=False),
    sa.Column('uri', sa.String(length=1024), nullable=False),
    sa.Column('um_per_pixel', sa.Float(), nullable=True),
    sa.Column('kind', sa.Enum('visible', 'uv', 'shg', name='image_kind', native_enum=False, length=16), nullable=False),
    sa.CheckConstraint('um_per_pixel IS NULL OR um_per_pixel > 0', name=op.f('ck_image_um_per_pixel_positive')),
    sa.ForeignKeyConstraint(['drop_id'], ['well_drop.id'], name=op.f('fk_image_drop_id_well_drop'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inspection_id'], ['inspection.id'], name=op.f('fk_image_inspection_id_inspection'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image')),
    sa.UniqueConstraint('inspection_id', 'drop_id', 'kind', name='uq_image_inspection_id_drop_id_kind'),
    sa.UniqueConstraint('uri', name='uq_image_uri')
    )
    op.create_index('ix_image_drop_id', 'image', ['drop_id'], unique=False)

    op.create_table('score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('scorer_kind', sa.Enum('human', 'machine', name='scorer_kind', native_enum=False, length=16), nullable=False),
    sa.Column('scorer', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('probabilities', sa.JSON(), nullable=True),
    sa.Column('scored_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("scorer_kind = 'human' OR model_version IS NOT NULL", name=op.f('ck_score_machine_has_version')),
    sa.ForeignKeyConstraint(['class_id'], ['scheme_class.id'], name=op.f('fk_score_class_id_scheme_class')),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_score_image_id_image'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_score'))
    )
    op.create_index('ix_score_image_id', 'score', ['image_id'], unique=False)
    op.create_index('ix_score_scorer_model_version', 'score', ['scorer', 'model_version'], unique=False)
    op.create_index('uq_score_human', 'score', ['image_id', 'scorer', 'scored_at'], unique=True, sqlite_where=sa.text("scorer_kind = 'human'"), postgresql_where=sa.text("scorer_kind = 'human'"))
    op.create_index('uq_score_machine', 'score', ['image_id', 'scorer', 'model_version'], unique=True, sqlite_where=sa.text("scorer_kind = 'machine'"), postgresql_where=sa.text("scorer_kind = 'machine'"))



def downgrade() -> None:
    op.drop_index('uq_score_machine', table_name='score', sqlite_where=sa.text("scorer_kind = 'machine'"), postgresql_where=sa.text("scorer_kind = 'machine'"))
    op.drop_index('uq_score_human', table_name='score', sqlite_where=sa.text("scorer_kind = 'human'"), postgresql_where=sa.text("scorer_kind = 'human'"))
    op.drop_index('ix_score_scorer_model_version', table_name='score')
    op.drop_index('ix_score_image_id', table_name='score')

    op.drop_table('score')
    op.drop_index('ix_image_drop_id', table_name='image')

    op.drop_table('image')
    op.drop_index('ix_well_drop_plate_id', table_name='well_drop')

    op.drop_table('well_drop')
    op.drop_table('well')
    op.drop_table('scheme_class')
    op.drop_index('ix_inspection_complete_imaged_at', table_name='inspection')

    op.drop_table('inspection')
    op.drop_table('plate')
    op.drop_table('class_scheme')
