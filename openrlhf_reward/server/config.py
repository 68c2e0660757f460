"""Reward service configuration: which backend, its arguments, and the server settings.

One config file (YAML or JSON) drives both the server and the ``reward_func`` file::

    backend: bt
    backend_args: {model: /ckpt/rm, normalize: true}
    server: {port: 5000, max_batch_size: 64, max_wait_ms: 5}

Command-line flags override the file. Pure Python (PyYAML only when a YAML file is read).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.config import (
    API_KEY_ENV,
    add_dataclass_flags,
    coerce_fields,
    parse_key_value,
    values_from_args,
)
from openrlhf_reward.protocol import ProtocolOptions

CONFIG_ENV = "OPENRLHF_REWARD_CONFIG"
BACKEND_ENV = "OPENRLHF_REWARD_BACKEND"
BACKEND_ARGS_ENV = "OPENRLHF_REWARD_BACKEND_ARGS"
MODEL_ENV = "OPENRLHF_REWARD_MODEL"

# Backends whose cost is per sample (no gain from waiting for a fuller batch).
_PER_SAMPLE_BACKENDS = frozenset({"rules"})
# Field names a backend may use for its checkpoint path (``--model`` maps to the first found).
_MODEL_FIELD_NAMES = ("model", "pretrained", "model_name_or_path", "model_path", "path")


class ConfigError(ValueError):
    """A config file or flag that cannot be used; the message names it."""


@dataclass
class ServerConfig:
    """Settings of ``openrlhf-reward serve`` (the ``server`` section of a config file)."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (loopback by default; use 0.0.0.0 for other machines, with an API key)"})
    port: int = field(default=5000, metadata={"help": "TCP port"})
    reuse_port: bool = field(default=False, metadata={"help": "share the port with another server (SO_REUSEPORT, Linux): to restart without refusing a connection, start the new server first, then SIGTERM the old one"})
    api_key: str | None = field(default=None, metadata={"help": f"bearer token required on every request (default: ${API_KEY_ENV}; none = no auth)"})
    max_batch_size: int = field(default=64, metadata={"help": "most samples per backend call"})
    max_wait_ms: float | None = field(default=None, metadata={"help": "how long the oldest waiting sample may wait for a batch to fill (default: 0 for rules, whose cost is per sample; 5 for model backends)"})
    length_aware: bool = field(default=True, metadata={"help": "group samples of similar length into the same batch"})
    max_body_bytes: int = field(default=8 * 1024 * 1024, metadata={"help": "largest request body accepted (413 above)"})
    max_items_per_request: int = field(default=4096, metadata={"help": "most samples one request may carry (413 above)"})
    request_timeout_s: float = field(default=170.0, metadata={"help": "answer 503 if a request is not answered within this many seconds, waiting included (OpenRLHF's client gives up a try at 180 s)"})
    ride_through_s: float = field(default=150.0, metadata={"help": "hold a request up to this many seconds while the backend is unreachable or all --max-in-flight slots are busy, and answer it when it is back (503 + Retry-After past it; 0 = answer 503 at once). A backend failing for longer is declared down: new requests get 503 at once until a probe succeeds"})
    isolate_failures: bool = field(default=True, metadata={"help": "when a batch fails, retry its samples one by one so one bad sample fails only its own request"})
    require_requirements: bool | None = field(default=None, metadata={"help": "refuse labels without requirements (default: yes, except for holistic backends such as bt)"})
    end_markers: list[str] = field(default_factory=list, metadata={"help": "extra end-of-turn markers to strip from responses (besides </s>, <|im_end|>, <|eot_id|>, ...)"})
    strip_think: bool = field(default=True, metadata={"help": "drop every <think>...</think> block (nested or unfinished ones too) from responses before scoring"})
    log_requests: bool = field(default=False, metadata={"help": "log request content and rewards (off: logs never contain prompts or responses)"})
    access_log: bool = field(default=False, metadata={"help": "uvicorn access log (method, path, status)"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    metrics_window: int = field(default=10000, metadata={"help": "requests/batches kept for latency and batch-size percentiles"})
    max_in_flight: int = field(default=256, metadata={"help": "most /get_reward requests handled at once; more wait for a slot (up to --ride-through-s) before their body is read, so memory stays within max_body_bytes x max_in_flight"})
    read_timeout_s: float = field(default=30.0, metadata={"help": "a client must send its whole request body within this many seconds (408 otherwise)"})
    breaker_threshold: int = field(default=3, metadata={"help": "consecutive failed backend calls that open the circuit breaker (503 + Retry-After at once during the cool-down)"})
    breaker_cooldown_s: float = field(default=2.0, metadata={"help": "first cool-down of the open circuit breaker (only probes reach the backend while it is open); doubles after each failed probe, up to --breaker-max-cooldown-s"})
    breaker_max_cooldown_s: float = field(default=10.0, metadata={"help": "longest wait between two probes of a failing backend (also how late a held request may learn that the backend is back)"})
    degraded_after_s: float = field(default=30.0, metadata={"help": "/health says 'degraded' while one backend call has been running longer than this"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "server") -> ServerConfig:
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            key_norm = str(key).replace("-", "_")
            if key_norm not in names:
                raise ConfigError(
                    f"{where}: unknown setting {key!r} (known: {', '.join(sorted(names))})"
                )
            kwargs[key_norm] = value
        return cls(**coerce_fields(cls, kwargs, where, strict=True, error=ConfigError))

    def __post_init__(self) -> None:
        self.validate()  # once, however the config was made (file, flags, or code)

    def validate(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms is not None and self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ConfigError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port must be in 0..65535, got {self.port}")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.breaker_threshold < 1:
            raise ConfigError(f"breaker_threshold must be >= 1, got {self.breaker_threshold}")
        for name in ("read_timeout_s", "request_timeout_s", "breaker_cooldown_s", "breaker_max_cooldown_s",
                     "degraded_after_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.ride_through_s >= 0:
            raise ConfigError(f"ride_through_s must be >= 0, got {self.ride_through_s}")
        if self.api_key is not None and not self.api_key.strip():  # an empty key is an error, not "no auth"
            raise ConfigError("api_key is empty: give a non-empty key, or leave it out to run without auth")

    @property
    def graceful_shutdown_s(self) -> float:
        """How long a stopping server keeps answering what it admitted or holds: the longest a
        request may take, plus a margin to write the answers."""
        return self.request_timeout_s + 5.0

    def effective_max_wait_ms(self, backend: str) -> float:
        if self.max_wait_ms is not None:
            return float(self.max_wait_ms)
        return 0.0 if backend in _PER_SAMPLE_BACKENDS else 5.0

    def resolved_api_key(self) -> str | None:
        """The key from ``api_key`` (checked by :meth:`validate`) or ``$OPENRLHF_REWARD_API_KEY``;
        an empty variable is refused (it would otherwise silently turn authentication off)."""
        if self.api_key is not None:
            return self.api_key
        env = os.environ.get(API_KEY_ENV)
        if env is not None and not env.strip():
            raise ConfigError(f"${API_KEY_ENV} is set but empty: give a non-empty key, or unset it to run without auth")
        return env or None

    def make_batcher(self, scorer: Any, backend: str, **extra: Any) -> Any:
        """The dynamic batcher in front of ``scorer.score``, configured from these settings (one
        wiring for the HTTP server and the ``reward_func`` file); ``extra`` adds hooks."""
        from openrlhf_reward.server.batcher import DynamicBatcher
        from openrlhf_reward.server.breaker import CircuitBreaker

        breaker = CircuitBreaker(self.breaker_threshold, self.breaker_cooldown_s, self.breaker_max_cooldown_s,
                                 down_after_s=self.ride_through_s or None)
        return DynamicBatcher(
            scorer.score,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.effective_max_wait_ms(backend),
            # Characters are a good enough proxy for tokens to group similar lengths.
            length_fn=lambda r: len(r.prompt) + len(r.response),
            length_aware=self.length_aware,
            isolate_failures=self.isolate_failures,
            breaker=breaker,
            ride_through_s=self.ride_through_s,
            **extra,
        )

    def protocol_options(self, backend: str, scorer: Any = None) -> ProtocolOptions:
        need = self.require_requirements
        if need is None:  # the backend declares it (Scorer.needs_requirements; None = the default, yes)
            declared = getattr(scorer if scorer is not None else resolve_backend_class(backend), "needs_requirements", None)
            need = True if declared is None else bool(declared)
        return ProtocolOptions(
            end_markers=tuple(self.end_markers),
            strip_think=self.strip_think,
            require_requirements=need,
            max_items_per_request=self.max_items_per_request,
        )


@dataclass
class RewardServiceConfig:
    """A backend, its arguments, and the server settings: the whole of a config file."""

    backend: str
    backend_args: dict[str, Any] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into ``{"backend", "backend_args", "server"}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml/json both: report the file and the parser's message
        raise ConfigError(f"config file {str(path)!r} cannot be parsed: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    unknown = set(data) - {"backend", "backend_args", "server", "model"}
    if unknown:
        raise ConfigError(
            f"config file {str(path)!r}: unknown top-level key(s) {sorted(unknown)} "
            "(expected backend, backend_args, server, model)"
        )
    if "backend_args" in data and not isinstance(data["backend_args"] or {}, Mapping):
        raise ConfigError(f"config file {str(path)!r}: backend_args must be a mapping")
    if "server" in data and not isinstance(data["server"] or {}, Mapping):
        raise ConfigError(f"config file {str(path)!r}: server must be a mapping")
    return dict(data)


def parse_backend_arg(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value); the value is read as JSON when it is JSON (numbers, booleans, lists)."""
    return parse_key_value(text, "--backend-arg", ConfigError)


def resolve_backend_class(backend: str) -> type:
    """A registered backend name, or ``package.module:Class`` for a backend outside the registry."""
    if ":" in backend:
        module, _, attr = backend.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot import backend {backend!r}: {e}") from None
    from openrlhf_reward.scorers import scorer_class

    try:
        return scorer_class(backend)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def model_field_name(backend: str) -> str:
    """The backend argument that ``--model PATH`` sets (``model``, ``pretrained``, ...)."""
    cls = resolve_backend_class(backend)
    names: list[str] = []
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        names = [f.name for f in dataclasses.fields(config_class)]
    else:
        try:
            names = list(inspect.signature(cls.__init__).parameters)
        except (TypeError, ValueError):
            names = []
    for cand in _MODEL_FIELD_NAMES:
        if cand in names:
            return cand
    raise ConfigError(f"backend {backend!r} takes no model path (its arguments: {', '.join(names) or 'none'})")


def resolve_config(
    config_file: str | Path | None = None,
    backend: str | None = None,
    model: str | None = None,
    backend_args: Sequence[str] | Mapping[str, Any] = (),
    server_overrides: Mapping[str, Any] | None = None,
) -> RewardServiceConfig:
    """Merge a config file with explicit settings (explicit ones win)."""
    data = read_config_file(config_file) if config_file else {}
    backend = backend or data.get("backend")
    if not backend:
        raise ConfigError("no backend given: pass --backend NAME or set 'backend' in the config file")
    if not isinstance(backend, str):
        raise ConfigError(f"backend must be a string, got {backend!r}")
    args: dict[str, Any] = dict(data.get("backend_args") or {})
    if isinstance(backend_args, Mapping):
        args.update(backend_args)
    else:
        args.update(parse_backend_arg(a) for a in backend_args)
    model = model or data.get("model")
    if model:
        args[model_field_name(backend)] = str(model)
    server_dict = dict(data.get("server") or {})
    server_dict.update(server_overrides or {})
    server = ServerConfig.from_dict(server_dict)
    return RewardServiceConfig(backend=backend, backend_args=args, server=server)


def resolve_config_from_env(environ: Mapping[str, str] | None = None) -> RewardServiceConfig:
    """The config the ``reward_func`` file uses: ``$OPENRLHF_REWARD_CONFIG``, or
    ``$OPENRLHF_REWARD_BACKEND`` (+ ``$OPENRLHF_REWARD_MODEL``, ``$OPENRLHF_REWARD_BACKEND_ARGS`` as JSON)."""
    env = os.environ if environ is None else environ
    path = env.get(CONFIG_ENV)
    backend = env.get(BACKEND_ENV)
    if not path and not backend:
        raise ConfigError(
            f"reward_func needs a backend: set {CONFIG_ENV}=/path/to/config.yaml, or "
            f"{BACKEND_ENV}=NAME (optionally {MODEL_ENV}=PATH and {BACKEND_ARGS_ENV}='{{\"key\": value}}')"
        )
    args: dict[str, Any] = {}
    if env.get(BACKEND_ARGS_ENV):
        try:
            args = json.loads(env[BACKEND_ARGS_ENV])
        except json.JSONDecodeError as e:
            raise ConfigError(f"{BACKEND_ARGS_ENV} is not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ConfigError(f"{BACKEND_ARGS_ENV} must be a JSON object")
    return resolve_config(path or None, backend=backend, model=env.get(MODEL_ENV), backend_args=args)


def build_scorer(backend: str, backend_args: Mapping[str, Any]):
    """Construct the backend; an unknown argument is reported with the backend's name."""
    cls = resolve_backend_class(backend)
    try:
        return cls(**dict(backend_args))
    except TypeError as e:
        raise ConfigError(f"backend {backend!r} rejected its arguments: {e}") from e


# --------------------------------------------------------------------------- CLI flags


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ServerConfig field (``--max-batch-size``...), help from the field.

    Defaults are suppressed so only flags given on the command line override the file.
    """
    group = parser.add_argument_group("server settings (override the config file's 'server' section)")
    add_dataclass_flags(group, ServerConfig, suppress_defaults=True)


def server_overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return values_from_args(args, ServerConfig)
