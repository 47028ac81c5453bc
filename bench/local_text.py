"""Local text generation (SmolLM2-135M-Instruct, llama.cpp): completion tokens/s through IONFLUX
(`POST /v1/llm/requests`, model `local:smollm2-135m-instruct`) against llama-cpp-python called directly on the
same GGUF file, in the same run. Needs the optional extra: `.venv/bin/pip install -e '.[local-llm]'`
(llama-cpp-python builds from source, about 11 minutes on these machines).

    .venv/bin/python bench/local_text.py [--requests 8] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROMPT = "Write two friendly sentences inviting a customer back to a shop that sells linen shirts."


async def through_service(requests: int, max_tokens: int) -> tuple[float, int]:
    from ionflux.app import create_app
    from ionflux.core.platform import Platform
    from ionflux.core.settings import Settings
    from ionflux.services import services_running

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="local-text-")))
    Platform.from_settings(settings).db.upgrade()
    platform = Platform.from_settings(settings)
    await platform.start()
    app = create_app(platform, only=["llm"], manage_lifecycle=False)
    ws = await platform.workspaces.create("bench")
    body = {"model": "local:smollm2-135m-instruct", "prompt": PROMPT, "parameters": {"max_tokens": max_tokens,
                                                                                    "temperature": 0.0}}
    try:
        async with services_running(list(platform.services.values())), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600,
                headers={"Authorization": f"Bearer {ws.token}"}) as client:
            first = await client.post("/v1/llm/requests", json=body)  # loads the model
            if first.json().get("status") != "success":
                sys.exit(f"local text generation failed: {first.text}")
            started, tokens = time.perf_counter(), 0
            for _ in range(requests):
                answer = (await client.post("/v1/llm/requests", json=body)).json()
                tokens += answer["provider_response"]["usage"]["completion_tokens"]
            return time.perf_counter() - started, tokens
    finally:
        await platform.stop()


def direct(requests: int, max_tokens: int) -> tuple[float, int]:
    import llama_cpp

    from ionflux.llm.providers.local import packaged_model

    llama = llama_cpp.Llama(model_path=packaged_model() or "", n_ctx=2048, verbose=False)
    messages = [{"role": "user", "content": PROMPT}]
    llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
    started, tokens = time.perf_counter(), 0
    for _ in range(requests):
        out = llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("IONFLUX_LOG_LEVEL", "WARNING")
    ours, ours_tokens = asyncio.run(through_service(args.requests, args.max_tokens))
    raw, raw_tokens = direct(args.requests, args.max_tokens)
    print(f"through IONFLUX: {ours_tokens} tokens in {ours:.2f} s = {ours_tokens / ours:.1f} tokens/s | "
          f"llama-cpp-python directly: {raw_tokens} tokens in {raw:.2f} s = {raw_tokens / raw:.1f} tokens/s | "
          f"ratio {(ours_tokens / ours) / (raw_tokens / raw):.2f}")


if __name__ == "__main__":
    main()
