"""Definitions and configurations in a workspace's tenant session: lookup, creation, update, views."""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.agents.definitions import AgentDefinition, parse_definition
from ionflux.agents.models import AgentConfigurationRow, AgentDefinitionRow, AgentRunRow
from ionflux.agents.namespaces import Resolver
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.schema import apply_defaults, validate
from ionflux.core.bus.envelope import format_time
from ionflux.core.errors import Conflict, InvalidRequest, NotFound
from ionflux.core.models import new_id


async def get_definition(session: AsyncSession, registry: AgentRegistry, definition_id: str) -> AgentDefinition:
    builtin = registry.builtin(definition_id)
    if builtin is not None:
        return builtin
    row = await session.scalar(select(AgentDefinitionRow).where(AgentDefinitionRow.definition_id == definition_id))
    if row is None:
        raise NotFound(f"no agent definition {definition_id!r} in this workspace", field="definition_id")
    return parse_definition(row.document)


async def list_definitions(session: AsyncSession, registry: AgentRegistry) -> list[AgentDefinition]:
    rows = (await session.scalars(select(AgentDefinitionRow).order_by(AgentDefinitionRow.definition_id))).all()
    return [*registry.builtins(), *(parse_definition(r.document) for r in rows)]


async def put_definition(session: AsyncSession, registry: AgentRegistry, definition: AgentDefinition) -> bool:
    """Store (create or replace) a workspace definition; True if it was created."""
    if registry.builtin(definition.id) is not None:
        raise Conflict(f"{definition.id!r} is a built-in definition and cannot be replaced; choose another id",
                       field="id")
    row = await session.scalar(select(AgentDefinitionRow).where(AgentDefinitionRow.definition_id == definition.id))
    if row is None:
        session.add(AgentDefinitionRow(definition_id=definition.id, version=definition.version,
                                       document=definition.document()))
        return True
    row.version, row.document = definition.version, definition.document()
    return False


def parse_yaml_config(raw: Any) -> tuple[str, dict[str, Any]]:
    """(yaml text, values) from a YAML string or a JSON object."""
    if raw is None:
        return "", {}
    if isinstance(raw, dict):
        return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), raw
    if not isinstance(raw, str):
        raise InvalidRequest("yaml_config must be YAML text or a JSON object", field="yaml_config")
    try:
        values = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"yaml_config is not valid YAML: {exc}", field="yaml_config") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidRequest("yaml_config must be a mapping of input names to values", field="yaml_config")
    return raw, values


def effective_config(definition: AgentDefinition, values: dict[str, Any]) -> dict[str, Any]:
    config = apply_defaults(definition.inputs, values)
    validate(definition.inputs, config, field="yaml_config")
    return config


async def create_configuration(
    session: AsyncSession, definition: AgentDefinition, *, workspace_id: str, name: str | None,
    yaml_config: Any, brand_id: str | None, resolve: Resolver,
) -> AgentConfigurationRow:
    text, values = parse_yaml_config(yaml_config)
    config = effective_config(definition, values)
    row = AgentConfigurationRow(
        id=new_id(), definition_id=definition.id, definition_version=definition.version,
        name=name or definition.name, brand_id=brand_id, yaml_config=text, effective_config=config,
    )
    if definition.memory is not None:
        variables = {"workspace_id": workspace_id, "instance_id": row.id, "configuration_id": row.id,
                     "agent_id": definition.id, "definition_id": definition.id, "brand_id": brand_id or ""}
        row.external_memory_namespace = resolve(definition.memory.namespace_template, variables)
    session.add(row)
    await session.flush()
    return row


async def get_configuration(session: AsyncSession, configuration_id: str) -> AgentConfigurationRow:
    row = await session.get(AgentConfigurationRow, configuration_id)
    if row is None:
        raise NotFound(f"no agent configuration {configuration_id!r} in this workspace", field="configuration_id")
    return row


def configuration_view(row: AgentConfigurationRow) -> dict[str, Any]:
    return {
        "id": row.id, "definition_id": row.definition_id, "definition_version": row.definition_version,
        "name": row.name, "brand_id": row.brand_id, "status": row.status, "paused_reason": row.paused_reason,
        "yaml_config": row.yaml_config, "effective_config": row.effective_config,
        "external_memory_namespace": row.external_memory_namespace,
        "consecutive_failures": row.consecutive_failures,
        "created_at": format_time(row.created_at), "updated_at": format_time(row.updated_at),
    }


def run_view(row: AgentRunRow) -> dict[str, Any]:
    return {
        "id": row.id, "configuration_id": row.configuration_id, "status": row.status,
        "trigger": {"type": row.trigger_type, "event_id": row.trigger_event_id,
                    "scheduled_for": format_time(row.scheduled_for) if row.scheduled_for else None},
        "trigger_event_id": row.trigger_event_id, "attempts": row.attempts,
        "started_at": format_time(row.started_at) if row.started_at else None,
        "finished_at": format_time(row.finished_at) if row.finished_at else None,
        "duration_ms": row.duration_ms, "output": row.output, "error": row.error,
        "created_at": format_time(row.created_at),
    }
