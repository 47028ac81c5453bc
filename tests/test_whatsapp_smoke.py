from __future__ import annotations

from tests.whatsapp_fixtures import PHONE_ID, RECEIVED, USER, WaEnv, wa_env  # noqa: F401


async def test_inbound_then_reply(wa_env: WaEnv) -> None:
    await wa_env.inbound("hello")
    response = await wa_env.send(to=USER, type="text", text={"body": "Hi back"})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "accepted"
    assert len(wa_env.of(RECEIVED)) == 1
    assert wa_env.sim.stats.sent == 1
    assert PHONE_ID
