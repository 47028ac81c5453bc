"""Embedded vector memory at 100,000 x 384: insert rate, top-10 latency, recall@10, memory.

    .venv/bin/python bench/memory.py [--n 100000] [--dim 384] [--queries 1000]

Two data sets, generated here (seeded): `random` (i.i.d. unit vectors: the worst case for any graph
index, with no neighbourhood structure) and `clustered` (1,000 unit centroids plus Gaussian noise, then
normalised: the structure sentence embeddings have, where nearest neighbours are meaningful). Vectors go
through the real `EmbeddedBackend` (SQLite rows + in-memory index + usearch HNSW) in 1,000-vector
upserts; queries are held-out points of the same distribution, through `EmbeddedBackend.query`. The
baseline, measured in the same run, is exact numpy brute force over the same float32 matrix, which is
also the ground truth for recall@10.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ionflux.core.db import Database
from ionflux.memory.backends.base import NamespaceRef, Upsert
from ionflux.memory.backends.embedded.backend import EmbeddedBackend
from ionflux.memory.models import MemoryNamespace
from ionflux.memory.templates import physical_name


def random_set(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_set(rng: np.random.Generator, n: int, dim: int, clusters: int = 1000, noise: float = 0.35) -> np.ndarray:
    centres = random_set(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(name: str, data: np.ndarray, queries: np.ndarray, workdir: Path) -> None:
    n, dim = data.shape
    db = Database(f"sqlite+aiosqlite:///{workdir / f'{name}.db'}")
    db.upgrade()
    ref = NamespaceRef("bench", "bench", physical_name("bench", name), dim, "cosine")
    async with db.tenant("bench") as s:
        s.add(MemoryNamespace(name="bench", physical=ref.physical, dimension=dim, metric="cosine", backend="embedded"))
    backend = EmbeddedBackend(db, workdir / f"{name}-graphs")
    await backend.start()
    rss_before = rss_mb()
    started = time.perf_counter()
    for start in range(0, n, 1000):
        batch = [Upsert(id=f"v{i}", values=data[i], metadata={"group": int(i % 100)})
                 for i in range(start, min(n, start + 1000))]
        await backend.upsert(ref, batch)
    insert_seconds = time.perf_counter() - started
    rss_grown = rss_mb() - rss_before
    state = backend._loaded[ref.physical]
    graph = state.index.graph
    assert graph is not None and graph.size == n

    sims = queries @ data.T
    truth = np.argpartition(-sims, 10, axis=1)[:, :10]  # the exact top-10 sets
    del sims
    exact_lat = []
    for q in queries[:200]:
        t = time.perf_counter()
        scores = data @ q
        np.argpartition(-scores, 10)[:10]
        exact_lat.append(time.perf_counter() - t)
    lat, hits = [], 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found = await backend.query(ref, q, 10, None, False, False)
        lat.append(time.perf_counter() - t)
        hits += len({int(m.id[1:]) for m in found} & set(truth[i].tolist()))
    from ionflux.memory.filters import parse_filter

    selective = parse_filter({"group": {"$lt": 10}})  # 10% of the records
    filtered_lat = []
    for q in queries[:100]:
        t = time.perf_counter()
        await backend.query(ref, q, 10, selective, False, False)
        filtered_lat.append(time.perf_counter() - t)

    t = time.perf_counter()
    rebuilt = state.index.build_graph()
    build_seconds = time.perf_counter() - t
    del rebuilt
    await backend.stop()
    t = time.perf_counter()
    restarted = EmbeddedBackend(db, workdir / f"{name}-graphs")
    await restarted.start()
    await restarted.query(ref, queries[0], 10, None, False, False)  # loads rows and the graph file
    reload_seconds = time.perf_counter() - t
    await restarted.stop()
    await db.dispose()

    p50, p95, p99 = (np.percentile(lat, p) * 1e3 for p in (50, 95, 99))
    exact_p50 = np.percentile(exact_lat, 50) * 1e3
    print(f"\n== {name}: {n:,} x {dim}, {len(queries)} queries, top-10, cosine")
    print(f"insert through EmbeddedBackend (SQLite + HNSW), 1,000/upsert: {n / insert_seconds:,.0f} vectors/s "
          f"({insert_seconds:.1f} s)")
    print(f"HNSW bulk build alone (usearch {graph.dtype}, M={graph.connectivity}, ef_add={graph.expansion_add}): "
          f"{n / build_seconds:,.0f} vectors/s")
    print(f"query HNSW + exact re-score: p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms, "
          f"recall@10 {hits / (10 * len(queries)):.4f}")
    print(f"baseline exact numpy brute force: p50 {exact_p50:.3f} ms  -> HNSW is {exact_p50 / p50:.1f}x faster")
    print(f"filtered query (10% match, exact over the matches): p50 {np.percentile(filtered_lat, 50) * 1e3:.2f} ms, "
          f"p99 {np.percentile(filtered_lat, 99) * 1e3:.2f} ms")
    print(f"memory: graph {graph.memory_usage / 1e6:.0f} MB, float32 rows {data.nbytes / 1e6:.0f} MB, "
          f"process RSS +{rss_grown:.0f} MB after inserting; restart (rows from SQLite + graph file): "
          f"{reload_seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    workdir = Path(tempfile.mkdtemp(prefix="ionflux-bench-memory-"))
    try:
        for name, make in (("clustered", clustered_set), ("random", random_set)):
            both = make(rng, args.n + args.queries, args.dim)
            asyncio.run(run(name, both[: args.n], both[args.n:], workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
