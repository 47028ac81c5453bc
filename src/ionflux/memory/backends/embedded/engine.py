"""One namespace's vectors in memory: exact numpy search, and a usearch HNSW graph once it is large.

Rows live in a float32 matrix (the exact copy: fetches, exact search, and re-scoring of HNSW candidates);
the HNSW graph (bf16 by default: half the memory, 2.5x faster inserts, and the re-scoring keeps scores
exact) only proposes candidates. Exact search answers when the namespace is below `exact_threshold`, for
selective filters, while the graph is being changed (so a reader never sees a half-applied write), and
whenever the graph returns too few filtered candidates. Not thread-safe: the backend serialises writes
per namespace and runs graph mutations off the event loop with `graph_busy` set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from ionflux.memory.backends.embedded.columns import ColumnCache
from ionflux.memory.filters import Node
from ionflux.memory.interface import Metadata, Metric

_USEARCH_METRIC = {"cosine": "cos", "dotproduct": "ip", "euclidean": "l2sq"}


@dataclass(frozen=True)
class GraphParams:
    dtype: str = "bf16"
    connectivity: int = 16
    expansion_add: int = 64
    expansion_search: int = 64
    threads: int = 0  # 0: all cores
    # usearch's concurrent inserts into a small graph can leave nodes unreachable (measured with 2 threads:
    # 127 of 20,000 self-queries missed at 200 nodes, 0 when built serially); below this size it adds serially.
    serial_below: int = 4096


class NamespaceIndex:
    def __init__(self, dimension: int, metric: Metric, *, exact_threshold: int, params: GraphParams) -> None:
        self.dimension = dimension
        self.metric = metric
        self.exact_threshold = exact_threshold
        self.params = params
        self._vecs = np.empty((16, dimension), dtype=np.float32)
        self._sqnorms = np.empty(16, dtype=np.float32)
        self.labels = np.empty(16, dtype=np.int64)
        self.ids: list[str] = []
        self.meta: list[Metadata] = []
        self.pos: dict[str, int] = {}
        self.label_pos: dict[int, int] = {}
        self.graph: Index | None = None
        self.graph_busy = False
        self.graph_removals = 0  # usearch keeps removed nodes' slots: a graph with many is rebuilt
        self.columns = ColumnCache()

    @property
    def count(self) -> int:
        return len(self.ids)

    # -- rows ---------------------------------------------------------------------------------------
    def put(self, rows: Sequence[tuple[int, str, np.ndarray, Metadata]]) -> None:
        """Insert or overwrite rows (label, id, vector, metadata); an id keeps its row and label."""
        self.columns.invalidate()
        self._reserve(self.count + len(rows))
        for label, vid, vec, md in rows:
            row = self.pos.get(vid)
            if row is None:
                row = len(self.ids)
                self.ids.append(vid)
                self.meta.append(md)
                self.pos[vid] = row
            else:
                self.meta[row] = md
                self.label_pos.pop(int(self.labels[row]), None)
            self._vecs[row] = vec
            self._sqnorms[row] = float(np.dot(vec, vec))
            self.labels[row] = label
            self.label_pos[label] = row

    def remove(self, ids: Sequence[str]) -> list[int]:
        """Drop rows by id (swap-remove); returns the labels that went."""
        self.columns.invalidate()
        gone: list[int] = []
        for vid in ids:
            row = self.pos.pop(vid, None)
            if row is None:
                continue
            label = int(self.labels[row])
            gone.append(label)
            del self.label_pos[label]
            last = len(self.ids) - 1
            if row != last:
                moved = self.ids[last]
                self.ids[row], self.meta[row] = moved, self.meta[last]
                self._vecs[row], self._sqnorms[row] = self._vecs[last], self._sqnorms[last]
                self.labels[row] = self.labels[last]
                self.pos[moved] = row
                self.label_pos[int(self.labels[row])] = row
            self.ids.pop()
            self.meta.pop()
        return gone

    def vector(self, vid: str) -> np.ndarray | None:
        row = self.pos.get(vid)
        return None if row is None else self._vecs[row].copy()

    def vectors_for_labels(self, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, vectors) of those labels still present."""
        kept = [lb for lb in labels if lb in self.label_pos]
        rows = [self.label_pos[lb] for lb in kept]
        return np.asarray(kept, dtype=np.int64), self._vecs[rows]

    def _reserve(self, size: int) -> None:
        capacity = len(self._vecs)
        if size <= capacity:
            return
        new = max(size, capacity * 2)
        vecs = np.empty((new, self.dimension), dtype=np.float32)
        vecs[:capacity] = self._vecs
        sq = np.empty(new, dtype=np.float32)
        sq[:capacity] = self._sqnorms
        labels = np.empty(new, dtype=np.int64)
        labels[:capacity] = self.labels
        self._vecs, self._sqnorms, self.labels = vecs, sq, labels

    # -- search -------------------------------------------------------------------------------------
    def matching_rows(self, flt: Node) -> np.ndarray:
        return np.flatnonzero(self.columns.mask(flt, self.meta))

    def search(self, query: np.ndarray, k: int, flt: Node | None) -> list[tuple[int, float]]:
        """Top-k (row, score) pairs, best first; scores are computed exactly from the float32 rows."""
        n = self.count
        if n == 0:
            return []
        rows: np.ndarray | None = None
        if flt is not None:
            rows = self.matching_rows(flt)
            if rows.size == 0:
                return []
        use_graph = (self.graph is not None and not self.graph_busy and n >= self.exact_threshold
                     and (rows is None or (rows.size > self.exact_threshold and rows.size * 10 >= n)))
        if use_graph:
            found = self._graph_candidates(query, k, n, rows)
            if found is not None:
                return self._rank(query, found, k)
        return self._rank(query, rows, k)

    def _graph_candidates(self, query: np.ndarray, k: int, n: int, rows: np.ndarray | None) -> np.ndarray | None:
        assert self.graph is not None
        wanted = min(n, 2 * k + 10 if rows is None else int(2 * k * n / rows.size) + 10)
        matches = self.graph.search(query, wanted)
        found = np.fromiter((self.label_pos.get(int(lb), -1) for lb in matches.keys), dtype=np.int64)
        found = found[found >= 0]
        if rows is not None:
            found = found[np.isin(found, rows)]
        return found if found.size >= min(k, n if rows is None else rows.size) else None

    def _rank(self, query: np.ndarray, rows: np.ndarray | None, k: int) -> list[tuple[int, float]]:
        """Exact top-k among `rows` (None: all rows)."""
        scores = self._scores(query, rows, exact=False)
        keep = min(k, scores.size)
        order = np.argpartition(-scores if self.metric != "euclidean" else scores, keep - 1)[:keep]
        best = order if rows is None else rows[order]
        final = self._scores(query, best, exact=True)
        ranking = np.argsort(-final if self.metric != "euclidean" else final, kind="stable")
        return [(int(best[i]), float(final[i])) for i in ranking]

    def _scores(self, query: np.ndarray, rows: np.ndarray | None, *, exact: bool) -> np.ndarray:
        vecs = self._vecs[: self.count] if rows is None else self._vecs[rows]
        if exact:
            vecs64, q64 = vecs.astype(np.float64), query.astype(np.float64)
            if self.metric == "euclidean":
                return np.asarray(((vecs64 - q64) ** 2).sum(axis=1))
            dots = vecs64 @ q64
            if self.metric == "cosine":
                norms = np.linalg.norm(vecs64, axis=1) * np.linalg.norm(q64)
                return np.asarray(np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0))
            return np.asarray(dots)
        dots32 = vecs @ query
        sq = self._sqnorms[: self.count] if rows is None else self._sqnorms[rows]
        if self.metric == "euclidean":
            return np.asarray(sq - 2 * dots32 + float(np.dot(query, query)))
        if self.metric == "cosine":
            norms = np.sqrt(sq) * float(np.linalg.norm(query))
            return np.asarray(np.divide(dots32, norms, out=np.zeros_like(dots32), where=norms > 0))
        return np.asarray(dots32)

    # -- graph (call from a worker thread, with graph_busy set) --------------------------------------
    def new_graph(self) -> Index:
        p = self.params
        return Index(ndim=self.dimension, metric=_USEARCH_METRIC[self.metric], dtype=p.dtype,
                     connectivity=p.connectivity, expansion_add=p.expansion_add,
                     expansion_search=p.expansion_search)

    @property
    def graph_worn(self) -> bool:
        return self.graph is not None and self.graph_removals > max(1000, self.count // 2)

    def build_graph(self) -> Index:
        graph = self.new_graph()
        if self.count:
            self._graph_add(graph, self.labels[: self.count].copy(), self._vecs[: self.count].copy())
        return graph

    def _graph_add(self, graph: Index, labels: np.ndarray, vectors: np.ndarray) -> None:
        serial = max(0, min(len(labels), self.params.serial_below - len(graph)))
        if serial:
            graph.add(labels[:serial], vectors[:serial], threads=1)
        if serial < len(labels):
            graph.add(labels[serial:], vectors[serial:], threads=self.params.threads)

    def graph_apply(self, removed: Sequence[int], labels: np.ndarray, vectors: np.ndarray) -> None:
        """Remove `removed` labels, then (re)insert `labels` with `vectors`."""
        graph = self.graph
        assert graph is not None
        stale = [lb for lb in list(removed) + [int(x) for x in labels] if graph.contains(lb)]
        if stale:
            graph.remove(stale)
            self.graph_removals += len(stale)
        if len(labels):
            self._graph_add(graph, labels, vectors)


def save_graph(graph: Index, path: Path, sidecar: dict[str, Any]) -> None:
    """Write the graph and then its sidecar, each atomically (tmp + fsync + rename): after a crash the
    sidecar's watermark is never ahead of the graph file, so catching up from it is always enough."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".usearch.tmp")
    graph.save(str(tmp))
    _fsync(tmp)
    os.replace(tmp, path)
    meta_path = path.with_suffix(".json")
    meta_tmp = path.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(sidecar))
    _fsync(meta_tmp)
    os.replace(meta_tmp, meta_path)


def load_graph(path: Path) -> tuple[Index, dict[str, Any]] | None:
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    try:
        sidecar = json.loads(meta_path.read_text())
        graph = Index.restore(str(path))
    except (OSError, ValueError, RuntimeError):
        return None
    if graph is None:
        return None
    return graph, sidecar


def remove_graph(path: Path) -> None:
    for p in (path, path.with_suffix(".json"), path.with_suffix(".usearch.tmp"), path.with_suffix(".json.tmp")):
        p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
