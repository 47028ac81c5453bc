"""The LLM gateway's overhead: chat completions against one local OpenAI simulator, (a) directly, (b) through
`ionflux serve --only llm` (auth, key resolution from the vault, limits, usage accounting all on), (c) through
a bare aiohttp pass-through and (d) through a LiteLLM proxy when a venv with it is given — in the same run.

    .venv/bin/python bench/llm_gateway.py                                   # direct, IONFLUX, aiohttp pass-through
    .venv/bin/python bench/llm_gateway.py --peer-venv /tmp/litellm-venv     # + LiteLLM
      (make the peer venv with: python3 -m venv /tmp/litellm-venv &&
       /tmp/litellm-venv/bin/pip install 'litellm[proxy]' opentelemetry-sdk)

Every server runs in its own process (uvloop + httptools where it can); the load comes from
bench/llm_loadgen.py in another process. Prints p50/p99 latency, throughput and each server's CPU ms per
request (from /proc), the added latency over direct calls, and IONFLUX's ratios to LiteLLM.
Targets: 1 client: added p50 <= 1.5 ms; CPU <= 2 ms/request (>= 10x less than LiteLLM);
50 clients: throughput >= 0.5 x the bare pass-through's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from proc_cpu import cpu_seconds  # bench/ is the script's directory

HERE = Path(__file__).resolve().parent
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello to the benchmark."}], "max_tokens": 32}
SIM = """
import uvicorn
from ionflux.sandbox.openai import OpenAISimulator
uvicorn.run(OpenAISimulator().app, host="127.0.0.1", port={port}, http="httptools", loop="uvloop",
            log_level="warning", access_log=False)
"""
PASSTHROUGH = """
import aiohttp
from aiohttp import web
UP = "{upstream}/v1/chat/completions"
async def handler(request):
    body = await request.read()
    async with request.app["s"].post(UP, data=body, headers={{"Authorization": "Bearer sk-bench",
                                                            "Content-Type": "application/json"}}) as r:
        return web.Response(body=await r.read(), status=r.status, content_type="application/json")
async def init():
    app = web.Application()
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    app.router.add_post("/v1/chat/completions", handler)
    return app
web.run_app(init(), host="127.0.0.1", port={port}, access_log=None, print=None)
"""
LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream}/v1
      api_key: sk-bench
general_settings:
  master_key: sk-litellm-bench
litellm_settings:
  telemetry: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout}s")


@dataclass
class Result:
    p50: float
    p99: float
    rps: float
    cpu_ms: float
    errors: int


@dataclass
class Target:
    name: str
    url: str
    token: str
    proc: subprocess.Popen[bytes] | None
    body: dict[str, object]


def load(target: Target, concurrency: int, requests: int, body_file: Path) -> Result:
    body_file.write_text(json.dumps(target.body))
    before = cpu_seconds(target.proc.pid) if target.proc else 0.0
    out = subprocess.run([sys.executable, str(HERE / "llm_loadgen.py"), target.url, target.token, str(concurrency),
                          str(requests), str(body_file)], capture_output=True, text=True, check=True).stdout
    cpu = (cpu_seconds(target.proc.pid) - before) if target.proc else 0.0
    data = json.loads(out)
    lat = sorted(data["latencies"])
    return Result(p50=statistics.median(lat) * 1000, p99=lat[int(len(lat) * 0.99) - 1] * 1000,
                  rps=len(lat) / data["seconds"], cpu_ms=cpu / len(lat) * 1000, errors=data["errors"])


def median_run(runs: list[Result]) -> Result:
    """The run with the median throughput (its latencies and CPU come with it)."""
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def start(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-venv", default="", help="a venv with litellm[proxy]")
    parser.add_argument("--clients", default="1,50,200")
    parser.add_argument("--requests", type=int, default=2000, help="per run (x5 at concurrency >= 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (interleaved); the median is shown")
    parser.add_argument("--log-level", default="WARNING", help="IONFLUX_LOG_LEVEL of the gateway under test")
    parser.add_argument("--serve-script", default="", help="run this Python file instead of `-m ionflux.cli` "
                        "(same arguments), to measure a variant of the server")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sim_port = free_port()
        procs.append(sim := start([sys.executable, "-c", SIM.format(port=sim_port)]))
        upstream = f"http://127.0.0.1:{sim_port}"
        wait_up(upstream + "/v1/models", sim)
        targets = [Target("direct", upstream + "/v1/chat/completions", "sk-bench", sim, BODY)]

        env = {"IONFLUX_DATA_DIR": str(work / "data"), "IONFLUX_OPENAI_BASE_URL": upstream + "/v1",
               "IONFLUX_OPENAI_API_KEY": "sk-bench", "IONFLUX_LOG_LEVEL": args.log_level,
               "IONFLUX_LLM_PRICES": json.dumps({"openai:gpt-4o": {"input": 2.5, "output": 10}})}
        created = subprocess.run([sys.executable, "-m", "ionflux.cli", "workspace", "create", "bench"],
                                 env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        token = next(line.split()[-1] for line in created.splitlines() if line.startswith("token:"))
        port = free_port()
        entry = [args.serve_script] if args.serve_script else ["-m", "ionflux.cli"]
        procs.append(ifx := start([sys.executable, *entry, "serve", "--only", "llm", "--port", str(port)], env))
        wait_up(f"http://127.0.0.1:{port}/healthz", ifx)
        targets.append(Target("ionflux", f"http://127.0.0.1:{port}/v1/chat/completions", token, ifx,
                              {**BODY, "model": "openai:gpt-4o"}))

        port = free_port()
        procs.append(bare := start([sys.executable, "-c", PASSTHROUGH.format(upstream=upstream, port=port)]))
        wait_up(f"http://127.0.0.1:{port}/", bare)
        targets.append(Target("aiohttp-pass", f"http://127.0.0.1:{port}/v1/chat/completions", "-", bare, BODY))
        if args.peer_venv:
            (work / "litellm.yaml").write_text(LITELLM_CONFIG.format(upstream=upstream))
            port = free_port()
            procs.append(lite := start([str(Path(args.peer_venv) / "bin" / "litellm"), "--config",
                                        str(work / "litellm.yaml"), "--port", str(port), "--num_workers", "1"],
                                       {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, str(work)))
            wait_up(f"http://127.0.0.1:{port}/health/liveliness", lite, timeout=120)
            targets.append(Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", "sk-litellm-bench",
                                  lite, BODY))

        results: dict[tuple[str, int], Result] = {}
        body_file = work / "body.json"
        for concurrency in [int(c) for c in args.clients.split(",")]:
            n = args.requests * (5 if concurrency >= 50 else 1)
            runs: dict[str, list[Result]] = {t.name: [] for t in targets}
            for target in targets:
                load(target, concurrency, min(n, 500), body_file)  # warm-up
            for _ in range(args.repeat):  # interleaved, so a noisy moment does not land on one target only
                for target in targets:
                    runs[target.name].append(load(target, concurrency, n, body_file))
            for target in targets:
                results[(target.name, concurrency)] = r = median_run(runs[target.name])
                print(f"{target.name:13} c={concurrency:<4} p50 {r.p50:7.2f} ms  p99 {r.p99:7.2f} ms  "
                      f"{r.rps:8.0f} req/s  server CPU {r.cpu_ms:6.2f} ms/req  errors {r.errors}"
                      + (f"  (median of {args.repeat}: {' '.join(f'{x.rps:.0f}' for x in runs[target.name])} req/s)"
                         if args.repeat > 1 else ""), flush=True)
        print()
        for concurrency in [int(c) for c in args.clients.split(",")]:
            direct = results[("direct", concurrency)]
            for name in ("ionflux", "aiohttp-pass", "litellm"):
                r = results.get((name, concurrency))
                if r is None:
                    continue
                print(f"c={concurrency:<4} {name:13} added p50 {r.p50 - direct.p50:6.2f} ms, added p99 "
                      f"{r.p99 - direct.p99:7.2f} ms, CPU {r.cpu_ms:5.2f} ms/req, {r.rps / direct.rps:4.2f}x direct's "
                      "throughput")
            ifx, lite, bare = (results.get((n, concurrency)) for n in ("ionflux", "litellm", "aiohttp-pass"))
            if ifx and lite:
                added = (lite.p50 - direct.p50) / max(ifx.p50 - direct.p50, 1e-3)
                cpu = lite.cpu_ms / max(ifx.cpu_ms, 1e-3)
                print(f"c={concurrency:<4} IONFLUX vs LiteLLM: added p50 {added:.1f}x less, CPU/request {cpu:.1f}x "
                      "less, throughput "
                      f"{ifx.rps / lite.rps:.2f}x")
            if ifx and bare:
                print(f"c={concurrency:<4} IONFLUX throughput = {ifx.rps / bare.rps:.2f}x the bare aiohttp "
                      "pass-through's")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
