"""web app: users, plate shares, Cinder queue, consensus rules and labels, score idempotency keys

Revision ID: 0003_web
Revises: 0002_pipeline
Create Date: 2026-11-21 11:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003_web'
down_revision = '0002_pipeline'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.Enum('admin', 'scorer', 'owner', name='web_role', native_enum=False, length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_user')),
    sa.UniqueConstraint('name', name=op.f('uq_web_user_name'))
    )
    op.create_table('plate_share',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plate_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plate_id'], ['plate.id'], name=op.f('fk_plate_share_plate_id_plate'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['web_user.id'], name=op.f('fk_plate_share_user_id_web_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plate_share')),
    sa.UniqueConstraint('user_id', 'plate_id', name='uq_plate_share_user_id_plate_id')
    )
    op.create_table('cinder_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('queued_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_cinder_item_image_id_image'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cinder_item')),
    sa.UniqueConstraint('image_id', name='uq_cinder_item_image_id')
    )
    op.create_index('ix_cinder_item_done_at', 'cinder_item', ['done_at'], unique=False)
    op.create_table('consensus_rule',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('min_scorers', sa.Integer(), nullable=False),
    sa.Column('min_agreement', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.CheckConstraint('min_scorers >= 1', name=op.f('ck_consensus_rule_min_scorers_positive')),
    sa.CheckConstraint('min_agreement > 0 AND min_agreement <= 1', name=op.f('ck_consensus_rule_min_agreement_fraction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consensus_rule'))
    )
    op.create_table('consensus_label',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('n_scorers', sa.Integer(), nullable=False),
    sa.Column('agreement', sa.Float(), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('labelled_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['class_id'], ['scheme_class.id'], name=op.f('fk_consensus_label_class_id_scheme_class')),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_consensus_label_image_id_image'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['consensus_rule.id'], name=op.f('fk_consensus_label_rule_id_consensus_rule'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consensus_label')),
    sa.UniqueConstraint('image_id', name='uq_consensus_label_image_id')
    )
    op.create_table('score_submission',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('score_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], name=op.f('fk_score_submission_image_id_image'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['score_id'], ['score.id'], name=op.f('fk_score_submission_score_id_score'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['web_user.id'], name=op.f('fk_score_submission_user_id_web_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_score_submission'))
    )


def downgrade() -> None:
    op.drop_table('score_submission')
    op.drop_table('consensus_label')
    op.drop_table('consensus_rule')
    op.drop_index('ix_cinder_item_done_at', table_name='cinder_item')
    op.drop_table('cinder_item')
    op.drop_table('plate_share')
    op.drop_table('web_user')
