"""Importing the packages stays cheap: no torch, transformers, lm_eval, openrlhf or vllm."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "lm_eval", "openrlhf", "vllm", "fastapi", "openai", "datasets"]


def heavy_modules_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after running ``code``."""
    code += f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_package_imports_are_light():
    code = (
        "import weval_tasks, openrlhf_reward, openrlhf_reward.scorers, openrlhf_reward.cli\n"
        "import weval_tasks.metrics, openrlhf_reward.checks, openrlhf_reward.schema\n"
    )
    assert heavy_modules_after(code) == []


def test_openrlhf_reward_help_is_light():
    code = (
        "import contextlib, io\n"
        "from openrlhf_reward.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
    )
    assert heavy_modules_after(code) == []


def test_model_backends_are_registered_and_import_light():
    from openrlhf_reward.scorers import available_scorers

    assert {"bt", "per-requirement", "classifier"} <= set(available_scorers())
    code = "import openrlhf_reward.scorers.bt, openrlhf_reward.scorers.per_requirement, openrlhf_reward.scorers.classifier"
    assert heavy_modules_after(code) == []


def test_report_and_viewer_imports_are_light():
    # bootstrap (numpy), plots (matplotlib) and scipy load only when a report is made
    code = "import weval_tasks.report, weval_tasks.viewer, weval_tasks.stats\n"
    code += "import sys\nassert not {'numpy', 'scipy', 'matplotlib'} & set(sys.modules), sys.modules.keys()\n"
    assert heavy_modules_after(code) == []
