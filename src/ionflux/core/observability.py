"""Structured JSON logs with a request id and secret redaction; Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from ionflux.core.ids import random_hex

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A request's id (the trace id in logs and metrics): a random UUID as 32 hex digits."""
    return random_hex()

# Anything that looks like a secret: bearer tokens, our own tokens, key=value pairs with secret-ish names,
# provider key shapes (sk-..., SG...., AKIA...), and long base64/hex runs.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"ifx_[A-Za-z0-9_-]{8,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|secret|token|password|passwd|authorization|access[_-]?key|client[_-]?secret)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
    ),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bSG\.[A-Za-z0-9_.-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\b[A-Za-z0-9+/]{40,}={0,2}"),
]
_REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + _REDACTED, text)
        else:
            text = pattern.sub(_REDACTED, text)
    return text


class JsonFormatter(logging.Formatter):
    _RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class Metrics:
    """The process's Prometheus registry (one per app, so tests can build several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "ionflux_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.http_latency = Histogram(
            "ionflux_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.events_published = Counter(
            "ionflux_events_published_total", "Events published from the outbox", ["transport"],
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "ionflux_events_consumed_total", "Events handled by consumers", ["consumer", "outcome"],
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "ionflux_outbox_publish_failures_total", "Failed publish attempts", registry=self.registry
        )
