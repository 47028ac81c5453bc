"""`ionflux.client`: talk to a running IONFLUX over HTTP with a workspace token.

Manage agents (`client.agents`), publish and read events (`client.events`), and run an agent in your own
process with the same `AgentContext` IONFLUX gives its built-in agents (`run_agent`).
"""

from ionflux.client.http import IonfluxClient, raise_for_error
from ionflux.client.runner import agent_context, run_agent

__all__ = ["IonfluxClient", "agent_context", "raise_for_error", "run_agent"]
