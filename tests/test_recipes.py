"""The recipes (recipes/*.sh), checked on a CPU-only machine.

Every command a recipe would run is taken from its DRY_RUN output (default variables filled
in) and parsed by the parser of the program it calls:
* `openrlhf.cli.train_rm` / `openrlhf.cli.train_ppo_ray`: OpenRLHF 0.11.2's own argparse
  parser, `hierarchize` and validation asserts (tests/recipe_helpers.parse_openrlhf), plus an
  exact-name check of every flag (argparse accepts abbreviations);
* the `deepspeed` launcher, `ray job submit` / `ray start` (Ray's click commands), `weval` and
  `lm_eval` (lm-eval's HarnessCLI, with the model type and model_args checked),
  `openrlhf-reward` (this package's parser) and, with the CPU vLLM venv, `vllm serve`.
Then shellcheck, and real CPU runs of serve_rm.sh (rules backend) and eval_weval.sh.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipe_helpers import (
    RECIPES,
    ROOT,
    WORKFLOW_RECIPES,
    ParseFailure,
    capture_parsers,
    dry_run,
    find,
    make_shims,
    parse_openrlhf,
    recipe_env,
    run_recipe,
    split_at,
    undefined_flags,
)

HAVE_OPENRLHF = importlib.util.find_spec("openrlhf") is not None


def needs_openrlhf(test):
    # slow: parsing with OpenRLHF's own CLI modules imports torch, deepspeed and ray
    test = pytest.mark.skipif(not HAVE_OPENRLHF, reason="openrlhf==0.11.2 is not installed")(test)
    return pytest.mark.slow(pytest.mark.openrlhf(test))


PAPER = {"n_samples": 5, "rollout_batch": 384, "train_batch": 96, "temperature": 1.0, "lr": 1e-6}


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> Path:
    return make_shims(tmp_path_factory.mktemp("bin"))


@pytest.fixture
def env_for(shims, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def make(**overrides: str) -> dict[str, str]:
        return recipe_env(shims, run_dir, **overrides)

    return make


@pytest.fixture(scope="module")
def openrlhf_version() -> str:
    if not HAVE_OPENRLHF:
        pytest.skip("openrlhf==0.11.2 is not installed")
    version = importlib.metadata.version("openrlhf")
    assert version == "0.11.2", f"the recipes are verified against openrlhf 0.11.2, found {version}"
    return version


# ---------------------------------------------------------------------------------------
# Script hygiene
# ---------------------------------------------------------------------------------------

def _assigned_variables(text: str) -> set[str]:
    """The variables a recipe gives defaults, its own and those of the common.sh functions it
    calls (teacher_defaults, grpo_defaults)."""
    names = set(re.findall(r':\s+"\$\{([A-Z_][A-Z0-9_]*):?=', text))
    names |= set(re.findall(r'\$\{([A-Z_][A-Z0-9_]*)\+x\}', text))
    common = (RECIPES / "common.sh").read_text()
    for func in re.findall(r"^([a-z_]+_defaults)\b", text, re.M):
        body = re.search(rf"^{func}\(\) \{{\n(.*?)^\}}", common, re.M | re.S)
        assert body, f"{func} is not defined in common.sh"
        names |= _assigned_variables(body.group(1))
    return names


@pytest.mark.parametrize("script", WORKFLOW_RECIPES)
def test_recipe_has_usage_strict_mode_and_documents_its_variables(script, env_for):
    text = (RECIPES / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    proc = run_recipe(script, env_for(), ["--help"])
    assert proc.returncode == 0, proc.stderr
    usage = proc.stdout
    assert usage.startswith("Usage:"), usage[:200]
    variables = _assigned_variables(text)
    assert variables, "no overridable variables found"
    undocumented = sorted(v for v in variables if not re.search(rf"\b{v}\b", usage))
    assert not undocumented, f"{script}: variables missing from the usage text: {undocumented}"


def test_no_hard_coded_addresses():
    allowed = {"127.0.0.1", "0.0.0.0"}  # loopback / bind-all, never a cluster address
    for path in sorted(RECIPES.iterdir()):
        if path.suffix in (".sh", ".sbatch", ".py"):
            found = set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", path.read_text())) - allowed
            assert not found, f"{path.name}: hard-coded addresses {sorted(found)}"


def test_shellcheck_clean():
    scripts = sorted(p for p in RECIPES.iterdir() if p.suffix in (".sh", ".sbatch"))
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it)")
    proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_creates_nothing(env_for, tmp_path):
    env = env_for(JUDGE_MODELS="Qwen/Qwen2.5-7B-Instruct", REWARD_URLS="http://rm-host:5000/get_reward",
                  NODES="n1 n2", RAY_HEAD_ADDR="head-node")
    for script in WORKFLOW_RECIPES:
        args = ["head"] if script == "ray_cluster.sh" else []
        assert dry_run(script, env, args), f"{script}: DRY_RUN printed no command"
    leftovers = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert not leftovers, f"DRY_RUN wrote files: {leftovers}"


# ---------------------------------------------------------------------------------------
# train_rm (deepspeed --module openrlhf.cli.train_rm)
# ---------------------------------------------------------------------------------------

def _deepspeed(cmd: list[str]):
    """Parse the launcher part with DeepSpeed's own runner parser; return (ds_args, module argv)."""
    from deepspeed.launcher.runner import parse_args as ds_parse_args

    assert cmd[0] == "deepspeed"
    with capture_parsers() as parsers:
        ds_args = ds_parse_args(cmd[1:])
    launcher, _ = split_at(cmd[1:], ["--module", "openrlhf.cli.train_rm"])
    assert not undefined_flags(parsers[0], launcher), undefined_flags(parsers[0], launcher)
    assert ds_args.module and ds_args.user_script == "openrlhf.cli.train_rm"
    return ds_args, list(ds_args.user_args)


def _train_rm(env, args=()):
    cmds = find(dry_run("train_rm_bt.sh", env, args), "deepspeed")
    assert len(cmds) == 1, cmds
    ds_args, argv = _deepspeed(cmds[0])
    parser, parsed, _ = parse_openrlhf("openrlhf.cli.train_rm", argv)
    assert not undefined_flags(parser, argv), f"not exact train_rm flags: {undefined_flags(parser, argv)}"
    return ds_args, parsed


@needs_openrlhf
def test_train_rm_defaults_parse_with_openrlhf(env_for, openrlhf_version):
    env = env_for()
    run_dir = Path(env["RUN_DIR"])
    ds_args, a = _train_rm(env)
    assert ds_args.num_gpus == 8
    assert a.model.model_name_or_path == "Qwen/Qwen2.5-7B-Instruct"  # the paper's RM base
    assert a.data.dataset == str(run_dir / "wrl_data" / "pairs.jsonl")
    assert (a.data.prompt_key, a.data.chosen_key, a.data.rejected_key) == ("prompt", "chosen", "rejected")
    assert a.data.apply_chat_template
    assert a.ds.zero_stage == 3 and a.ds.param_dtype == "bf16"
    assert a.ds.attn_implementation == "flash_attention_2" and a.ds.packing_samples
    assert a.model.gradient_checkpointing_enable
    assert a.model.loss_type == "sigmoid" and not a.model.margin_loss_enable  # plain Bradley-Terry
    assert a.ds.value_head_prefix == "score"
    assert a.ckpt.output_dir == str(run_dir / "rm_bt" / "model")
    assert a.ckpt.path == str(run_dir / "rm_bt" / "checkpoints")
    assert a.logger.tensorboard_dir == str(run_dir / "rm_bt" / "tensorboard")
    assert a.eval.dataset is None  # no held-out file yet: OpenRLHF uses 1% of the train set
    # DeepSpeed: global batch = micro x accumulation x GPUs
    assert a.train.batch_size % (a.train.micro_batch_size * ds_args.num_gpus) == 0


@needs_openrlhf
def test_train_rm_switches_and_passthrough(env_for, tmp_path, openrlhf_version):
    eval_file = tmp_path / "pairs_eval.jsonl"
    env = env_for(MARGIN_LOSS="1", EVAL_DATA=str(eval_file), ZERO_STAGE="2", PACKING="0",
                  ATTN_IMPL="sdpa", MODEL=str(tmp_path), RESUME="1", LR="2e-6")
    _, a = _train_rm(env, ["--ds.lora.rank", "16"])
    assert a.model.margin_loss_enable
    assert a.eval.dataset == str(eval_file) and a.eval.split == "train"
    assert a.ds.zero_stage == 2 and not a.ds.packing_samples and a.ds.attn_implementation == "sdpa"
    assert a.model.model_name_or_path == str(tmp_path)
    assert a.ckpt.load_enable and a.adam.lr == 2e-6
    assert a.ds.lora.rank == 16  # extra arguments reach train_rm


@needs_openrlhf
def test_train_rm_multi_node_hostfile(env_for, tmp_path, openrlhf_version):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode-a slots=8\nnode-b slots=8\n")
    ds_args, a = _train_rm(env_for(HOSTFILE=str(hostfile), MASTER_PORT="29777"))
    assert ds_args.hostfile == str(hostfile) and ds_args.master_addr == "node-a"
    assert ds_args.master_port == 29777 and ds_args.num_gpus == -1


@needs_openrlhf
def test_train_rm_flag_checks_have_teeth(env_for, openrlhf_version):
    env = env_for()
    cmd = find(dry_run("train_rm_bt.sh", env), "deepspeed")[0]
    _, argv = _deepspeed(cmd)
    # argparse takes an abbreviation silently; the exact-name check does not.
    parser, parsed, _ = parse_openrlhf("openrlhf.cli.train_rm", [*argv, "--model.margin_loss"])
    assert parsed.model.margin_loss_enable
    assert undefined_flags(parser, [*argv, "--model.margin_loss"]) == ["--model.margin_loss"]
    # pre-0.10.2 names are gone
    with pytest.raises(ParseFailure, match="unrecognized arguments: --pretrain"):
        parse_openrlhf("openrlhf.cli.train_rm", [*argv, "--pretrain", "x"])
    # the recipe's own batch check (DeepSpeed would fail only on the GPUs)
    proc = run_recipe("train_rm_bt.sh", env_for(TRAIN_BATCH_SIZE="100"))
    assert proc.returncode != 0 and "multiple of MICRO_BATCH_SIZE" in proc.stderr


# ---------------------------------------------------------------------------------------
# GRPO (ray job submit -- python3 -m openrlhf.cli.train_ppo_ray)
# ---------------------------------------------------------------------------------------

def _ray_command(program: str, sub: list[str], argv: list[str]):
    """Parse with Ray's own click command (unknown or misspelled options raise)."""
    from ray.scripts.scripts import cli

    cmd = cli
    for name in sub:
        cmd = cmd.commands[name]
    ctx = cmd.make_context(" ".join([program, *sub]), list(argv))
    return ctx.params


def _grpo(cmds: list[list[str]]):
    jobs = [c for c in find(cmds, "ray") if c[1:3] == ["job", "submit"]]
    assert len(jobs) == 1, cmds
    params = _ray_command("ray", ["job", "submit"], jobs[0][3:])
    json.loads(params["runtime_env_json"])  # valid JSON
    entry = list(params["entrypoint"])
    _, argv = split_at(entry, ["python3", "-m", "openrlhf.cli.train_ppo_ray"])
    parser, a, printed = parse_openrlhf("openrlhf.cli.train_ppo_ray", argv)
    assert not undefined_flags(parser, argv), f"not exact train_ppo_ray flags: {undefined_flags(parser, argv)}"
    return params, a, printed


def _check_grpo_common(a) -> None:
    assert a.algo.advantage.estimator == "group_norm"
    assert a.critic.model_name_or_path is None  # OpenRLHF drops the critic for group_norm
    assert a.rollout.n_samples_per_prompt == PAPER["n_samples"]
    assert a.rollout.batch_size == PAPER["rollout_batch"] and a.train.batch_size == PAPER["train_batch"]
    assert a.rollout.temperature == PAPER["temperature"] and a.actor.adam.lr == PAPER["lr"]
    assert a.algo.kl.use_loss and a.algo.kl.estimator == "k3" and a.algo.kl.init_coef > 0
    assert a.data.input_key == "input" and a.data.label_key == "label" and a.data.apply_chat_template
    assert a.vllm.num_engines >= 1
    world = a.actor.num_nodes * a.actor.num_gpus_per_node
    assert a.train.batch_size % (a.train.micro_batch_size * world) == 0  # DeepSpeed's batch rule
    if a.train.colocate_all:  # the check OpenRLHF makes at the start of train()
        assert world == a.vllm.num_engines * a.vllm.tensor_parallel_size
    assert (a.ref.num_nodes, a.ref.num_gpus_per_node) == (a.actor.num_nodes, a.actor.num_gpus_per_node)


@needs_openrlhf
def test_grpo_single_node_defaults(env_for, openrlhf_version):
    env = env_for()
    run_dir = Path(env["RUN_DIR"])
    params, a, _ = _grpo(dry_run("train_grpo.sh", env))
    _check_grpo_common(a)
    assert params["address"] == "http://127.0.0.1:8265"
    assert a.actor.model_name_or_path == "Qwen/Qwen2.5-7B-Instruct"
    assert a.data.prompt_dataset == str(run_dir / "wrl_data" / "grpo.jsonl")
    assert a.reward.remote_url == ["http://127.0.0.1:5000/get_reward"]
    assert a.train.colocate_all and a.vllm.enable_sleep and a.ds.enable_sleep
    assert (a.actor.num_nodes, a.actor.num_gpus_per_node, a.vllm.num_engines) == (1, 8, 8)
    assert a.ds.packing_samples and a.ds.zero_stage == 3
    assert a.ckpt.output_dir == str(run_dir / "grpo" / "model") and a.ckpt.save_hf
    assert a.eval.dataset is None


@needs_openrlhf
def test_grpo_reads_the_servers_url_file_and_eval_split(env_for, openrlhf_version):
    env = env_for()
    run_dir = Path(env["RUN_DIR"])
    (run_dir / "rm_serve").mkdir()
    urls = [f"http://rm-host:{5000 + i}/get_reward" for i in range(4)]
    (run_dir / "rm_serve" / "reward_urls.txt").write_text(",".join(urls) + "\n")
    (run_dir / "wrl_data").mkdir()
    (run_dir / "wrl_data" / "grpo_eval.jsonl").write_text("")
    _, a, _ = _grpo(dry_run("train_grpo.sh", env))
    assert a.reward.remote_url == urls  # OpenRLHF splits the comma list (round-robin)
    assert a.eval.dataset == str(run_dir / "wrl_data" / "grpo_eval.jsonl")


@needs_openrlhf
def test_grpo_actor_ref_colocation(env_for, openrlhf_version):
    _, a, _ = _grpo(dry_run("train_grpo.sh", env_for(COLOCATE="actor_ref", VLLM_TP="2")))
    _check_grpo_common(a)
    assert a.train.colocate_actor_ref and not a.train.colocate_all
    assert a.actor.num_gpus_per_node == 4 and a.vllm.num_engines == 2 and a.vllm.tensor_parallel_size == 2
    assert not a.vllm.enable_sleep


@needs_openrlhf
def test_grpo_reward_func_file(env_for, tmp_path, openrlhf_version):
    config = tmp_path / "reward.yaml"
    config.write_text("backend: rules\n")
    env = env_for(REWARD_CONFIG=str(config))
    cmds = dry_run("train_grpo.sh", env)
    _, a, _ = _grpo(cmds)
    out = str(Path(env["RUN_DIR"]) / "grpo" / "reward_func.py")
    assert a.reward.remote_url == [out]
    (cmd,) = find(cmds, "openrlhf-reward")
    assert cmd[1:] == ["reward-func-path", "--config", str(config), "--output", out]


@needs_openrlhf
def test_grpo_multinode_and_slurm(env_for, openrlhf_version):
    env = env_for(REWARD_HOSTS="rm-a rm-b", OPENRLHF_REWARD_API_KEY="secret-key")
    _, a, _ = _grpo(dry_run("train_grpo_multinode.sh", env))
    _check_grpo_common(a)
    assert (a.actor.num_nodes, a.vllm.num_engines, a.train.micro_batch_size) == (2, 16, 2)
    # default: Ray Serve on each reward host, one URL per host (Serve's proxy)
    assert [u.split("/")[2] for u in a.reward.remote_url] == ["rm-a:5000", "rm-b:5000"]
    assert all(u.endswith("?api_key=***") for u in a.reward.remote_url)  # keys masked in printed commands
    _, a, _ = _grpo(dry_run("train_grpo_multinode.sh", {**env, "RAY_SERVE": "0"}))
    assert len(a.reward.remote_url) == 16  # one process and URL per replica
    assert {u.split("/")[2].split(":")[0] for u in a.reward.remote_url} == {"rm-a", "rm-b"}

    cmds = dry_run("slurm_grpo.sbatch", env_for(NODES="n1 n2 n3 n4"))
    _, a, _ = _grpo(cmds)
    _check_grpo_common(a)
    assert a.actor.num_nodes == 3 and a.vllm.num_engines == 24
    assert [u.split("/")[2] for u in a.reward.remote_url] == ["n4:5000"]
    sruns = find(cmds, "srun")
    assert [c[c.index("-w") + 1] for c in sruns] == ["n4", "n1", "n2", "n3"]
    (serve,) = find(cmds, "openrlhf-reward")
    assert serve[serve.index("--host") + 1] == "0.0.0.0" and "--ray" in serve
    assert serve[serve.index("--num-replicas") + 1] == "8" and serve[serve.index("--num-gpus") + 1] == "1"
    assert serve[serve.index("--ray-address") + 1] == "local"  # the reward node's own Ray instance
    cmds = dry_run("slurm_grpo.sbatch", env_for(NODES="n1 n2 n3 n4", RAY_SERVE="0"))
    _, a, _ = _grpo(cmds)
    assert [u.split("/")[2] for u in a.reward.remote_url] == [f"n4:{5000 + i}" for i in range(8)]
    serves = find(cmds, "openrlhf-reward")
    assert len(serves) == 8 and all(c[c.index("--host") + 1] == "0.0.0.0" and "--ray" not in c for c in serves)
    starts = [c for c in find(cmds, "ray") if c[1] == "start"]
    assert len(starts) == 3 and "--head" in starts[0]
    for c in starts:
        params = _ray_command("ray", ["start"], c[2:])
        assert params["block"] and params["num_gpus"] == 8
    assert {_ray_command("ray", ["start"], c[2:])["address"] for c in starts[1:]} == {"n1:6379"}


@needs_openrlhf
def test_grpo_validation_has_teeth(env_for, openrlhf_version):
    # OpenRLHF's own assert: a group baseline needs groups
    with pytest.raises(AssertionError, match="group_norm requires n_samples_per_prompt > 1"):
        _grpo(dry_run("train_grpo.sh", env_for(N_SAMPLES="1")))
    cmd = [c for c in find(dry_run("train_grpo.sh", env_for()), "ray") if c[1] == "job"][0]
    _, argv = split_at(cmd, ["python3", "-m", "openrlhf.cli.train_ppo_ray"])
    # an abbreviation parses, but is caught by the exact-name check
    parser, a, _ = parse_openrlhf("openrlhf.cli.train_ppo_ray", [*argv, "--rollout.n_samples", "5"])
    assert undefined_flags(parser, ["--rollout.n_samples"]) == ["--rollout.n_samples"]
    # the names OpenRLHF renamed in 0.10.2 are rejected
    for old in (["--remote_rm_url", "http://x/get_reward"], ["--label_key", "label"]):
        with pytest.raises(ParseFailure, match="unrecognized arguments"):
            parse_openrlhf("openrlhf.cli.train_ppo_ray", [*argv, *old])
    proc = run_recipe("train_grpo.sh", env_for(TRAIN_BATCH_SIZE="100"))
    assert proc.returncode != 0 and "must be a multiple of" in proc.stderr


# ---------------------------------------------------------------------------------------
# The project's own commands and lm-eval
# ---------------------------------------------------------------------------------------

def _all_project_commands(env_for, tmp_path) -> list[list[str]]:
    config = tmp_path / "reward.yaml"
    config.write_text("backend: rules\n")
    runs = [
        ("build_weval.sh", {}, []),
        ("build_weval.sh", {"TEACHER_BASE_URL": "http://teacher:8000/v1", "TEACHER_MODEL": "", "LIMIT": "10"}, []),
        ("build_pairs.sh", {}, []),
        ("build_pairs.sh", {"RAW": "1", "EVAL_EVERY": "0", "LEVELS": "3", "GRANULARITY": "both"}, []),
        ("serve_rm.sh", {"BACKEND_ARGS": "normalize=true max_length=4096", "GPUS": "0 1"}, []),
        ("serve_rm.sh", {"BACKEND": "rules", "RM_MODEL": "", "RM_CONFIG": str(config), "GPUS": "cpu"}, []),
        ("serve_rm.sh", {"RAY_SERVE": "1", "AUTOSCALE": "2:8", "GPUS": "0 1"}, []),
        ("eval_weval.sh", {"JUDGE_MODELS": "Qwen/Qwen2.5-72B-Instruct", "RM_ARGS": "dtype=bfloat16,max_length=4096",
                           "REWARD_URLS": "http://a:5000/get_reward?api_key=k,http://b:5001/get_reward",
                           "WEVAL_DATA": str(config), "LIMIT": "3"}, []),
        ("train_grpo.sh", {"REWARD_CONFIG": str(config)}, []),
        ("train_classifier.sh", {}, []),
        ("train_classifier.sh", {"MODEL": "", "MAX_MINUTES": "5"}, ["--threads", "4"]),
    ]
    cmds = []
    for script, overrides, args in runs:
        cmds += dry_run(script, env_for(**overrides), args)
    return cmds


def _parse_lm_eval(argv: list[str]):
    from lm_eval._cli import HarnessCLI

    import weval_tasks.models  # noqa: F401  (registers rules / rm / remote-rm, as `weval` does)

    cli = HarnessCLI()
    old = sys.argv
    sys.argv = ["lm_eval", *argv]
    try:
        args = cli.parse_args()
    except SystemExit as e:
        raise ParseFailure(f"lm-eval rejected {argv} (exit {e.code})") from None
    finally:
        sys.argv = old
    run_parser = cli._subparsers.choices["run"]
    assert not undefined_flags(run_parser, argv), undefined_flags(run_parser, argv)
    return args


def _init_params_from_source(module: str, cls_name: str) -> set[str]:
    import ast

    path = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(path).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    a = init.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} - {"self"}


def _check_model_args(model: str, model_args) -> None:
    from lm_eval.api.registry import get_model
    from lm_eval.utils import simple_parse_args_string

    from openrlhf_reward.scorers import scorer_class

    kwargs = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args)
    if model == "vllm":  # lm-eval's vllm model imports vllm at load: read its __init__ from source
        accepted = _init_params_from_source("lm_eval.models.vllm_causallms", "VLLM")
    else:
        accepted = set(inspect.signature(get_model(model).__init__).parameters) - {"self", "kwargs"}
    if model == "rm":
        accepted |= {f for f in scorer_class(kwargs["backend"]).config_class.__dataclass_fields__}
    elif model == "remote-rm":
        accepted |= {f for f in scorer_class("remote").config_class.__dataclass_fields__}
    else:  # vllm: named parameters, or vLLM engine arguments (**kwargs) like gpu_memory_utilization
        accepted |= set(kwargs) - {"pretrained", "tensor_parallel_size", "dtype", "max_model_len"}
    unknown = sorted(set(kwargs) - accepted)
    assert not unknown, f"--model {model}: unknown model_args {unknown}"


def test_project_commands_parse_with_their_own_parsers(env_for, tmp_path):
    from openrlhf_reward.cli import build_parser

    cmds = _all_project_commands(env_for, tmp_path)
    ours = find(cmds, "openrlhf-reward")
    assert {c[1] for c in ours} == {"build-weval", "build-pairs", "build-grpo", "serve", "reward-func-path",
                                    "train-classifier"}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for argv in ours:
        parser.parse_args(argv[1:])  # SystemExit on an unknown or invalid flag
        assert not undefined_flags(sub[argv[1]], argv[2:]), (argv, undefined_flags(sub[argv[1]], argv[2:]))
    for name in {c[1] for c in ours}:  # each subcommand the recipes use has a working --help
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(["serve", "--backend", "bt", "--no-such-flag"])  # unknown flags do fail
    assert exit_info.value.code == 2

    reports = [c for c in find(cmds, "weval") if c[1] == "report"]
    assert len(reports) == 1
    from weval_tasks.report import main as report_main

    with capture_parsers() as parsers:  # parse only: the run folders do not exist, so it stops there
        assert report_main(reports[0][2:]) == 2
    assert not undefined_flags(parsers[0], reports[0][2:])
    assert {"--json", "--plot"} <= set(reports[0])

    evals = [c for c in find(cmds, "weval") if c[1] != "report"] + find(cmds, "lm_eval")
    models = set()
    for argv in evals:
        args = _parse_lm_eval(argv[1:])
        models.add(args.model)
        _check_model_args(args.model, args.model_args or "")
        if argv[0] == "lm_eval":
            assert args.include_path in (str(ROOT / "weval_tasks" / "tasks"), [str(ROOT / "weval_tasks" / "tasks")])
            assert args.tasks == ["wevaljudge_*"]
            assert args.apply_chat_template  # the backend's verdict messages, chat-rendered
        else:
            assert args.tasks == ["weval_*"]
        metadata = args.metadata if isinstance(args.metadata, dict) else json.loads(args.metadata)
        assert metadata["data_files"] and args.log_samples and args.output_path
    assert models == {"rules", "rm", "vllm", "remote-rm"}
    remote = next(a for a in evals if "remote-rm" in a)
    assert "url=http://a:5000/get_reward|http://b:5001/get_reward," in " ".join(remote)  # key not in the URL


def test_ray_cluster_commands_parse(env_for):
    head = find(dry_run("ray_cluster.sh", env_for(NODE_IP="10.0.0.5"), ["head"]), "ray")
    params = _ray_command("ray", ["start"], head[0][2:])
    assert params["head"] and params["port"] == 6379 and params["num_gpus"] == 8
    assert params["dashboard_host"] == "127.0.0.1" and params["node_ip_address"] == "10.0.0.5"
    worker = find(dry_run("ray_cluster.sh", env_for(RAY_HEAD_ADDR="head-node", GPUS_PER_NODE="4"), ["worker"]), "ray")
    params = _ray_command("ray", ["start"], worker[0][2:])
    assert params["address"] == "head-node:6379" and params["num_gpus"] == 4 and not params["head"]
    proc = run_recipe("ray_cluster.sh", env_for(), ["worker"])
    assert proc.returncode != 0 and "RAY_HEAD_ADDR" in proc.stderr


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_serve_command_parses_with_vllm(env_for):
    from vllm_fixture import require_vllm_python

    py = require_vllm_python()
    (cmd,) = find(dry_run("build_weval.sh", env_for(VLLM_ARGS="--enable-prefix-caching")), "vllm")
    script = (
        "import json, sys\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "import vllm.entrypoints.cli.serve as serve\n"
        "parser = FlexibleArgumentParser(prog='vllm')\n"
        "sp = serve.ServeSubcommand().subparser_init(parser.add_subparsers(dest='subparser'))\n"
        "argv = json.loads(sys.argv[1])\n"
        "args = parser.parse_args(argv)\n"
        "bad = [a for a in argv if a.startswith('--') and a.split('=')[0] not in sp._option_string_actions]\n"
        "print(json.dumps({'model': args.model_tag, 'tp': args.tensor_parallel_size,\n"
        "                  'len': args.max_model_len, 'bad': bad}))\n"
    )
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu")
    proc = subprocess.run([py, "-c", script, json.dumps(cmd[1:])], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"model": "Qwen/Qwen2.5-72B-Instruct", "tp": 8, "len": 16384, "bad": []}


# ---------------------------------------------------------------------------------------
# Real CPU runs: serve_rm.sh replicas (rules backend), eval_weval.sh against them
# ---------------------------------------------------------------------------------------

def _free_base_port(n: int) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def rules_servers(shims, tmp_path_factory):
    """serve_rm.sh for real: two CPU replicas of the rules backend; yields (urls, ports)."""
    run_dir = tmp_path_factory.mktemp("serve_run")
    base = _free_base_port(2)
    env = recipe_env(shims, run_dir, dry_run=False, BACKEND="rules", RM_MODEL="", GPUS="cpu cpu",
                     BASE_PORT=str(base), READY_TIMEOUT="180")
    proc = subprocess.Popen(["bash", str(RECIPES / "serve_rm.sh")], env=env, cwd=run_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url_file = run_dir / "rm_serve" / "reward_urls.txt"
    deadline = time.time() + 240
    while not url_file.exists():
        if proc.poll() is not None or time.time() > deadline:
            out = proc.stdout.read() if proc.poll() is not None else "(still running)"
            proc.kill()
            pytest.fail(f"serve_rm.sh did not come up (exit {proc.poll()}):\n{out}")
        time.sleep(0.5)
    urls = url_file.read_text().strip().split(",")
    try:
        yield urls, [base, base + 1], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow  # starts reward-server processes
def test_serve_rm_script_runs_replicas_and_stops_them(rules_servers):
    import httpx

    from openrlhf_reward.checks import run_check
    from openrlhf_reward.schema import Requirement, build_prompt

    urls, ports, proc = rules_servers
    assert urls == [f"http://127.0.0.1:{p}/get_reward" for p in ports]
    reqs = [
        {"id": "c1", "type": "length", "text": "Use exactly two sentences.", "check": {"kind": "sentence_count", "exact": 2}},
        {"id": "c2", "type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}},
        {"id": "c3", "type": "content", "text": "Mention the sea.", "check": {"kind": "contains_all", "keywords": ["sea"]}},
    ]
    prompt = ("<|im_start|>user\n" + build_prompt("Write about the coast.", [Requirement.from_dict(r) for r in reqs])
              + "<|im_end|>\n<|im_start|>assistant\n")
    for response in ("the sea is calm. the sky is grey.", "The Sea is calm."):
        expected = sum(run_check(response, r["check"]) for r in reqs) / len(reqs)
        body = {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [{"requirements": reqs}]}
        for url in urls:  # one OpenRLHF-style single-sample request per replica
            r = httpx.post(url, json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["rewards"] == pytest.approx([expected])
    # Stopping the script stops every replica it started.
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.time() + 30
    while any(_port_open(p) for p in ports) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(_port_open(p) for p in ports), "replicas still listening after serve_rm.sh was stopped"


@pytest.mark.slow
def test_eval_weval_script_end_to_end(shims, tmp_path):
    """eval_weval.sh for real: the rules baseline and the same backend behind serve_rm.sh give
    one comparison table with identical rows (the server path changes nothing)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    base = _free_base_port(1)
    serve_env = recipe_env(shims, run_dir, dry_run=False, BACKEND="rules", RM_MODEL="", GPUS="cpu",
                           BASE_PORT=str(base), DETACH="1", READY_TIMEOUT="180")
    served = run_recipe("serve_rm.sh", serve_env, timeout=240)
    assert served.returncode == 0, served.stdout + served.stderr
    pids = [int(p) for p in (run_dir / "rm_serve" / "pids").read_text().split()]
    try:
        demo = ROOT / "weval_tasks" / "data" / "weval_demo.jsonl"  # through --metadata data_files
        env = recipe_env(shims, run_dir, dry_run=False, RM_MODELS="", LIMIT="2", PLOT="0", WEVAL_DATA=str(demo))
        proc = run_recipe("eval_weval.sh", env, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    assert "| run | task | correlation | il | pl |" in proc.stdout  # weval report's table
    rows = json.loads((run_dir / "eval" / "comparison.json").read_text())
    assert len(rows) == 2
    local, remote = sorted(rows, key=lambda r: r["label"] != "rules")
    assert local["label"] == "rules" and remote["label"].startswith("remote-rm(url=http://127.0.0.1:")
    assert local["tasks"]["weval_all"]["correlation"] is not None
    assert local["tasks"] == remote["tasks"] and local["per_type"] == remote["per_type"]  # same numbers
    for name in ("rules", "remote-rm"):
        assert list((run_dir / "eval" / name).rglob("results_*.json"))
        samples = list((run_dir / "eval" / name).rglob("samples_weval-*.jsonl"))  # --log_samples
        assert len(samples) == 5 and all(len(f.read_text().splitlines()) == 2 for f in samples)  # LIMIT 2
    assert list((run_dir / "eval" / "logs").glob("eval_weval-*.log"))


# ---------------------------------------------------------------------------------------
# train_cerm.sh (CE-RM: GRPO with the two-stage rollout agent, no reward server)
# ---------------------------------------------------------------------------------------

def test_train_cerm_usage_strict_mode_and_variables(env_for):
    test_recipe_has_usage_strict_mode_and_documents_its_variables("train_cerm.sh", env_for)


@needs_openrlhf
def test_train_cerm_defaults_parse_with_openrlhf(env_for, tmp_path, openrlhf_version):
    from openrlhf_reward.cerm.rollout import CermAgentConfig

    env = env_for()
    run_dir = Path(env["RUN_DIR"])
    cmds = dry_run("train_cerm.sh", env)
    assert not find(cmds, "openrlhf-reward")  # no PAIRS: the rows are used as they are
    params, a, _ = _grpo(cmds)
    agent = ROOT / "openrlhf_reward" / "cerm" / "agent.py"
    assert a.train.agent_func_path == str(agent) and agent.is_file()
    assert a.reward.remote_url == ["agent"]  # what OpenRLHF sets when the agent computes rewards
    assert a.algo.advantage.estimator == "group_norm" and a.critic.model_name_or_path is None
    assert a.actor.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507"
    assert a.data.prompt_dataset == str(run_dir / "cerm_data" / "rows.jsonl")
    assert a.data.input_key == "input" and a.data.label_key == "label" and a.data.apply_chat_template
    # the paper's RL settings: mini-batch 64, 4 mini-batches per step, lr 2e-6, KL 1e-3
    assert a.rollout.batch_size * a.rollout.n_samples_per_prompt == 4 * a.train.batch_size == 256
    assert (a.actor.adam.lr, a.algo.kl.init_coef, a.algo.kl.use_loss) == (2e-6, 1e-3, True)
    world = a.actor.num_nodes * a.actor.num_gpus_per_node
    assert a.train.batch_size % (a.train.micro_batch_size * world) == 0
    assert a.train.colocate_all and world == a.vllm.num_engines * a.vllm.tensor_parallel_size
    assert a.eval.dataset is None
    assert a.vllm.enable_prefix_caching  # counterparts share the query + criteria prefix
    # the agent's settings travel in the job's environment, and the agent reads every one
    env_vars = json.loads(params["runtime_env_json"])["env_vars"]
    cfg = CermAgentConfig.from_env(env_vars)
    assert (cfg.counterparts, cfg.tie_reward, cfg.malformed_reward) == (2, 0.0, -1.0)
    assert (cfg.criteria_max_tokens, cfg.eval_max_tokens, cfg.max_response_chars) == (2048, 4096, 16000)
    assert {k for k in env_vars if k.startswith("CERM_")} == {
        "CERM_" + f.upper() for f in ("counterparts", "tie_reward", "malformed_reward", "no_counterpart_reward",
                                      "criteria_max_tokens", "eval_max_tokens", "max_response_chars")}


@needs_openrlhf
def test_train_cerm_builds_rows_from_pairs_and_passes_overrides(env_for, tmp_path, openrlhf_version):
    from openrlhf_reward.cerm.rollout import CermAgentConfig
    from openrlhf_reward.cli import build_parser

    tmpl = tmp_path / "eval.txt"
    tmpl.write_text("{response}")
    env = env_for(PAIRS=str(tmp_path / "pairs.parquet"), COUNTERPARTS="4", TIE_REWARD="0.5",
                  EVAL_TEMPLATE_FILE=str(tmpl), EVAL_PROMPT_DATA=str(tmp_path / "eval.jsonl"),
                  RAY_WORKING_DIR=str(tmp_path), N_SAMPLES="4", NUM_NODES="2")
    cmds = dry_run("train_cerm.sh", env, ["--data.max_samples", "100"])
    (build,) = find(cmds, "openrlhf-reward")
    ns = build_parser().parse_args(build[1:])  # this package's own parser
    rows = str(Path(env["RUN_DIR"]) / "cerm_data" / "rows.jsonl")
    assert (ns.command, ns.input, ns.output) == ("build-cerm", str(tmp_path / "pairs.parquet"), rows)
    params, a, _ = _grpo(cmds)
    assert a.data.prompt_dataset == rows and a.eval.dataset == str(tmp_path / "eval.jsonl")
    assert a.rollout.n_samples_per_prompt == 4 and a.data.max_samples == 100
    assert (a.actor.num_nodes, a.vllm.num_engines) == (2, 16)
    runtime = json.loads(params["runtime_env_json"])
    assert runtime["working_dir"] == str(tmp_path)
    cfg = CermAgentConfig.from_env(runtime["env_vars"])
    assert (cfg.counterparts, cfg.tie_reward, cfg.eval_template_file) == (4, 0.5, str(tmpl))


def test_train_cerm_validation_has_teeth(env_for):
    proc = run_recipe("train_cerm.sh", env_for(N_SAMPLES="1"))
    assert proc.returncode != 0 and "N_SAMPLES must be >= 2" in proc.stderr
    proc = run_recipe("train_cerm.sh", env_for(TRAIN_BATCH_SIZE="100"))
    assert proc.returncode != 0 and "must be a multiple of" in proc.stderr
    proc = run_recipe("train_cerm.sh", env_for(COUNTERPARTS="0"))
    assert proc.returncode != 0 and "COUNTERPARTS must be >= 1" in proc.stderr


def test_train_cerm_dry_run_creates_nothing(env_for, tmp_path):
    assert dry_run("train_cerm.sh", env_for(PAIRS=str(tmp_path / "p.jsonl")))
    leftovers = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert not leftovers, f"DRY_RUN wrote files: {leftovers}"


def test_train_classifier_recipe_flags(env_for):
    from openrlhf_reward.cli import build_parser

    (default,) = find(dry_run("train_classifier.sh", env_for()), "openrlhf-reward")
    args = build_parser().parse_args(default[1:])
    assert args.command == "train-classifier" and args.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert args.input.endswith("/weval/weval.jsonl") and args.output.endswith("/rm_classifier/model")
    assert args.max_minutes is None and args.max_length == 1024 and args.seed == 42
    (cpu,) = find(dry_run("train_classifier.sh", env_for(MODEL="", MAX_MINUTES="12", LR="1e-4"), ["--threads", "2"]),
                  "openrlhf-reward")
    args = build_parser().parse_args(cpu[1:])
    assert args.base_model is None and args.max_minutes == 12.0 and args.lr == 1e-4 and args.threads == 2
