"""email service tables

Revision ID: 0010_email
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_email"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "email_messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("batch_index", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("sender", sa.JSON(), nullable=False),
        sa.Column("to", sa.JSON(), nullable=False),
        sa.Column("cc", sa.JSON(), nullable=False),
        sa.Column("bcc", sa.JSON(), nullable=False),
        sa.Column("reply_to", sa.JSON(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("substitutions", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("tag_index", sa.Text(), nullable=False),
        sa.Column("template_id", sa.String(128), nullable=True),
        sa.Column("marketing", sa.Boolean(), nullable=False),
        sa.Column("refused", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_at", TZ, nullable=False),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("provider_message_id", sa.String(255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("send_at", TZ, nullable=True),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("claimed_until", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("uq_email_messages_idempotency", "email_messages", ["workspace_id", "idempotency_key"],
                    unique=True)
    op.create_index("ix_email_messages_due", "email_messages", ["status", "next_attempt_at"])
    op.create_index("ix_email_messages_ws_created", "email_messages", ["workspace_id", "created_at"])
    op.create_index("ix_email_messages_provider_id", "email_messages", ["provider_message_id"])
    op.create_index("ix_email_messages_batch", "email_messages", ["batch_id"])

    op.create_table(
        "email_status_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_email_status_changes_message", "email_status_changes", ["message_id", "seq"])

    op.create_table(
        "email_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("template_id", sa.String(128), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("refused", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_email_batches_workspace_id", "email_batches", ["workspace_id"])
    op.create_index("uq_email_batches_idempotency", "email_batches", ["workspace_id", "idempotency_key"],
                    unique=True)

    op.create_table(
        "email_templates",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("marketing", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "email_suppressions",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "email_provider_events",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("received_at", TZ, nullable=False),
    )
    op.create_index("ix_email_provider_events_received_at", "email_provider_events", ["received_at"])
    op.create_table(
        "email_workspace_settings",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("fallback_provider", sa.String(32), nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("email_workspace_settings", "email_provider_events", "email_suppressions", "email_templates",
                  "email_batches", "email_status_changes", "email_messages"):
        op.drop_table(table)
