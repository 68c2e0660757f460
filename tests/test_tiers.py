"""The fast-tier guard in conftest.py fails what it should and lets the rest through.

A sample test file runs in a child pytest with our conftest as a plugin. The children only
pretend: "torch" is a stand-in module put into sys.modules, and the guard refuses the
server command before any process starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent

SAMPLE = '''
import subprocess, sys, types
import pytest

def test_light_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_starts_a_server():
    subprocess.run([sys.executable, "-m", "openrlhf_reward.cli", "serve", "--backend", "rules"], timeout=30)

def test_imports_torch():
    sys.modules["torch"] = types.ModuleType("torch")  # what `import torch` leaves behind

@pytest.mark.slow
def test_slow_may_do_both():
    with pytest.raises(FileNotFoundError):  # past the guard: the program itself is absent
        subprocess.run(["/nonexistent/weval", "--help"])
    sys.modules["torch"] = types.ModuleType("torch")

def test_own_code_must_import():
    pytest.importorskip("openrlhf_reward.no_such_module")

def test_third_party_may_skip():
    pytest.importorskip("no_such_third_party_module_xyz")
'''


def _run(tmp_path: Path, *args: str) -> str:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rA", "-q",
         "--rootdir", str(tmp_path), "test_sample.py", *args],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, timeout=600,
    )
    return proc.stdout + proc.stderr


def _outcomes(out: str) -> dict[str, str]:
    """test name -> PASSED / FAILED / ERROR from the -rA summary."""
    return dict((m[1], m[0]) for m in re.findall(r"^(PASSED|FAILED|ERROR) test_sample\.py::(\w+)", out, re.M))


def test_the_guard_fails_servers_torch_and_own_import_skips_outside_the_slow_tier(tmp_path):
    fast = _run(tmp_path, "-m", "not slow")
    got = _outcomes(fast)
    assert got.get("test_light_subprocess") == "PASSED", fast
    assert got.get("test_starts_a_server") == "FAILED" and "runs 'serve'" in fast, fast
    assert got.get("test_imports_torch") == "FAILED" and "test_imports_torch imported torch" in fast, fast
    assert got.get("test_own_code_must_import") == "FAILED" and "our own code: a failure" in fast, fast
    assert "test_slow_may_do_both" not in got
    assert "could not import 'no_such_third_party_module_xyz'" in fast  # still a plain skip
    full = _outcomes(_run(tmp_path, "-k", "slow_may_do_both"))
    assert full == {"test_slow_may_do_both": "PASSED"}, full
