"""``build-weval``: a WEval benchmark file from seed instructions with a teacher.

Pipeline (each stage resumable through the work store of one :class:`~.runner.Build`):

1. **categories** -- embed the seeds, assign each to the nearest prototype centroid
   (:mod:`.categories`); seeds below the similarity threshold are dropped and counted.
2. **requirements** -- seeds that list their own requirements keep them; the others get
   ``n_requirements`` from the teacher as strict JSON (:mod:`.augment`), retried up to
   ``max_attempts`` times, then recorded as rejects with the reason.
3. **candidates** -- seeded nested dropout (:mod:`.dropout`) gives one prompt per level,
   rebuilt from the query and the kept requirements; the teacher answers each once.
4. **assemble** -- one WEval document per surviving seed, validated with
   :meth:`WEvalDocument.from_dict`, written atomically in seed order; rejects and a summary
   (kept, rejected by reason) are written to the work dir.

Keys carry the seed id and a hash of its text, so editing a seed invalidates only its own
work, and appending seeds to the file extends a finished build.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.augment import (
    augmentation_messages,
    parse_requirements_json,
    requirements_json_schema,
)
from openrlhf_reward.builders.dropout import dropout_levels, shuffled_order
from openrlhf_reward.builders.runner import Build
from openrlhf_reward.builders.seeds import Seed, load_seeds
from openrlhf_reward.builders.store import WorkStore
from openrlhf_reward.builders.teacher_units import TeacherUnit, answer_unit, derive_seed
from openrlhf_reward.schema import DataError, Requirement, WEvalDocument, build_prompt
from openrlhf_reward.teachers.base import Teacher

__all__ = ["WEvalBuildConfig", "build_weval"]

HELP = "Build a WEval benchmark file from seed instructions with a teacher (resumable)."
# WEvalBuildConfig fields that load_seeds takes, under the same names
_SEED_FIELDS = ("text_field", "id_field", "requirements_field", "category_field", "split", "dataset_config", "limit")


@dataclass
class WEvalBuildConfig:
    seeds: str = field(default="", metadata={"help": "Seed instructions: a JSONL file or a `datasets` dataset name."})
    output: str = field(default="", metadata={"help": "The WEval JSONL file to write."})
    workdir: str | None = field(
        default=None, metadata={"help": "Work directory for resumable progress (default: OUTPUT.work)."}
    )
    text_field: str | None = field(
        default=None, metadata={"help": "Seed field with the instruction (default: first of query/instruction/prompt/text)."}
    )
    id_field: str = field(default="id", metadata={"help": "Seed field with a stable id (missing: seed-<index>)."})
    requirements_field: str | None = field(
        default="requirements", metadata={"help": "Seed field listing ready requirements (those seeds skip augmentation)."}
    )
    category_field: str | None = field(
        default=None, metadata={"help": "Seed field with a ready category (those seeds skip embedding)."}
    )
    split: str = field(default="train", metadata={"help": "Dataset split when seeds is a `datasets` name."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name for `datasets`."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N seeds."})
    seed: int = field(default=0, metadata={"help": "Seed for dropout order, candidate order and teacher sampling."})
    n_requirements: int = field(default=5, metadata={"help": "Requirements the teacher adds per seed."})
    min_types: int = field(default=3, metadata={"help": "Minimum distinct requirement types per seed."})
    max_attempts: int = field(default=3, metadata={"help": "Teacher answers tried per unit before it is rejected."})
    max_dropped: int | None = field(
        default=None, metadata={"help": "Most requirements dropped (default n-1: levels 0..n-1; n: last level is the bare query)."}
    )
    chunk_size: int = field(default=0, metadata={"help": "Requests handed to the teacher at once (0: one local batch, or 8 x concurrency)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of candidate answers."})
    max_tokens: int = field(default=1024, metadata={"help": "Token limit of candidate answers."})
    aug_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of requirement augmentation."})
    aug_max_tokens: int = field(default=1024, metadata={"help": "Token limit of requirement augmentation answers."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message for candidate answers."})
    embedder: str = field(default="all-MiniLM-L6-v2", metadata={"help": "sentence-transformers model for categories."})
    threshold: float = field(default=0.2, metadata={"help": "Minimum cosine similarity to a category centroid."})
    prototypes: str | None = field(default=None, metadata={"help": "Prototype JSON file (default: shipped prototypes)."})
    embed_batch_size: int = field(default=128, metadata={"help": "Seeds per embedding batch."})
    embed_device: str | None = field(default=None, metadata={"help": "torch device of the embedder."})
    id_prefix: str = field(default="", metadata={"help": "Prefix added to document ids."})
    summary: str | None = field(default=None, metadata={"help": "Summary JSON path (default: WORKDIR/summary.json)."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def resolved_workdir(self) -> Path:
        return Path(self.workdir) if self.workdir else Path(str(self.output) + ".work")


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _prototypes_hash(path: str | None) -> str:
    if path is None:
        from importlib import resources

        data = resources.files("openrlhf_reward").joinpath("data/category_prototypes.json").read_bytes()
    else:
        data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _meta(cfg: WEvalBuildConfig) -> dict[str, Any]:
    # Everything that changes what a stored unit means; not output paths or speed knobs.
    keys = (
        "text_field", "requirements_field", "seed", "n_requirements", "min_types", "max_attempts",
        "max_dropped", "temperature", "max_tokens", "aug_temperature", "aug_max_tokens",
        "system_prompt", "embedder", "threshold", "id_prefix",
    )
    meta = {"builder": "weval", "format": 1, **{k: getattr(cfg, k) for k in keys}}
    meta["prototypes_sha"] = _prototypes_hash(cfg.prototypes)
    return meta


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        from tqdm.auto import tqdm

        tqdm.write(msg)


def build_weval(
    config: WEvalBuildConfig,
    teacher: Teacher,
    *,
    assigner: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the build; returns the summary (also written as JSON).

    Args:
        teacher: any :class:`~openrlhf_reward.teachers.Teacher`.
        assigner: a ready :class:`~.categories.CategoryAssigner` (default: built from the
            config when some seed still needs a category).
    """
    cfg = config
    if not cfg.seeds or not cfg.output:
        raise ValueError("build_weval needs seeds and output")
    if cfg.n_requirements < 2:
        raise ValueError(f"n_requirements must be >= 2, got {cfg.n_requirements}")
    seeds = load_seeds(cfg.seeds, **{k: getattr(cfg, k) for k in _SEED_FIELDS})
    with Build(cfg.resolved_workdir(), _meta(cfg), teacher, progress=cfg.progress, chunk_size=cfg.chunk_size) as build:
        key_of = {s.id: f"{s.id}@{_text_hash(s.text)}" for s in seeds}
        categories = _assign_categories(cfg, seeds, build.store, key_of, assigner)
        kept = [s for s in seeds if categories[s.id] is not None]
        _augment(cfg, kept, build, key_of)
        reqs_of = _requirements(kept, build.store, key_of)
        _candidates(cfg, kept, reqs_of, build, key_of)
        docs: list[dict[str, Any]] = []
        summary: dict[str, Any] = {"kept": 0, "seeds": len(seeds), "rejected": 0}
        # Units the teacher could not answer are not stored; assembling now would give a file
        # that differs from a complete run. Report and let a rerun finish them.
        if not build.pending:
            docs, counts = _assemble(cfg, teacher, seeds, categories, reqs_of, build, key_of)
            summary.update(counts)
        summary["this_run"] = {stage: stats.counts() for stage, stats in build.stages.items()}
        return build.write(cfg.output, docs, summary, config=cfg, summary_path=cfg.summary)


def _assign_categories(
    cfg: WEvalBuildConfig, seeds: Sequence[Seed], store: WorkStore, key_of: dict[str, str], assigner: Any
) -> dict[str, str | None]:
    from tqdm.auto import tqdm

    pending = [s for s in seeds if s.category is None and f"cat:{key_of[s.id]}" not in store]
    if pending:
        if assigner is None:
            from openrlhf_reward.builders.categories import CategoryAssigner

            _log(f"loading embedder {cfg.embedder} for {len(pending)} seeds", cfg.progress)
            assigner = CategoryAssigner(
                embedder=cfg.embedder,
                threshold=cfg.threshold,
                prototypes=cfg.prototypes,
                batch_size=cfg.embed_batch_size,
                device=cfg.embed_device,
            )
        chunk = max(cfg.embed_batch_size * 8, 256)
        with tqdm(total=len(pending), desc="categories", unit="seed", disable=not cfg.progress, dynamic_ncols=True) as bar:
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                for s, (cat, score) in zip(part, assigner.assign([s.text for s in part])):
                    store.put(f"cat:{key_of[s.id]}", {"category": cat, "score": score})
                bar.update(len(part))
    out: dict[str, str | None] = {}
    for s in seeds:
        out[s.id] = s.category if s.category is not None else store[f"cat:{key_of[s.id]}"]["category"]
    return out


def _augment(cfg: WEvalBuildConfig, kept: Sequence[Seed], build: Build, key_of: dict[str, str]) -> None:
    def accept(text: str) -> list[dict[str, Any]]:
        return [r.to_dict() for r in parse_requirements_json(text, n=cfg.n_requirements, min_types=cfg.min_types)]

    units = [
        TeacherUnit(
            key=f"aug:{key_of[s.id]}",
            messages=augmentation_messages(s.text, cfg.n_requirements, cfg.min_types),
            seed=derive_seed(cfg.seed, "aug", key_of[s.id]),
            accept=accept,
        )
        for s in kept
        if s.requirements is None
    ]
    build.run_units(
        "requirements", units, temperature=cfg.aug_temperature, max_tokens=cfg.aug_max_tokens,
        retries=cfg.max_attempts - 1, json_schema=requirements_json_schema(cfg.n_requirements),
    )


def _requirements(kept: Sequence[Seed], store: WorkStore, key_of: dict[str, str]) -> dict[str, Any]:
    """Seed id -> tuple of requirements, the reject record of its augmentation, or None (pending)."""
    out: dict[str, Any] = {}
    for s in kept:
        if s.requirements is not None:
            out[s.id] = s.requirements
            continue
        rec = store.get(f"aug:{key_of[s.id]}")
        if rec is None:  # the teacher failed on it this run; a rerun retries it
            out[s.id] = None
        elif rec["ok"]:
            out[s.id] = tuple(Requirement.from_dict(r) for r in rec["value"])
        else:
            out[s.id] = rec
    return out


def _candidates(
    cfg: WEvalBuildConfig, kept: Sequence[Seed], reqs_of: dict[str, Any], build: Build, key_of: dict[str, str],
) -> None:
    units = [
        answer_unit(f"cand:{key_of[s.id]}:{lvl.k}", lvl.prompt, base_seed=cfg.seed, system_prompt=cfg.system_prompt)
        for s in kept
        if isinstance(reqs_of[s.id], tuple)
        for lvl in dropout_levels(s.text, reqs_of[s.id], seed=cfg.seed, doc_id=s.id, max_dropped=cfg.max_dropped)
    ]
    build.run_units("candidates", units, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                    retries=cfg.max_attempts - 1)


def _assemble(
    cfg: WEvalBuildConfig,
    teacher: Teacher,
    seeds: Sequence[Seed],
    categories: dict[str, str | None],
    reqs_of: dict[str, Any],
    build: Build,
    key_of: dict[str, str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The documents in seed order, and the summary's counts; rejects go to ``build``."""
    docs: list[dict[str, Any]] = []
    per_category: Counter[str] = Counter()
    req_source: Counter[str] = Counter()
    for s in seeds:  # input order: the output order does not depend on finish order
        cat = categories[s.id]
        if cat is None:
            score = build.store[f"cat:{key_of[s.id]}"]["score"]
            build.reject("below_threshold", {"id": s.id, "stage": "categories", "reason": "below_threshold",
                                             "detail": f"best similarity {score}"})
            continue
        reqs = reqs_of[s.id]
        if not isinstance(reqs, tuple):
            build.reject(reqs["reason"], {"id": s.id, "stage": "requirements", "reason": reqs["reason"],
                                          "detail": reqs["error"], "output": reqs.get("output")})
            continue
        levels = dropout_levels(s.text, reqs, seed=cfg.seed, doc_id=s.id, max_dropped=cfg.max_dropped)
        cands, failed = [], None
        for lvl in levels:
            rec = build.store[f"cand:{key_of[s.id]}:{lvl.k}"]
            if not rec["ok"]:
                failed = rec
                break
            cands.append({"response": rec["value"], "dropped": list(lvl.dropped), "gold_rank": lvl.k + 1})
        if failed is not None:
            build.reject(failed["reason"], {"id": s.id, "stage": "candidates", "reason": failed["reason"],
                                            "detail": failed["error"]})
            continue
        order = shuffled_order(len(cands), seed=cfg.seed, doc_id=s.id)  # order must carry no information
        from_seed = s.requirements is not None
        doc = {
            "id": f"{cfg.id_prefix}{s.id}",
            "category": cat,
            "query": s.text,
            "requirements": [r.to_dict() for r in reqs],
            "prompt": build_prompt(s.text, reqs),
            "candidates": [cands[i] for i in order],
            "source": {
                "teacher": teacher.model_name,
                "seed": Path(cfg.seeds).name if Path(cfg.seeds).is_file() else cfg.seeds,
                "requirements": "seed" if from_seed else "teacher",
                "dropout_seed": cfg.seed,
            },
        }
        try:
            WEvalDocument.from_dict(doc)
        except DataError as e:  # a bug in the builder, not in the data: fail loudly
            raise RuntimeError(f"built an invalid WEval document: {e}") from e
        docs.append(doc)
        per_category[cat] += 1
        req_source["seed" if from_seed else "teacher"] += 1
    return docs, {
        "kept": len(docs),
        "rejected": sum(build.reasons.values()),
        "kept_by_category": dict(sorted(per_category.items())),
        "requirements_from": dict(sorted(req_source.items())),
        "teacher": teacher.model_name,
    }


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_config_arguments

    parser.epilog = (
        "Example: openrlhf-reward build-weval --seeds seeds.jsonl --output weval.jsonl "
        "--teacher openai --base-url http://127.0.0.1:8000/v1 --concurrency 32. "
        "Rerun the same command after an interruption to resume from --workdir."
    )
    add_config_arguments(parser, WEvalBuildConfig, required=("seeds", "output"))


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.cli_args import config_from_args, make_teacher
    from openrlhf_reward.builders.runner import finish

    cfg = config_from_args(args, WEvalBuildConfig)
    with make_teacher(args) as teacher:
        summary = build_weval(cfg, teacher)
    notes = [f"from {summary['seeds']} seeds; summary {summary['summary_path']}; rejects {summary['rejects_path']}"]
    rc = finish("build-weval", {"documents": summary["kept"]}, summary["rejected_by_reason"],
                output=summary["output"], notes=notes, failures=summary.get("failures", ()))
    if rc == 0:
        print(summary["output"])  # stdout: the file written, for scripts
    return rc
