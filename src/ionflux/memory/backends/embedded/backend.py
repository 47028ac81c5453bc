"""The embedded vector engine: records in the database, an in-memory index per namespace, HNSW on disk.

Writes commit to the database first (the acknowledgement means durable), then update the in-memory
index under the namespace's lock. Namespaces load lazily on first use. A namespace that reaches
`exact_threshold` records gets a usearch HNSW graph, saved to `<data_dir>/memory/<physical>.usearch`
after it is built, every `snapshot_seconds` while it changes, and at shutdown; after a restart or a
SIGKILL it is loaded and caught up from the rows stamped after its watermark (or rebuilt if missing).
One process owns a data directory's embedded memory; several processes need Qdrant or Pinecone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ionflux.core.db import Database
from ionflux.memory.backends.base import NamespaceRef, Upsert, as_floats
from ionflux.memory.backends.embedded.engine import (
    GraphParams,
    NamespaceIndex,
    load_graph,
    remove_graph,
    save_graph,
)
from ionflux.memory.backends.embedded.store import EmbeddedStore
from ionflux.memory.filters import Node
from ionflux.memory.interface import Match, Metric, VectorRecord

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    index: NamespaceIndex
    ref: NamespaceRef
    version: int
    saved_version: int = -1  # the watermark of the graph file on disk (-1: none)
    rebuilt: bool = False  # the graph in memory is newer than the file even at the same version
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, db: Database, directory: Path, *, exact_threshold: int = 20_000,
                 snapshot_seconds: float = 60.0, idle_seconds: float = 900.0, params: GraphParams | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = EmbeddedStore(db)
        self.directory = directory
        self.exact_threshold = exact_threshold
        self.snapshot_seconds = snapshot_seconds
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.params = params or GraphParams()
        self._loaded: dict[str, _Loaded] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._snapshots: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._snapshots = asyncio.create_task(self._snapshot_loop(), name="memory-snapshots")

    async def stop(self) -> None:
        if self._snapshots is not None:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
        await self.save_all()
        self._loaded.clear()

    async def check_shape(self, dimension: int, metric: Metric) -> None:
        return None  # any dimension and metric

    async def create(self, ns: NamespaceRef) -> None:
        return None  # rows and files appear with the first write

    async def drop(self, ns: NamespaceRef) -> None:
        state = self._loaded.pop(ns.physical, None)
        if state is not None:
            async with state.lock:
                pass  # let a write in flight finish before the rows go
        await self.store.drop(ns)
        remove_graph(self._path(ns))

    async def upsert(self, ns: NamespaceRef, items: Sequence[Upsert]) -> None:
        state = await self._state(ns)
        async with state.lock:
            version, labels = await self.store.write(ns, items)
            index = state.index
            index.put([(labels[item.id], item.id, item.values, item.metadata) for item in items])
            state.version = version
            if index.graph is not None:
                keys = np.asarray([labels[item.id] for item in items], dtype=np.int64)
                vectors = np.stack([item.values for item in items]).astype(np.float32)
                await self._mutate_graph(state, [], keys, vectors)
            elif index.count >= self.exact_threshold:
                await self._build_graph(state)

    async def query(self, ns: NamespaceRef, vector: np.ndarray, top_k: int, flt: Node | None,
                    include_values: bool, include_metadata: bool) -> list[Match]:
        index = (await self._state(ns)).index
        hits = index.search(vector, top_k, flt)
        return [
            Match(id=index.ids[row], score=score,
                  values=as_floats(index.vector(index.ids[row])) if include_values else None,  # type: ignore[arg-type]
                  metadata=dict(index.meta[row]) if include_metadata else None)
            for row, score in hits
        ]

    async def fetch(self, ns: NamespaceRef, ids: Sequence[str]) -> list[VectorRecord]:
        index = (await self._state(ns)).index
        out = []
        for vid in dict.fromkeys(ids):
            vec = index.vector(vid)
            if vec is not None:
                out.append(VectorRecord(id=vid, values=as_floats(vec), metadata=dict(index.meta[index.pos[vid]])))
        return out

    async def delete_ids(self, ns: NamespaceRef, ids: Sequence[str]) -> None:
        state = await self._state(ns)
        async with state.lock:
            await self._delete(state, ids)

    async def delete_filter(self, ns: NamespaceRef, flt: Node) -> None:
        state = await self._state(ns)
        async with state.lock:
            ids = [state.index.ids[row] for row in state.index.matching_rows(flt)]
            for start in range(0, len(ids), 1000):
                await self._delete(state, ids[start:start + 1000])

    async def count(self, ns: NamespaceRef) -> int:
        state = self._loaded.get(ns.physical)  # a namespace not in memory is counted, not loaded
        return state.index.count if state is not None else await self.store.count(ns)

    async def save_all(self) -> None:
        for state in list(self._loaded.values()):
            async with state.lock:
                await self._save(state)

    # -- internals ----------------------------------------------------------------------------------
    async def _delete(self, state: _Loaded, ids: Sequence[str]) -> None:
        if not ids:
            return
        tombstone = state.saved_version >= 0
        version, _ = await self.store.remove(state.ref, ids, tombstone=tombstone)
        removed = state.index.remove(ids)
        state.version = version
        if state.index.graph is not None and removed:
            await self._mutate_graph(state, removed, np.empty(0, dtype=np.int64),
                                     np.empty((0, state.ref.dimension), dtype=np.float32))

    async def _mutate_graph(self, state: _Loaded, removed: Sequence[int], keys: np.ndarray,
                            vectors: np.ndarray) -> None:
        index = state.index
        index.graph_busy = True
        try:
            await asyncio.to_thread(index.graph_apply, removed, keys, vectors)
        except Exception:
            log.exception("HNSW update failed; the namespace falls back to exact search until rebuilt",
                          extra={"namespace": state.ref.physical})
            index.graph = None
        finally:
            index.graph_busy = False

    async def _build_graph(self, state: _Loaded) -> None:
        index = state.index
        index.graph_busy = True
        try:
            index.graph = await asyncio.to_thread(index.build_graph)
            index.graph_removals = 0
        finally:
            index.graph_busy = False
        state.rebuilt = True  # save it even if the version did not move
        await self._save(state)

    async def _save(self, state: _Loaded) -> None:
        graph = state.index.graph
        if graph is None or (state.saved_version == state.version and not state.rebuilt):
            return
        version = state.version
        sidecar = {"watermark": version, "dimension": state.ref.dimension, "metric": state.ref.metric,
                   "dtype": self.params.dtype}
        await asyncio.to_thread(save_graph, graph, self._path(state.ref), sidecar)
        state.saved_version = version
        state.rebuilt = False
        await self.store.purge_tombstones(state.ref, version)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_seconds)
            await self.maintain()

    async def maintain(self) -> None:
        """Rebuild graphs worn by overwrites and deletes, save those that changed, and let namespaces
        unused for `idle_seconds` leave memory (the next call loads them again)."""
        for physical, state in list(self._loaded.items()):
            try:
                async with state.lock:
                    if state.index.graph_worn:
                        await self._build_graph(state)
                    await self._save(state)
                    if self.clock() - state.last_used > self.idle_seconds:
                        self._loaded.pop(physical, None)
            except Exception:
                log.exception("HNSW maintenance failed", extra={"namespace": state.ref.physical})

    def _path(self, ns: NamespaceRef) -> Path:
        return self.directory / f"{ns.physical}.usearch"

    async def _state(self, ns: NamespaceRef) -> _Loaded:
        state = self._loaded.get(ns.physical)
        if state is not None:
            state.last_used = self.clock()
            return state
        lock = self._loading.setdefault(ns.physical, asyncio.Lock())
        async with lock:
            state = self._loaded.get(ns.physical)
            if state is None:
                state = await self._load(ns)
                self._loaded[ns.physical] = state
            state.last_used = self.clock()
        return state

    async def _load(self, ns: NamespaceRef) -> _Loaded:
        rows = await self.store.load(ns)
        index = NamespaceIndex(ns.dimension, ns.metric, exact_threshold=self.exact_threshold, params=self.params)
        if rows.ids:
            index.put(list(zip(rows.labels.tolist(), rows.ids, rows.vectors, rows.metadata, strict=True)))
        state = _Loaded(index=index, ref=ns, version=rows.version)
        snapshot = await asyncio.to_thread(load_graph, self._path(ns))
        if snapshot is not None and self._snapshot_fits(snapshot[1], ns, rows.version):
            graph, sidecar = snapshot
            watermark = int(sidecar["watermark"])
            changed = await self.store.changed_since(ns, watermark)
            keys, vectors = index.vectors_for_labels(changed)
            index.graph = graph
            await asyncio.to_thread(index.graph_apply, changed, keys, vectors)
            if graph.size == index.count:
                state.saved_version = watermark
                if changed:
                    await self._save(state)
                return state
            log.warning("HNSW snapshot disagrees with the database; rebuilding", extra={"namespace": ns.physical})
            index.graph = None
        if index.count >= self.exact_threshold:
            await self._build_graph(state)
        else:
            remove_graph(self._path(ns))
        return state

    def _snapshot_fits(self, sidecar: dict[str, object], ns: NamespaceRef, version: int) -> bool:
        watermark = sidecar.get("watermark")
        return (isinstance(watermark, int) and 0 <= watermark <= version
                and sidecar.get("dimension") == ns.dimension and sidecar.get("metric") == ns.metric
                and sidecar.get("dtype") == self.params.dtype)
