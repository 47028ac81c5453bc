"""agent bridge: definitions, configurations, runs, state

Revision ID: 0009_agents
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_agents"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "agent_definitions",
        sa.Column("pk", sa.String(64), primary_key=True),
        sa.Column("definition_id", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("workspace_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_agent_definitions_workspace_id", "agent_definitions", ["workspace_id"])
    op.create_index("uq_agent_definitions_ws_id", "agent_definitions", ["workspace_id", "definition_id"], unique=True)

    op.create_table(
        "agent_configurations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("definition_id", sa.String(100), nullable=False),
        sa.Column("definition_version", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("brand_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("yaml_config", sa.Text(), nullable=False),
        sa.Column("effective_config", sa.JSON(), nullable=False),
        sa.Column("external_memory_namespace", sa.String(64), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _ts("schedule_cursor", True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        _ts("lease_until", True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("workspace_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_agent_configurations_workspace_id", "agent_configurations", ["workspace_id"])
    op.create_index("ix_agent_configurations_definition_id", "agent_configurations", ["definition_id"])

    op.create_table(
        "agent_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("configuration_id", sa.String(64),
                  sa.ForeignKey("agent_configurations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("trigger_key", sa.String(128), nullable=False),
        sa.Column("trigger_event_id", sa.String(64), nullable=True),
        _ts("scheduled_for", True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at"),
        _ts("started_at", True),
        _ts("finished_at", True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.Column("workspace_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_agent_runs_workspace_id", "agent_runs", ["workspace_id"])
    op.create_index("uq_agent_runs_trigger", "agent_runs", ["configuration_id", "trigger_key"], unique=True)
    op.create_index("ix_agent_runs_due", "agent_runs", ["status", "next_attempt_at"])

    op.create_table(
        "agent_state",
        sa.Column("configuration_id", sa.String(64),
                  sa.ForeignKey("agent_configurations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.Column("workspace_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_agent_state_workspace_id", "agent_state", ["workspace_id"])


def downgrade() -> None:
    op.drop_table("agent_state")
    op.drop_table("agent_runs")
    op.drop_table("agent_configurations")
    op.drop_table("agent_definitions")
