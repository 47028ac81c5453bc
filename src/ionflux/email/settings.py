"""Email settings: the service's own (IONFLUX_EMAIL_*) and each provider's (IONFLUX_SMTP_*, IONFLUX_SENDGRID_*,
IONFLUX_SES_*). Secrets (SMTP password, SendGrid key, AWS keys) live in the vault, not here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings

ProviderName = Literal["smtp", "sendgrid", "ses"]
PROVIDERS: tuple[ProviderName, ...] = ("smtp", "sendgrid", "ses")


class EmailSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_EMAIL_", extra="ignore")

    provider: ProviderName = Field(default="smtp", description="the platform's default provider")
    fallback_provider: ProviderName | None = Field(default=None, description="used when the primary is down")
    public_url: str = Field(default="http://127.0.0.1:8000", description="base of unsubscribe links")
    unsubscribe_secret: str | None = Field(default=None, description="HMAC key of unsubscribe links "
                                                                      "(default: generated once, kept in the vault)")
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    claim_seconds: float = Field(default=300.0, gt=0, description="lease of a message being sent")
    max_attempts: int = Field(default=5, gt=0, description="tries before a message is failed")
    retry_base_seconds: float = Field(default=30.0, gt=0)
    dispatch_chunk: int = Field(default=1000, gt=0, description="messages claimed per dispatch step")
    idempotency_hours: float = Field(default=24.0, gt=0)


class SmtpSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_SMTP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 2525
    use_tls: bool = Field(default=False, description="implicit TLS (SMTPS, usually port 465)")
    start_tls: bool | None = Field(default=None, description="True: require STARTTLS; None: use it if offered")
    validate_certs: bool = True
    cert_bundle: str | None = Field(default=None, description="CA file to validate the server's certificate with "
                                                                "(default: the system's)")
    timeout: float = Field(default=30.0, gt=0)
    pool_size: int = Field(default=8, gt=0, description="connections kept open per server and login")
    local_hostname: str | None = None


class SendGridSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_SENDGRID_", extra="ignore")

    base_url: str = "https://api.sendgrid.com"
    timeout: float = Field(default=30.0, gt=0)


class SesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_SES_", extra="ignore")

    base_url: str | None = Field(default=None, description="endpoint URL (default: AWS's for the region)")
    region: str = "us-east-1"
    configuration_set: str | None = None
    topic_arn: str | None = Field(default=None, description="the platform's SNS topic for SES notifications")
    max_send_rate: float | None = Field(default=None, gt=0, description="override GetAccount's MaxSendRate")
    default_send_rate: float = Field(default=1.0, gt=0, description="recipients/s when GetAccount cannot be read "
                                                                     "(the SES sandbox rate: the safe lower bound)")
    quota_refresh_seconds: float = Field(default=300.0, gt=0, description="how often GetAccount is re-read")
    throttle_retries: int = Field(default=5, ge=0, description="retries of a throttled or 5xx call, with backoff")
    backoff_base: float = Field(default=0.2, gt=0, description="first backoff in seconds (doubles each retry)")
    bulk: bool = Field(default=True, description="SendBulkEmail for templated batches (off: one SendEmail each)")
    bulk_size: int = Field(default=50, gt=0, le=50, description="entries per SendBulkEmail call")
    concurrency: int = Field(default=8, gt=0, description="SES calls in flight (threads; boto3 is synchronous)")
    timeout: float = Field(default=30.0, gt=0)
