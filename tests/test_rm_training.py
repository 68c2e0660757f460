"""Bradley-Terry RM training on WRL pairs with OpenRLHF 0.11.2's own code, on CPU.

1. recipes/build_pairs.sh runs for real (the pair and GRPO builders behind it) against a
   scripted OpenAI-compatible teacher over the embedded demo instructions.
2. recipes/train_rm_bt.sh's command line (DRY_RUN, with CPU-sized variables: margin loss on,
   packing off, tiny model) is parsed by OpenRLHF's train_rm parser, and OpenRLHF's own
   ``train(args)`` runs on it: get_llm_for_sequence_regression, get_tokenizer,
   blending_datasets, RewardDataset, RewardModelTrainer.fit (PairWiseLoss with margins, the
   evaluation that sets mean/std), value_head_prefix, save_model. Only DeepSpeed is swapped
   for a single-process CPU stand-in (plain torch AdamW, the same LR schedule).
3. The loss on the training pairs falls and every chosen answer ends up above its rejected one.
4. The reward server's `bt` backend loads the saved checkpoint and scores the pairs exactly
   like OpenRLHF's reward model does (same token ids, same numbers).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from recipe_helpers import (
    ROOT,
    dry_run,
    find,
    import_openrlhf_cli,
    make_shims,
    parse_openrlhf,
    recipe_env,
    run_recipe,
    split_at,
)

pytestmark = [
    pytest.mark.slow,  # trains with OpenRLHF's train_rm
    pytest.mark.openrlhf,
    pytest.mark.skipif(importlib.util.find_spec("openrlhf") is None, reason="openrlhf==0.11.2 is not installed"),
]
DEMO = ROOT / "weval_tasks" / "data" / "weval_demo.jsonl"
N_TRAIN = 8  # pairs trained on (--data.max_samples)
BATCH = 4
EPOCHS = 8


@pytest.fixture(scope="module")
def wrl_data(tmp_path_factory) -> Path:
    """recipes/build_pairs.sh for real: demo instructions -> pairs / GRPO rows, scripted teacher."""
    from scripted_openai_server import MODEL, ScriptedServer

    base = tmp_path_factory.mktemp("wrl")
    bin_dir = make_shims(base / "bin")
    with ScriptedServer() as teacher:
        env = recipe_env(bin_dir, base / "run", dry_run=False, INSTRUCTIONS=str(DEMO), EVAL_EVERY="5",
                         TEACHER_BASE_URL=teacher.base_url, TEACHER_MODEL=MODEL, CONCURRENCY="8")
        (base / "run").mkdir()
        proc = run_recipe("build_pairs.sh", env, ["--no-progress"], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = base / "run" / "wrl_data"
    assert list((out / "logs").glob("build_pairs-*.log"))
    return out


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny matrices: extra threads only contend on a shared CPU (measured ~15x slower with 2)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_build_pairs_recipe_outputs(wrl_data):
    demo = _rows(DEMO)
    train_ids = {d["id"] for i, d in enumerate(demo, 1) if i % 5}
    eval_ids = {d["id"] for i, d in enumerate(demo, 1) if i % 5 == 0}
    pairs, pairs_eval = _rows(wrl_data / "pairs.jsonl"), _rows(wrl_data / "pairs_eval.jsonl")
    grpo, grpo_eval = _rows(wrl_data / "grpo.jsonl"), _rows(wrl_data / "grpo_eval.jsonl")
    for p in pairs + pairs_eval:  # the train_rm input schema the recipe's flags point at
        assert p["prompt"][0]["role"] == "user" and p["chosen"][0]["role"] == "assistant"
        assert p["rejected"][0]["role"] == "assistant" and p["margin"] == len(p["dropped"]) >= 1
    assert {p["source"]["instruction"] for p in pairs} == train_ids  # held-out split by instruction
    assert {p["source"]["instruction"] for p in pairs_eval} == eval_ids
    assert {r["id"] for r in grpo} == train_ids and {r["id"] for r in grpo_eval} == eval_ids
    for r in grpo:  # the train_ppo_ray input: --data.input_key input --data.label_key label
        assert r["input"][0]["role"] == "user" and r["label"]["requirements"]


class CPUStrategy:
    """Single-process CPU stand-in for OpenRLHF's DeepspeedStrategy (a unit-test double).

    Same interface as far as train_rm / RewardModelTrainer use it. DeepSpeed's bf16 training
    keeps fp32 master weights and saves 16-bit weights; here the model is trained in fp32 and
    cast back to bf16 before OpenRLHF's own ``save_model`` writes it.
    """

    def __init__(self, args) -> None:
        self.args = args
        assert args.train.batch_size == args.train.micro_batch_size, "no gradient accumulation here"
        self.accumulated_gradient = 1
        self.ring_attn_group = None
        self.train_logs: list[dict] = []
        self.grad_norm = 0.0

    def setup_distributed(self) -> None:
        pass

    def get_ds_train_config(self, *a, **k):
        return None

    def print(self, *a, **k) -> None:
        pass

    def is_rank_0(self) -> bool:
        return True

    def setup_dataloader(self, dataset, batch_size, pin_memory=False, shuffle=True, collate_fn=None,
                         drop_last=True, **_):
        import torch

        gen = torch.Generator().manual_seed(self.args.train.seed)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                           collate_fn=collate_fn, drop_last=drop_last)

    def prepare(self, model_and_cfg):
        import torch
        from transformers.trainer import get_scheduler

        model, cfg = model_and_cfg
        assert cfg["optim"] == "adam"
        model.float()  # fp32 master weights
        adam = cfg["adam"]
        optim = torch.optim.AdamW(model.parameters(), lr=adam["lr"], betas=tuple(adam["betas"]),
                                  eps=adam["eps"], weight_decay=adam["weight_decay"])
        steps = cfg["scheduler_steps"]
        kwargs = {"min_lr_rate": cfg["min_lr_ratio"]} if "min_lr" in cfg["lr_scheduler"] else {}
        scheduler = get_scheduler(cfg["lr_scheduler"], optim,
                                  num_warmup_steps=math.ceil(steps * cfg["lr_warmup_ratio"]),
                                  num_training_steps=steps, scheduler_specific_kwargs=kwargs)
        self.max_norm = cfg["max_norm"]
        return model, optim, scheduler

    def backward(self, loss, model, optimizer) -> None:
        loss.backward()

    def optimizer_step(self, optimizer, model, scheduler) -> None:
        import torch

        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def get_grad_norm(self, model) -> float:
        return self.grad_norm

    def all_reduce(self, data, op="mean"):
        if isinstance(data, dict) and "loss" in data:
            self.train_logs.append(dict(data))
        return data

    def all_gather(self, data):
        return data

    def _unwrap_model(self, model):
        return model

    def load_ckpt(self, *a, **k):
        raise AssertionError("no resume in this test")

    def save_ckpt(self, *a, **k):
        raise AssertionError("no intermediate DeepSpeed checkpoints in this test")

    def save_model(self, model, tokenizer, output_dir, **kwargs) -> None:
        """OpenRLHF's DeepspeedStrategy.save_model itself, for one process (no barrier, no CUDA)."""
        import torch
        from openrlhf.utils.deepspeed import deepspeed as ds_module

        model.to(torch.bfloat16)  # DeepSpeed bf16 saves the 16-bit weights
        one_process = SimpleNamespace(
            is_rank_0=lambda: True, _unwrap_model=self._unwrap_model, ds_tensor_parallel_size=1, stage=2,
            args=SimpleNamespace(ds=SimpleNamespace(zero_stage=2, tensor_parallel_size=1)),
        )
        barrier = ds_module.torch_dist_barrier_and_cuda_sync
        ds_module.torch_dist_barrier_and_cuda_sync = lambda: None
        try:
            ds_module.DeepspeedStrategy.save_model(one_process, model, tokenizer, output_dir, **kwargs)
        finally:
            ds_module.torch_dist_barrier_and_cuda_sync = barrier


def _pair_stats(trainer):
    """Mean PairWiseLoss (with margins) and chosen - rejected differences over the training pairs."""
    import torch

    trainer.model.eval()
    total, diffs = 0.0, []
    with torch.no_grad():
        for chosen_ids, c_mask, reject_ids, r_mask, margin in trainer.train_dataloader:
            chosen, rejected, _ = trainer.concatenated_forward(trainer.model, chosen_ids, c_mask, reject_ids, r_mask)
            m = torch.tensor(margin) if trainer.margin_loss else None
            total += trainer.loss_fn(chosen, rejected, m).item() * len(chosen)
            diffs += (chosen - rejected).tolist()
    trainer.model.train()
    return total / len(diffs), diffs


def save_untrained(strategy: CPUStrategy, model, tokenizer, output_dir: Path, value_head_prefix: str) -> None:
    """Save the reward model exactly as train_rm initialised it (``init_value_head=True``, its
    seed), before any step, in the layout train_rm saves at the end: train_rm's own epilogue
    (``config.value_head_prefix``, then ``strategy.save_model``) run on a copy, so the model
    being trained is not touched. No ``mean``/``std`` in its config: those are set by
    ``RewardModelTrainer.evaluate``, which has not run yet."""
    import copy

    step0 = copy.deepcopy(strategy._unwrap_model(model))
    step0.config.value_head_prefix = value_head_prefix
    strategy.save_model(step0, tokenizer, str(output_dir))
    del step0


def train_rm_on_cpu(args, untrained_dir: Path | None = None) -> SimpleNamespace:
    """OpenRLHF's own ``train_rm.train(args)`` with :class:`CPUStrategy` for DeepSpeed; returns the
    strategy (its ``train_logs``), the trainer and the pair statistics before and after ``fit``
    (shared with ``benchmarks/train_rm_demo.py``). With ``untrained_dir``, the freshly
    initialised reward model is saved there first (:func:`save_untrained`)."""
    import torch

    train_rm = import_openrlhf_cli("openrlhf.cli.train_rm")
    seen: dict = {}

    class RecordingTrainer(train_rm.RewardModelTrainer):
        def fit(self, *a, **k):
            seen["trainer"] = self
            if untrained_dir is not None:
                save_untrained(strategy, self.model, self.tokenizer, untrained_dir, args.ds.value_head_prefix)
            seen["before"] = _pair_stats(self)
            super().fit(*a, **k)
            seen["after"] = _pair_stats(self)

    strategy = CPUStrategy(args)
    orig = train_rm.get_strategy, train_rm.RewardModelTrainer
    train_rm.get_strategy, train_rm.RewardModelTrainer = (lambda a: strategy), RecordingTrainer
    try:
        torch.manual_seed(0)
        train_rm.train(args)
    finally:
        train_rm.get_strategy, train_rm.RewardModelTrainer = orig
    return SimpleNamespace(strategy=strategy, **seen)


@pytest.fixture(scope="module")
def trained_rm(wrl_data, tmp_path_factory):
    """OpenRLHF train_rm's train() on the recipe's command line; returns what it produced."""
    import tiny_models

    base = tmp_path_factory.mktemp("rm")
    model_dir = tiny_models.build_causal_lm(base / "tiny_base")
    run_dir = base / "run"
    run_dir.mkdir()
    env = recipe_env(make_shims(base / "bin"), run_dir, MODEL=str(model_dir),
                     TRAIN_DATA=str(wrl_data / "pairs.jsonl"), EVAL_DATA=str(wrl_data / "pairs_eval.jsonl"),
                     MARGIN_LOSS="1", PACKING="0", GRAD_CKPT="0", ATTN_IMPL="eager", NUM_GPUS="1",
                     TRAIN_BATCH_SIZE=str(BATCH), MICRO_BATCH_SIZE=str(BATCH), MAX_LEN="512",
                     MAX_EPOCHS=str(EPOCHS), LR="2e-3")
    (cmd,) = find(dry_run("train_rm_bt.sh", env, ["--data.max_samples", str(N_TRAIN)]), "deepspeed")
    _, argv = split_at(cmd, ["--module", "openrlhf.cli.train_rm"])
    _, args, _ = parse_openrlhf("openrlhf.cli.train_rm", argv)
    assert args.model.margin_loss_enable and args.data.apply_chat_template

    run = train_rm_on_cpu(args, untrained_dir=base / "untrained")
    return SimpleNamespace(args=args, ckpt=Path(args.ckpt.output_dir), untrained=base / "untrained", **vars(run))


def test_openrlhf_train_rm_learns_the_wrl_pairs(trained_rm):
    loss0, diffs0 = trained_rm.before
    loss1, diffs1 = trained_rm.after
    print(f"pair loss {loss0:.3f} -> {loss1:.3f}; chosen-rejected mean {sum(diffs0) / len(diffs0):+.3f} -> "
          f"{sum(diffs1) / len(diffs1):+.3f}, min {min(diffs1):+.3f}")
    assert len(diffs1) == N_TRAIN
    assert loss1 < 0.5 * loss0, (loss0, loss1)
    assert all(d > 0 for d in diffs1), diffs1  # every chosen answer above its rejected one
    assert sum(diffs1) / len(diffs1) > sum(diffs0) / len(diffs0) + 1.0
    logs = [log["loss"] for log in trained_rm.strategy.train_logs]  # PairWiseLoss per step, as logged
    assert len(logs) == EPOCHS * N_TRAIN // BATCH
    assert sum(logs[-2:]) / 2 < sum(logs[:2]) / 2


def test_checkpoint_has_train_rm_layout(trained_rm):
    cfg = json.loads((trained_rm.ckpt / "config.json").read_text())
    assert cfg["value_head_prefix"] == "score"
    assert cfg["std"] > 0 and math.isfinite(cfg["mean"])  # set by RewardModelTrainer.evaluate
    assert cfg["normalize_reward"] is False
    from safetensors import safe_open

    files = list(trained_rm.ckpt.glob("*.safetensors"))
    keys: dict = {}
    for f in files:
        with safe_open(str(f), "pt") as st:
            keys.update({k: st.get_slice(k).get_shape() for k in st.keys()})
    hidden = cfg["hidden_size"]
    assert keys["score.weight"] == [1, hidden] and "score.bias" not in keys
    assert any(k.startswith("model.layers.0.") for k in keys) and "lm_head.weight" not in keys
    assert (trained_rm.ckpt / "tokenizer_config.json").exists()


def test_bt_backend_scores_the_checkpoint_like_openrlhf(trained_rm, wrl_data):
    import torch
    from openrlhf.datasets import RewardDataset
    from openrlhf.datasets.utils import blending_datasets
    from openrlhf.models import get_llm_for_sequence_regression
    from openrlhf.utils import get_tokenizer

    from openrlhf_reward.schema import Requirement
    from openrlhf_reward.scorers import ScoreRequest, get_scorer

    args, ckpt = trained_rm.args, str(trained_rm.ckpt)
    # OpenRLHF's side: its reward model reloaded from the checkpoint, its dataset's token ids.
    model = get_llm_for_sequence_regression(ckpt, "reward", param_dtype="bf16", attn_implementation="eager")
    model.float().eval()
    tokenizer = get_tokenizer(ckpt, model, "left", None)
    strategy = CPUStrategy(args)
    data = blending_datasets(args.data.dataset, None, strategy, args.train.seed, max_count=N_TRAIN)
    data = data.select(range(N_TRAIN))
    dataset = RewardDataset(data, tokenizer, args.data.max_len, strategy, num_processors=1)

    scorer = get_scorer("bt", model=ckpt, device="cpu", dtype="float32", max_length=args.data.max_len,
                        attn_implementation="eager")
    requests, expected = [], []
    for i, row in enumerate(data):
        chosen_ids, c_mask, reject_ids, r_mask, _ = dataset[i]
        for ids, mask, answer in ((chosen_ids, c_mask, row["chosen"]), (reject_ids, r_mask, row["rejected"])):
            req = ScoreRequest(prompt=row["prompt"][0]["content"], response=answer[0]["content"],
                               requirements=[Requirement.from_dict(r) for r in row["requirements"]])
            # the same tokens train_rm trained on
            assert scorer.encode_text(scorer.format_text(req.prompt, req.response))[0] == ids[0].tolist()
            with torch.no_grad():
                expected.append(model(ids, attention_mask=mask).item())
            requests.append(req)
    got = [r.reward for r in scorer.score(requests)]
    assert got == pytest.approx(expected, abs=1e-4)
    assert all(got[2 * i] > got[2 * i + 1] for i in range(N_TRAIN))  # chosen above rejected, served

    cfg = json.loads((trained_rm.ckpt / "config.json").read_text())
    normed = get_scorer("bt", model=ckpt, device="cpu", dtype="float32", normalize=True,
                        max_length=args.data.max_len, attn_implementation="eager")
    got_norm = [r.reward for r in normed.score(requests[:4])]
    assert got_norm == pytest.approx([(g - cfg["mean"]) / cfg["std"] for g in got[:4]], abs=1e-4)


def test_untrained_checkpoint_is_the_step_0_model(trained_rm, wrl_data):
    """The untrained head saved before step 1 has train_rm's layout, loads in `bt`, and scores the
    training pairs exactly as the model did before ``fit`` (the ``before`` statistics)."""
    from openrlhf_reward.scorers import ScoreRequest, get_scorer

    cfg = json.loads((trained_rm.untrained / "config.json").read_text())
    assert cfg["value_head_prefix"] == "score" and "mean" not in cfg  # evaluate() has not run yet
    kw = {"device": "cpu", "dtype": "float32", "max_length": trained_rm.args.data.max_len,
          "attn_implementation": "eager"}
    rows = _rows(wrl_data / "pairs.jsonl")[:N_TRAIN]
    requests = [ScoreRequest(prompt=r["prompt"][0]["content"], response=r[side][0]["content"])
                for r in rows for side in ("chosen", "rejected")]
    untrained = [x.reward for x in get_scorer("bt", model=str(trained_rm.untrained), **kw).score(requests)]
    trained = [x.reward for x in get_scorer("bt", model=str(trained_rm.ckpt), **kw).score(requests)]
    diffs = sorted(untrained[2 * i] - untrained[2 * i + 1] for i in range(N_TRAIN))
    assert diffs == pytest.approx(sorted(trained_rm.before[1]), abs=1e-4)  # the dataloader shuffles
    assert max(abs(u - t) for u, t in zip(untrained, trained, strict=True)) > 1e-2
