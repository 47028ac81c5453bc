"""WhatsApp settings: `IONFLUX_WHATSAPP_*` (the app secret, verify token and system-user token are vault
secrets loaded from the same prefix by core/vault; these are the non-secret knobs)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings

# Opt-out / opt-in keywords in several languages (matched on the whole message, case- and accent-insensitive).
DEFAULT_STOP = ["stop", "unsubscribe", "cancel", "end", "quit", "stopall", "optout", "opt out", "parar", "pare",
                "baja", "cancelar", "detener", "arret", "arreter", "desabonner", "desinscrire", "stopp", "abmelden",
                "basta", "disiscriviti", "sair", "descadastrar"]
DEFAULT_START = ["start", "unstop", "subscribe", "resume", "optin", "opt in", "alta", "iniciar", "comenzar",
                 "reanudar", "suscribir", "inscrire", "abonner", "anmelden", "iscriviti", "comecar", "voltar"]


class WhatsAppSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_WHATSAPP_", extra="ignore")

    base_url: str = Field(default="https://graph.facebook.com", description="Graph API host (a simulator in tests)")
    # Meta's docs write <API_VERSION>; the current number is UNVERIFIED (API_FACTS §2), so it is a setting.
    api_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$")
    messages_per_second: float = Field(default=80.0, gt=0, description="default per-number throughput (Meta: 80)")
    burst_seconds: float = Field(default=0.1, gt=0, le=1, description="a number's burst: this many seconds of its rate")
    pair_messages: float = Field(default=6.0, gt=0, description="burst of messages to one recipient")
    pair_interval_seconds: float = Field(default=6.0, gt=0, description="then one per this many seconds (131056)")
    window_hours: float = Field(default=24.0, gt=0, description="customer-service window")
    send_timeout_seconds: float = Field(default=30.0, gt=0, description="one send, pacing and retries included")
    rate_limit_retries: int = Field(default=5, ge=0, description="retries of a send refused with 130429/131056")
    platform_waba_ids: list[str] = Field(default_factory=list, description=(
        "the platform's own WhatsApp Business Accounts: a number on one of them may use the system-user token; "
        "a number elsewhere must bring its access_token (empty: not checked)"))
    stop_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))
    start_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_START))
