"""Run the real reward server (uvicorn) on a free loopback port, in a thread or a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from openrlhf_reward.scorers import ScoreResult
from openrlhf_reward.scorers.base import Scorer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """``create_app(scorer, config)`` served by uvicorn in a background thread."""

    def __init__(self, scorer, backend: str = "rules", **server_settings) -> None:
        import uvicorn

        from openrlhf_reward.server.app import create_app
        from openrlhf_reward.server.config import ServerConfig

        self.port = free_port()
        self.config = ServerConfig(port=self.port, **server_settings)
        self.app = create_app(scorer, self.config, backend)
        from openrlhf_reward.server.http_protocol import uvicorn_config

        self.server = uvicorn.Server(uvicorn_config(self.app, self.config, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("reward server thread did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0,
                 headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        try:
            r = httpx.get(url, headers=headers, timeout=2)
            if r.status_code in (200, 401, 404, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not up after {timeout} s")


def start_cli_server(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m openrlhf_reward.cli serve ARGS`` from the repository root."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "openrlhf_reward.cli", "serve", *args],
        cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


# --------------------------------------------------------------------------- backend doubles


class GateScorer(Scorer):
    """Test double: blocks in ``score`` until ``release`` is set (a genuinely slow backend)."""

    name = "gate"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def score(self, batch):
        self.entered.set()
        assert self.release.wait(120), "test never released the backend"
        return [ScoreResult(1.0) for _ in batch]


class SwitchScorer(Scorer):
    """Test double: raises ``error`` while set, else reward 1; counts calls and batch sizes."""

    name = "switch"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[int] = []

    def score(self, batch):
        self.calls.append(len(batch))
        if self.error is not None:
            raise self.error
        return [ScoreResult(1.0) for _ in batch]
