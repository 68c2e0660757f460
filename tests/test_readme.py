"""The README's copyable blocks stay true to the CLIs they call.

* every `openrlhf-reward ...` line in a README bash block parses with this package's parser;
* the GRPO block's `ray job submit ... -- python3 -m openrlhf.cli.train_ppo_ray ...` parses
  with Ray's click command and OpenRLHF 0.11.2's own parser and validation asserts (every flag
  an exact name), and carries the same flags and values as `recipes/train_grpo.sh` with its
  defaults (which the README says it submits);
* the relative links of the README and docs/ point at files and headings that exist.
No server, model or training is started.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from recipe_helpers import (
    commands_of,
    make_shims,
    parse_openrlhf,
    recipe_env,
    run_recipe,
    split_at,
    undefined_flags,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HAVE_OPENRLHF = importlib.util.find_spec("openrlhf") is not None
TRAIN = ["python3", "-m", "openrlhf.cli.train_ppo_ray"]
# Values the README's blocks leave to the shell.
SHELL_VARS = {"$CKPT": "Skywork/Skywork-Reward-V2-Llama-3.1-8B", "$PWD": "/work"}


def bash_commands(text: str) -> list[str]:
    """Each command of the ```bash blocks, continuation lines joined, comments and heredoc
    bodies dropped."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        cur, heredoc = "", None
        for line in block.splitlines():
            if heredoc is not None:
                if line.strip() == heredoc:
                    heredoc = None
                continue
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            cur += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                m = re.search(r"<<'?(\w+)'?", cur)
                heredoc = m.group(1) if m else None
                out.append(re.sub(r"\s+#.*$", "", cur.strip()).rstrip(" &"))
                cur = ""
    return out


def argv_of(command: str) -> list[str]:
    for var, value in SHELL_VARS.items():
        command = command.replace(var, value)
    return shlex.split(command)


def readme_commands() -> list[str]:
    return bash_commands(README.read_text(encoding="utf-8"))


def test_readme_openrlhf_reward_commands_parse():
    from openrlhf_reward.cli import build_parser

    cmds = [c for c in readme_commands() if c.startswith("openrlhf-reward ")]
    assert {argv_of(c)[1] for c in cmds} >= {"serve", "build-grpo", "build-pairs"}
    parser = build_parser()
    for c in cmds:
        try:
            parser.parse_args(argv_of(c)[1:])
        except SystemExit as e:  # argparse's error
            pytest.fail(f"README command does not parse ({e.code}): {c}")


def _readme_grpo_argv() -> list[str]:
    jobs = [c for c in readme_commands() if c.startswith("ray job submit")]
    assert len(jobs) == 1, jobs
    return argv_of(jobs[0])


@pytest.mark.slow  # importing OpenRLHF (DeepSpeed, torch, Ray) takes ~20 s on 2 cores
@pytest.mark.openrlhf
@pytest.mark.skipif(not HAVE_OPENRLHF, reason="openrlhf==0.11.2 is not installed")
def test_readme_grpo_command_parses_with_openrlhf():
    from ray.scripts.scripts import cli

    argv = _readme_grpo_argv()
    params = cli.commands["job"].commands["submit"].make_context("ray job submit", argv[3:]).params
    _, train_argv = split_at(list(params["entrypoint"]), TRAIN)
    parser, a, _ = parse_openrlhf("openrlhf.cli.train_ppo_ray", train_argv)
    assert not undefined_flags(parser, train_argv), undefined_flags(parser, train_argv)
    assert a.reward.remote_url == ["http://127.0.0.1:5000/get_reward"]  # OpenRLHF splits the URL list
    assert a.data.label_key == "label" and a.data.input_key == "input"
    assert a.algo.advantage.estimator == "group_norm" and a.rollout.n_samples_per_prompt == 5


def _pairs(argv: list[str]) -> dict[str, str | None]:
    """{flag: value or None} of a flag list (every flag given once)."""
    out: dict[str, str | None] = {}
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            assert tok not in out, f"{tok} given twice"
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[tok] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_readme_grpo_command_is_the_recipes(tmp_path):
    bin_dir = make_shims(tmp_path / "bin")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = recipe_env(bin_dir, run_dir, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}"
                     f"{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    proc = run_recipe("train_grpo.sh", env)
    assert proc.returncode == 0, proc.stderr
    jobs = [c for c in commands_of(proc.stdout) if c[:3] == ["ray", "job", "submit"]]
    assert len(jobs) == 1
    recipe = _pairs(split_at(jobs[0], TRAIN)[1])
    readme = _pairs(split_at(_readme_grpo_argv(), TRAIN)[1])
    # Paths differ (the recipe's RUN_DIR vs the README's $PWD/outputs); everything else is equal.
    for flag in ("--data.prompt_dataset", "--ckpt.output_dir", "--ckpt.path", "--logger.tensorboard_dir"):
        assert Path(recipe.pop(flag)).name == Path(readme.pop(flag)).name, flag
    assert readme == recipe
    submit_recipe, submit_readme = split_at(jobs[0], TRAIN)[0], split_at(_readme_grpo_argv(), TRAIN)[0]
    assert submit_readme == submit_recipe


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (code blocks skipped)."""
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    out = set()
    for h in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("md", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(md):
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(target)
    assert not bad, f"{md.name}: broken links {bad}"
