"""`ionflux sandbox` starts the simulators on loopback and says where they are."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from .server import free_port


def test_sandbox_command_serves_the_oauth_simulator(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ionflux.cli", "sandbox", "--only", "oauth",
                             "--port-base", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/oauth/authorize",
                                   params={"client_id": "nobody"}, timeout=2).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert status == 400  # a strict provider refuses an unknown client
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_sandbox_command_rejects_unknown_simulators(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ionflux.cli", "sandbox", "--only", "nope"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "nope" in out.stderr
