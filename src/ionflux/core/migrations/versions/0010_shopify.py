"""shopify integration tables

Revision ID: 0010_shopify
Revises: 0002
Create Date: 2026-11-27 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010_shopify'
down_revision = '0002'
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _record(name: str, *extra: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(name,
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('shopify_id', sa.String(length=32), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('source_updated_at', TZ, nullable=False),
    sa.Column('published_updated_at', TZ, nullable=True),
    sa.Column('stored_at', TZ, nullable=False),
    *extra,
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(f'ix_{name}_workspace_id', name, ['workspace_id'])
    op.create_index(f'uq_{name}_item', name, ['connection_id', 'shopify_id'], unique=True)


def upgrade() -> None:
    op.create_table('shopify_workspace_settings',
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('pii_enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', TZ, nullable=False),
    sa.PrimaryKeyConstraint('workspace_id'),
    )
    op.create_index('ix_shopify_workspace_settings_workspace_id', 'shopify_workspace_settings', ['workspace_id'])
    op.create_table('shopify_shops',
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('shop_gid', sa.String(length=100), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('iana_timezone', sa.String(length=64), nullable=True),
    sa.Column('webhooks', sa.JSON(), nullable=False),
    sa.Column('reconciled_until', TZ, nullable=True),
    sa.Column('updated_at', TZ, nullable=False),
    sa.PrimaryKeyConstraint('connection_id'),
    )
    op.create_index('ix_shopify_shops_workspace_id', 'shopify_shops', ['workspace_id'])
    op.create_index('ix_shopify_shops_shop_domain', 'shopify_shops', ['shop_domain'])
    _record('shopify_orders', sa.Column('created_at', TZ, nullable=False),
            sa.Column('customer_id', sa.String(length=32), nullable=True))
    op.create_index('ix_shopify_orders_created', 'shopify_orders', ['connection_id', 'created_at'])
    op.create_index('ix_shopify_orders_customer_id', 'shopify_orders', ['customer_id'])
    _record('shopify_products')
    op.create_table('shopify_sync_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('since', TZ, nullable=True),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('products', sa.Integer(), nullable=False),
    sa.Column('published', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('lease_until', TZ, nullable=True),
    sa.Column('started_at', TZ, nullable=False),
    sa.Column('updated_at', TZ, nullable=False),
    sa.Column('finished_at', TZ, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_shopify_sync_runs_workspace_id', 'shopify_sync_runs', ['workspace_id'])
    op.create_index('ix_shopify_sync_runs_conn', 'shopify_sync_runs', ['connection_id', 'status'])
    op.create_table('shopify_privacy_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=64), nullable=True),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.JSON(), nullable=False),
    sa.Column('received_at', TZ, nullable=False),
    sa.Column('completed_at', TZ, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id'),
    )
    op.create_index('ix_shopify_privacy_requests_workspace_id', 'shopify_privacy_requests', ['workspace_id'])


def downgrade() -> None:
    for table in ('shopify_privacy_requests', 'shopify_sync_runs', 'shopify_products', 'shopify_orders',
                  'shopify_shops', 'shopify_workspace_settings'):
        op.drop_table(table)
