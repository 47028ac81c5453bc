"""Provider simulators on loopback, for the demo and the tests only (no production module imports this)."""

from ionflux.sandbox.admin import SandboxControl
from ionflux.sandbox.faults import Fault, FaultScript, RateLimitRule, RecordedRequest
from ionflux.sandbox.middleware import FaultMiddleware
from ionflux.sandbox.server import SimulatorServer

__all__ = [
    "Fault",
    "FaultMiddleware",
    "FaultScript",
    "RateLimitRule",
    "RecordedRequest",
    "SandboxControl",
    "SimulatorServer",
]
