"""Local models: all-MiniLM-L6-v2 embeddings (loaded once per session, offline), micro-batching, the
`Embedder` interface for other services, lazy heavy imports, and local text generation's clear absence."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ionflux.core.platform import Platform
from ionflux.llm.interface import DEFAULT_EMBEDDING_DIMENSION, DEFAULT_EMBEDDING_MODEL, Embedder
from ionflux.llm.providers.local import LocalAdapter, LocalEmbeddingModel
from ionflux.llm.settings import LLMSettings
from tests.llm_helpers import (  # noqa: F401 - shared fixtures
    LLMApp,
    Sims,
    llm_app,
    llm_sims,
    module_llm_sims,
    reset,
    running_sims,
    sqlite_database_url,
    sqlite_only,
)


@pytest.fixture(scope="session")
def minilm() -> Any:
    """Loads the model once for the whole session (the service's process-wide cache keeps it)."""
    return LocalEmbeddingModel(LLMSettings().local_embedding_package).load()


@pytest.fixture
async def llm(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch, minilm: Any) -> AsyncIterator[LLMApp]:
    async with llm_app(platform, sims, monkeypatch) as app:
        yield app


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_default_embedding_is_local_minilm_384_unit_vectors(llm: LLMApp, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "embedding", "text_to_embed": ["The cat sat on the mat.", "A kitten rested on the rug.",
                                                    "Quarterly revenue grew by 12 percent."]})
    body = r.json()
    assert r.status_code == 200, body
    assert body["provider_response"]["model_used"] == DEFAULT_EMBEDDING_MODEL
    cat, kitten, revenue = body["provider_response"]["embedding"]
    assert len(cat) == DEFAULT_EMBEDDING_DIMENSION == 384
    assert math.isclose(math.sqrt(cosine(cat, cat)), 1.0, rel_tol=1e-4)
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.2
    assert body["provider_response"]["usage"]["prompt_tokens"] > 0


async def test_embedder_interface_for_other_services(llm: LLMApp, workspace) -> None:
    embedder = llm.platform.services["llm"]
    assert isinstance(embedder, Embedder)
    vectors = await embedder.embed(workspace.id, ["hello world", "goodbye"])
    assert [len(v) for v in vectors] == [384, 384]
    again = await embedder.embed(workspace.id, ["hello world"])
    assert cosine(vectors[0], again[0]) == pytest.approx(1.0, abs=1e-5)
    assert await embedder.embed(workspace.id, []) == []


async def test_concurrent_requests_are_micro_batched(llm: LLMApp, workspace) -> None:
    adapter = llm.service.orchestrator.adapters["local"]
    assert isinstance(adapter, LocalAdapter)
    before = adapter.batcher.batches
    texts = [f"sentence number {i} about a blue shirt" for i in range(32)]
    together = await asyncio.gather(*(llm.service.embed(workspace.id, [t]) for t in texts))
    calls = adapter.batcher.batches - before
    assert calls < 32  # 32 requests, fewer model calls
    alone = await llm.service.embed(workspace.id, [texts[7]])
    assert cosine(together[7][0], alone[0]) == pytest.approx(1.0, abs=1e-5)  # batching changes no answer


async def test_openai_surface_serves_local_embeddings(llm: LLMApp, workspace) -> None:
    r = await llm.client.post("/v1/embeddings", headers=workspace.headers,
                              json={"model": "local:all-MiniLM-L6-v2", "input": "hi"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    bad = await llm.client.post("/v1/embeddings", headers=workspace.headers,
                                json={"model": "local:all-MiniLM-L6-v2", "input": "hi", "dimensions": 128})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "dimensions"
    other = await llm.client.post("/v1/embeddings", headers=workspace.headers,
                                  json={"model": "local:bge-large", "input": "hi"})
    assert other.status_code == 400 and other.json()["error"]["field"] == "model"


async def test_local_text_generation_says_it_is_not_installed(llm: LLMApp, workspace) -> None:
    try:
        import llama_cpp  # type: ignore[import-not-found]  # noqa: F401
        pytest.skip("llama-cpp-python is installed here")
    except ImportError:
        pass
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers,
                              json={"model": "local:smollm2-135m-instruct", "prompt": "hi"})
    body = r.json()
    assert r.status_code == 503 and body["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert "pip install 'ionflux[local-llm]'" in body["error"]["message"]


async def test_local_text_generation_answers_when_installed(llm: LLMApp, workspace) -> None:
    pytest.importorskip("llama_cpp", reason="the optional extra local-llm is not installed")
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers,
                              json={"model": "local:smollm2-135m-instruct", "prompt": "Say hello to a customer.",
                                    "parameters": {"max_tokens": 16, "temperature": 0}})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", body
    usage = body["provider_response"]["usage"]
    assert body["provider_response"]["choices"][0]["text"].strip()
    assert 0 < usage["completion_tokens"] <= 16 and usage["prompt_tokens"] > 0


async def test_local_text_generation_works_beside_the_vector_memory_and_survives_its_worker(
        llm: LLMApp, workspace, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the optional extra local-llm is not installed")
    import usearch.index  # noqa: F401 - its static C++ runtime broke llama.cpp's vocabulary loading in-process

    async def ask() -> Any:
        r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
            "model": "local:smollm2-135m-instruct", "prompt": "Say hi.", "parameters": {"max_tokens": 4}})
        return r.status_code, r.json()

    status, body = await ask()
    assert status == 200 and body["status"] == "success", body
    chat = llm.service.orchestrator.adapters["local"]._chat  # type: ignore[attr-defined]
    chat._worker.kill()  # the worker dies between two requests: the next one starts another
    await chat._worker.wait()
    status, body = await ask()
    assert status == 200 and body["status"] == "success", body
    junk = tmp_path / "not-a-model.gguf"
    junk.write_bytes(b"GGUF but not really")
    await chat.aclose()
    chat.model_path = str(junk)
    status, body = await ask()
    assert status == 503 and body["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert "could not be loaded" in body["error"]["message"]


def test_heavy_imports_wait_for_first_use() -> None:
    code = ("import sys; from ionflux.llm.service_plugin import LLMService; import ionflux.llm.api, "
            "ionflux.llm.openai_api; print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', "
            "'openai', 'anthropic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_llm_server_idles_small_without_torch(tmp_path: Path) -> None:
    """`ionflux serve --only llm` answers /healthz with the local model not loaded: idle RSS under 250 MB."""
    import os
    import time

    import httpx

    from tests.server import free_port

    port = free_port()
    env = {**os.environ, "IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "ionflux.cli", "serve", "--only", "llm", "--port", str(port)],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no /healthz within 60 s"
            time.sleep(0.05)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        assert rss_kb < 250 * 1024
        assert "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
