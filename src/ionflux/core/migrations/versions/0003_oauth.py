"""oauth states and refresh leases

Revision ID: 0003_oauth
Revises: 0002
Create Date: 2026-11-27 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_oauth'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_states',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('flavor', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('url_vars', sa.JSON(), nullable=False),
    sa.Column('connection_hint', sa.String(length=255), nullable=True),
    sa.Column('sealed_verifier', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('state_hash')
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index('ix_oauth_states_expires_at', ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_states_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('oauth_refresh_leases',
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('connection_id')
    )
    with op.batch_alter_table('oauth_refresh_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_refresh_leases_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oauth_refresh_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_refresh_leases_workspace_id'))
    op.drop_table('oauth_refresh_leases')
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_states_workspace_id'))
        batch_op.drop_index('ix_oauth_states_expires_at')
    op.drop_table('oauth_states')
