"""messaging (WhatsApp): messages, statuses, inbound, contacts, consents, templates

Revision ID: 0008_messaging
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_messaging"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _ws() -> sa.Column[str]:
    return sa.Column("workspace_id", sa.String(length=64), nullable=False)


def upgrade() -> None:
    op.create_table(
        "wa_messages",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("to", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("template_name", sa.String(512), nullable=True),
        sa.Column("business_initiated", sa.Boolean(), nullable=False),
        sa.Column("wamid", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("read_at", TS, nullable=True),
        sa.Column("failed_at", TS, nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("context_message_id", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_wa_messages_workspace_id", "wa_messages", ["workspace_id"])
    op.create_index("ix_wa_messages_wamid", "wa_messages", ["wamid"])
    op.create_table(
        "wa_statuses",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("wamid", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("recipient_id", sa.String(32), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
    )
    op.create_index("ix_wa_statuses_workspace_id", "wa_statuses", ["workspace_id"])
    op.create_index("uq_wa_statuses", "wa_statuses", ["workspace_id", "wamid", "status"], unique=True)
    op.create_table(
        "wa_inbound",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("wamid", sa.String(255), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("wa_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_wa_inbound_workspace_id", "wa_inbound", ["workspace_id"])
    op.create_index("uq_wa_inbound", "wa_inbound", ["workspace_id", "wamid"], unique=True)
    op.create_table(
        "wa_contacts",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("wa_id", sa.String(32), nullable=False),
        sa.Column("profile_name", sa.String(255), nullable=True),
        sa.Column("last_inbound_at", TS, nullable=True),
    )
    op.create_index("ix_wa_contacts_workspace_id", "wa_contacts", ["workspace_id"])
    op.create_index("uq_wa_contacts", "wa_contacts", ["workspace_id", "phone_number_id", "wa_id"], unique=True)
    op.create_table(
        "wa_consents",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("wa_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("text_shown", sa.Text(), nullable=True),
        sa.Column("opted_in_at", TS, nullable=True),
        sa.Column("opted_out_at", TS, nullable=True),
        sa.Column("keyword", sa.String(64), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_wa_consents_workspace_id", "wa_consents", ["workspace_id"])
    op.create_index("uq_wa_consents", "wa_consents", ["workspace_id", "wa_id"], unique=True)
    op.create_table(
        "wa_templates",
        sa.Column("id", sa.String(64), primary_key=True),
        _ws(),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("meta_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_wa_templates_workspace_id", "wa_templates", ["workspace_id"])
    op.create_index("uq_wa_templates", "wa_templates", ["workspace_id", "waba_id", "name", "language"], unique=True)


def downgrade() -> None:
    for table in ("wa_templates", "wa_consents", "wa_contacts", "wa_inbound", "wa_statuses", "wa_messages"):
        op.drop_table(table)
