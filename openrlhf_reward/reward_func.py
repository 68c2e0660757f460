"""``reward_func`` for OpenRLHF's ``--reward.remote_url path/to/reward_func.py`` (no server).

OpenRLHF 0.11.2 loads this file with ``importlib.util.spec_from_file_location`` and calls
``reward_func(queries, prompts, labels)`` from worker threads, one sample per call. This
file reads the request exactly as the reward server does (:mod:`openrlhf_reward.protocol`),
builds the backend once (lazily, thread-safe) and batches concurrent calls with the
server's batcher, so concurrent samples share model forward passes.

Configure it with environment variables, read at the first call:

* ``OPENRLHF_REWARD_CONFIG=/path/reward.yaml``: the same config file as
  ``openrlhf-reward serve --config`` (its ``server`` section sets batching and parsing);
* or ``OPENRLHF_REWARD_BACKEND=rules`` (+ ``OPENRLHF_REWARD_MODEL=PATH``,
  ``OPENRLHF_REWARD_BACKEND_ARGS='{"key": value}'``).

``openrlhf-reward reward-func-path --config reward.yaml --output my_reward.py`` writes a
wrapper with the config built in (Ray workers may not see your shell's variables).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

try:  # loaded by path: make the package importable even when it is not installed
    import openrlhf_reward  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the file is deployed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openrlhf_reward.protocol import (
    ProtocolOptions,
    RequestError,
    build_response,
    parse_reward_request,
)
from openrlhf_reward.server.batcher import DynamicBatcher
from openrlhf_reward.server.config import (
    RewardServiceConfig,
    build_scorer,
    resolve_config,
    resolve_config_from_env,
)

_lock = threading.Lock()
_service: _Service | None = None
_explicit: dict[str, Any] | None = None


class _Service:
    def __init__(self, cfg: RewardServiceConfig) -> None:
        self.config = cfg
        self.scorer = build_scorer(cfg.backend, cfg.backend_args)
        s = cfg.server
        self.options: ProtocolOptions = s.protocol_options(cfg.backend, self.scorer)
        self.timeout = s.request_timeout_s
        self.batcher: DynamicBatcher = DynamicBatcher(
            self.scorer.score,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.effective_max_wait_ms(cfg.backend),
            length_fn=lambda r: len(r.prompt) + len(r.response),
            length_aware=s.length_aware,
            isolate_failures=s.isolate_failures,
            name="reward-func-batcher",
        )

    def close(self) -> None:
        self.batcher.close()
        self.scorer.close()


def configure(
    config: str | None = None,
    *,
    backend: str | None = None,
    model: str | None = None,
    backend_args: dict[str, Any] | None = None,
) -> None:
    """Bind this file to a config file or backend instead of environment variables.

    Must be called before the first ``reward_func`` call (or after :func:`reset`).
    """
    global _explicit
    with _lock:
        if _service is not None:
            raise RuntimeError("reward_func is already initialised; call reset() first")
        _explicit = {"config_file": config, "backend": backend, "model": model,
                     "backend_args": dict(backend_args or {})}


def reset() -> None:
    """Release the backend (tests, or to reconfigure)."""
    global _service, _explicit
    with _lock:
        if _service is not None:
            _service.close()
        _service = None
        _explicit = None


def _get_service() -> _Service:
    global _service
    svc = _service
    if svc is not None:
        return svc
    with _lock:
        if _service is None:
            cfg = resolve_config(**_explicit) if _explicit is not None else resolve_config_from_env()
            _service = _Service(cfg)
        return _service


def reward_func(queries: list[str], prompts: list[str], labels: list[Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Rewards for OpenRLHF: ``{"rewards": tensor, "scores": tensor, "extra_logs": {str: float}}``.

    ``queries`` are prompt + response decoded with special tokens, ``prompts`` the templated
    prompts, ``labels`` the dataset's ``--data.label_key`` values (requirements). Bad input
    raises ``ValueError`` naming the field; a backend error propagates.
    """
    svc = _get_service()
    body = {
        "query": list(queries),
        "prompts": list(prompts),
        "labels": None if labels is None else list(labels),
    }
    try:
        parsed = parse_reward_request(body, svc.options)
    except RequestError as e:
        raise ValueError(f"reward_func: {e.message}") from None
    results = svc.batcher.score(parsed.items, timeout=svc.timeout) if parsed.items else []
    resp = build_response(results, items=parsed.items, recovery=parsed.recovery)
    try:
        import torch
    except ImportError:  # pragma: no cover - OpenRLHF always has torch
        return resp
    return {
        "rewards": torch.tensor(resp["rewards"], dtype=torch.float32),
        "scores": torch.tensor(resp["scores"], dtype=torch.float32),
        "extra_logs": resp["extra_logs"],
    }
