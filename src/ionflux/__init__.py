"""IONFLUX: one internal API and one event bus between AI agents and the providers they use."""

__version__ = "0.1.0"
