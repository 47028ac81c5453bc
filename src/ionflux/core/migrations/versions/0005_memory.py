"""memory: namespace registry and embedded vector records

Revision ID: 0005_memory
Revises: 0002
Create Date: 2026-11-27 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_memory'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('memory_namespaces',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('physical', sa.String(length=64), nullable=False),
    sa.Column('dimension', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('backend', sa.String(length=16), nullable=False),
    sa.Column('embedding_model', sa.String(length=200), nullable=True),
    sa.Column('template', sa.String(length=500), nullable=True),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('physical')
    )
    with op.batch_alter_table('memory_namespaces', schema=None) as batch_op:
        batch_op.create_index('uq_memory_namespaces_name', ['workspace_id', 'name'], unique=True)
        batch_op.create_index(batch_op.f('ix_memory_namespaces_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('memory_vectors',
    sa.Column('label', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('namespace', sa.String(length=64), nullable=False),
    sa.Column('vid', sa.String(length=512), nullable=False),
    sa.Column('vec', sa.LargeBinary(), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('label')
    )
    with op.batch_alter_table('memory_vectors', schema=None) as batch_op:
        batch_op.create_index('uq_memory_vectors_id', ['namespace', 'vid'], unique=True)
        batch_op.create_index('ix_memory_vectors_seq', ['namespace', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_memory_vectors_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    op.drop_table('memory_vectors')
    op.drop_table('memory_namespaces')
