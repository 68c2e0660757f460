"""The shared config machinery (openrlhf_reward.config) and retry helper (openrlhf_reward.retry):
one implementation used by the server, the backends, the builders and the teachers."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from openrlhf_reward.config import (
    add_dataclass_flags,
    build_config,
    coerce_fields,
    parse_key_value,
    values_from_args,
)
from openrlhf_reward.retry import TransientError, call_with_retries, is_transient, retryable_status
from openrlhf_reward.server.config import (
    ConfigError,
    ServerConfig,
    add_server_flags,
    server_overrides_from_args,
)


@dataclass
class Opts:
    name: str = field(default="x", metadata={"help": "a name"})
    size: int = field(default=4, metadata={"help": "a size"})
    rate: float = field(default=0.5, metadata={"help": "a rate"})
    limit: int | None = field(default=None, metadata={"help": "a limit"})
    on: bool = field(default=False, metadata={"help": "a switch"})
    tags: list[str] = field(default_factory=list, metadata={"help": "tags"})
    extra: dict = field(default_factory=dict, metadata={"help": "extra"})


def test_strings_are_coerced_to_the_declared_types():
    cfg = build_config(Opts, {"size": "8", "rate": "1e-3", "limit": "none", "on": "yes", "tags": '["a", "b"]',
                              "extra": '{"k": 1}', "name": "007"}, "demo")
    assert (cfg.size, cfg.rate, cfg.limit, cfg.on, cfg.tags, cfg.extra, cfg.name) == (
        8, 0.001, None, True, ["a", "b"], {"k": 1}, "007")
    # a plain string where a list of strings is expected is a one-item list
    assert coerce_fields(Opts, {"tags": "</answer>"}, "o") == {"tags": ["</answer>"]}
    # lenient for non-strings (lm-eval turns digits into numbers): int -> float, number -> str
    assert coerce_fields(Opts, {"rate": 2, "name": 7, "size": 3}, "o") == {"rate": 2.0, "name": "7", "size": 3}
    with pytest.raises(ValueError, match=r"backend 'demo': option 'size' expects an integer, got 'big'"):
        build_config(Opts, {"size": "big"}, "demo")
    with pytest.raises(ValueError, match="'on' expects true or false"):
        build_config(Opts, {"on": "maybe"}, "demo")
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'colour'; known options: extra, limit"):
        build_config(Opts, {"colour": "red"}, "demo")


def test_strict_mode_checks_config_file_values():
    def strict(**kw):
        return coerce_fields(Opts, kw, "server", strict=True, error=ConfigError)

    assert strict(size=3, rate=1, limit=None, on=False, tags=["a"]) == dict(size=3, rate=1.0, limit=None, on=False,
                                                                           tags=["a"])
    for bad, what in [({"size": 2.5}, "an integer"), ({"size": True}, "an integer"), ({"on": 1.0}, "true or false"),
                      ({"size": None}, "may not be null"), ({"tags": [1]}, "a list of strings"),
                      ({"name": 3}, "a string"), ({"rate": "fast"}, "a number")]:
        with pytest.raises(ConfigError, match=what):
            strict(**bad)
    with pytest.raises(ConfigError, match=r"server: option 'max_batch_size' expects an integer, got 'many'"):
        ServerConfig.from_dict({"max-batch-size": "many"})
    assert ServerConfig.from_dict({"end_markers": "</answer>", "strip_think": "no"}).end_markers == ["</answer>"]


def test_key_value_parsing():
    assert parse_key_value("max-length=512", "--backend-arg") == ("max_length", 512)
    assert parse_key_value("members=[1, 2]", "--x") == ("members", [1, 2])
    assert parse_key_value("model=/ckpt/rm", "--x") == ("model", "/ckpt/rm")
    assert parse_key_value("flag=true", "--x") == ("flag", True)
    with pytest.raises(ValueError, match=r"--teacher-opt expects KEY=VALUE, got 'oops'"):
        parse_key_value("oops", "--teacher-opt")


def test_dataclass_flags_round_trip():
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, Opts, skip={"extra"}, required={"name"}, choices={"size": ["4", "8"]})
    args = p.parse_args(["--name", "n", "--limit", "3", "--on", "--tags", "a", "--tags", "b"])
    assert values_from_args(args, Opts, skip={"extra"}) == dict(name="n", size=4, rate=0.5, limit=3, on=True,
                                                                tags=["a", "b"])
    with pytest.raises(SystemExit):
        p.parse_args([])  # --name is required
    assert "--extra" not in p.format_help() and "a rate (default: 0.5)" in p.format_help()

    # server flags: only the flags given, so the config file keeps the rest
    p = argparse.ArgumentParser()
    add_server_flags(p)
    args = p.parse_args(["--max-batch-size", "8", "--no-strip-think", "--end-markers", "</a>"])
    assert server_overrides_from_args(args) == {"max_batch_size": 8, "strip_think": False, "end_markers": ["</a>"]}


def test_retries_transient_failures_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("busy")
        return "ok"

    retried = []
    assert call_with_retries(flaky, max_tries=5, backoff=0.001, on_retry=retried.append) == "ok"
    assert len(calls) == 3 and len(retried) == 2

    calls.clear()
    with pytest.raises(TransientError, match="busy"):  # gives up after max_tries, the last error as is
        call_with_retries(lambda: flaky() if len(calls) < 10 else None, max_tries=2, backoff=0.001)
    assert len(calls) == 2

    def refused():
        calls.append(1)
        raise ValueError("bad request")

    calls.clear()
    with pytest.raises(ValueError):
        call_with_retries(refused, max_tries=5, backoff=0.001)
    assert len(calls) == 1  # not transient: no retry
    assert [retryable_status(s) for s in (400, 404, 408, 409, 425, 429, 500, 503)] == [
        False, False, True, True, True, True, True, True]
    assert not is_transient(ValueError()) and is_transient(TransientError())


def test_async_retries():
    import asyncio

    from openrlhf_reward.retry import async_call_with_retries

    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise TransientError("busy")
        return 5

    assert asyncio.run(async_call_with_retries(flaky, max_tries=3, backoff=0.001)) == 5 and len(calls) == 2
