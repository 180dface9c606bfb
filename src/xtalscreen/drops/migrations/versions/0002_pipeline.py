"""pipeline: runs, per-image failures with reason, run lock

Revision ID: 0002_pipeline
Revises: 0001
Create Date: 2026-11-21 10:50:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002_pipeline'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pipeline_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('inspections', sa.Integer(), nullable=False),
    sa.Column('images_scored', sa.Integer(), nullable=False),
    sa.Column('images_failed', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_run'))
    )
    op.create_table('image_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('scorer', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('failed_at', sa.DateTime(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_image_failure_image_id_image'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['pipeline_run.id'], name=op.f('fk_image_failure_run_id_pipeline_run'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_image_failure')),
    sa.UniqueConstraint('image_id', 'scorer', 'model_version', name='uq_image_failure_image_model_version')
    )
    op.create_table('pipeline_lock',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_pipeline_lock'))
    )


def downgrade() -> None:
    op.drop_table('pipeline_lock')
    op.drop_table('image_failure')
    op.drop_table('pipeline_run')
