"""Run the recipes (recipes/*.sh) in DRY_RUN mode and parse their commands with the real parsers.

* :func:`dry_run` runs a recipe with ``DRY_RUN=1`` in a clean environment and returns every
  command it would run, as argv lists (the ``+ ...`` lines, unquoted by bash itself).
  ``srun ... bash -c CMD`` steps are expanded by dry-running CMD too.
* :func:`parse_openrlhf` runs the ``if __name__ == "__main__":`` block of an OpenRLHF 0.11.2
  CLI module -- its own argparse parser, ``hierarchize`` and validation asserts -- on an argv,
  with only the final ``train(args)`` call replaced; it returns the parser and the args.
* :func:`undefined_flags` lists the ``--flags`` of an argv that the parser does not define
  exactly (argparse would accept an abbreviation, which a renamed flag could hide behind).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# The recipes of the workflow (quickstart.sh is a separate, real-run script).
WORKFLOW_RECIPES = (
    "build_weval.sh",
    "eval_weval.sh",
    "build_pairs.sh",
    "train_rm_bt.sh",
    "train_classifier.sh",
    "serve_rm.sh",
    "train_grpo.sh",
    "train_grpo_multinode.sh",
    "ray_cluster.sh",
    "slurm_grpo.sbatch",
)
_SHIMS = {
    "weval": "weval_tasks.cli",
    "openrlhf-reward": "openrlhf_reward.cli",
}


def make_shims(bin_dir: Path) -> Path:
    """``weval`` and ``openrlhf-reward`` commands that run this working tree with this python.

    The package need not be pip-installed for the tests; the shims behave like its console
    scripts.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in _SHIMS.items():
        path = bin_dir / name
        path.write_text(
            "#!/bin/sh\n"
            f'PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m {module} "$@"\n'
        )
        path.chmod(0o755)
    return bin_dir


def recipe_env(bin_dir: Path, run_dir: Path, dry_run: bool = True, **overrides: str) -> dict[str, str]:
    """A minimal environment (so variables of the caller's shell cannot leak into the recipe)."""
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(run_dir)),
        "LANG": "C.UTF-8",
        "RUN_DIR": str(run_dir),
        "DRY_RUN": "1" if dry_run else "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_recipe(
    script: str, env: dict[str, str], args: Sequence[str] = (), cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(RECIPES / script), *args],
        env=env,
        cwd=cwd or env["RUN_DIR"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def unquote(line: str) -> list[str]:
    """The argv of one ``+ cmd ...`` line (bash's own ``%q`` quoting, undone by bash)."""
    out = subprocess.run(
        ["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "unquote", line],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("\0")[:-1]


def commands_of(stdout: str) -> list[list[str]]:
    return [unquote(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def dry_run(
    script: str, env: dict[str, str], args: Sequence[str] = (), expand_srun: bool = True
) -> list[list[str]]:
    """Every command the recipe would run (argv lists); fails with the recipe's stderr."""
    proc = run_recipe(script, env, args)
    if proc.returncode != 0:
        raise AssertionError(f"{script} (DRY_RUN) exited {proc.returncode}:\n{proc.stderr}")
    cmds = commands_of(proc.stdout)
    if not expand_srun:
        return cmds
    out: list[list[str]] = []
    for cmd in cmds:
        out.append(cmd)
        if cmd and cmd[0] == "srun" and "-c" in cmd:
            inner = cmd[cmd.index("-c") + 1]
            step = subprocess.run(["bash", "-c", inner], env=env, cwd=env["RUN_DIR"],
                                  capture_output=True, text=True, timeout=60)
            if step.returncode != 0:
                raise AssertionError(f"srun step {inner!r} (DRY_RUN) exited {step.returncode}:\n{step.stderr}")
            out.extend(commands_of(step.stdout))
    return out


def strip_prefix(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Drop leading ``nohup`` / ``env`` / ``VAR=value``; return (variables, command)."""
    env: dict[str, str] = {}
    argv = list(argv)
    while argv:
        if argv[0] in ("nohup", "env"):
            argv.pop(0)
        elif "=" in argv[0] and not argv[0].startswith("-") and argv[0].split("=", 1)[0].isidentifier():
            key, _, value = argv.pop(0).partition("=")
            env[key] = value
        else:
            break
    return env, argv


def find(cmds: Iterable[Sequence[str]], program: str) -> list[list[str]]:
    """Commands whose program (after env prefixes) is ``program``."""
    found = []
    for cmd in cmds:
        _, argv = strip_prefix(cmd)
        if argv and argv[0] == program:
            found.append(argv)
    return found


def undefined_flags(parser: argparse.ArgumentParser, argv: Iterable[str]) -> list[str]:
    """``--flags`` in argv that are not exactly one of the parser's option strings."""
    known = parser._option_string_actions  # noqa: SLF001 - the exact names argparse defines
    return [a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in known]


@contextlib.contextmanager
def capture_parsers():
    """Record every ArgumentParser whose parse_args/parse_known_args runs inside the block."""
    seen: list[argparse.ArgumentParser] = []
    orig = argparse.ArgumentParser.parse_known_args

    def recording(self, *a, **k):
        seen.append(self)
        return orig(self, *a, **k)

    argparse.ArgumentParser.parse_known_args = recording
    try:
        yield seen
    finally:
        argparse.ArgumentParser.parse_known_args = orig


class ParseFailure(AssertionError):
    """A parser rejected an argv (argparse printed an error and exited)."""


def _main_block(module) -> Any:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return compile(ast.Module(body=node.body, type_ignores=[]), module.__file__, "exec")
    raise AssertionError(f"{module.__name__} has no `if __name__ == '__main__':` block")


def import_openrlhf_cli(module_name: str):
    """Import an OpenRLHF CLI module on CPU (flash_attn / vllm stand-ins from tests/stubs)."""
    from openrlhf_stubs import use_openrlhf_stubs, vllm_stub

    use_openrlhf_stubs()
    with vllm_stub():
        return importlib.import_module(module_name)


def parse_openrlhf(module_name: str, argv: Sequence[str]) -> tuple[argparse.ArgumentParser, Any, str]:
    """(parser, hierarchized args, printed warnings) from OpenRLHF's own CLI code for ``argv``.

    The module's ``__main__`` block runs unchanged (parser, ``hierarchize``, every validation
    assert and warning) except that ``train`` only records its argument. An argparse error
    raises :class:`ParseFailure`; a failed validation assert raises its AssertionError.
    """
    module = import_openrlhf_cli(module_name)
    code = _main_block(module)
    namespace = dict(vars(module))
    captured: dict[str, Any] = {}
    namespace["train"] = lambda args: captured.setdefault("args", args)
    old_argv = sys.argv
    sys.argv = [module_name, *argv]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            exec(code, namespace)  # noqa: S102 - OpenRLHF's own __main__ block
    except SystemExit as e:
        raise ParseFailure(f"{module_name} rejected the command line (exit {e.code}):\n{err.getvalue()}") from None
    finally:
        sys.argv = old_argv
    if "args" not in captured:
        raise AssertionError(f"{module_name}: the __main__ block did not reach train(args)")
    return namespace["parser"], captured["args"], out.getvalue()


def split_at(argv: Sequence[str], marker: Sequence[str]) -> tuple[list[str], list[str]]:
    """(argv before the marker sequence, argv after it); the marker must occur."""
    n = len(marker)
    for i in range(len(argv) - n + 1):
        if list(argv[i : i + n]) == list(marker):
            return list(argv[:i]), list(argv[i + n :])
    raise AssertionError(f"{' '.join(marker)!r} not in {argv}")
