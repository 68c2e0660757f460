"""Build a WEval benchmark file from seed instructions with a teacher.

Pipeline (each stage resumable through one :class:`~.store.WorkStore` in the work dir):

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

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.augment import (
    augmentation_messages,
    parse_requirements_json,
    requirements_json_schema,
)
from openrlhf_reward.builders.dropout import dropout_levels, shuffled_order
from openrlhf_reward.builders.seeds import Seed, load_seeds
from openrlhf_reward.builders.store import WorkStore, write_jsonl_atomic, write_text_atomic
from openrlhf_reward.builders.teacher_units import (
    Rejected,
    TeacherUnit,
    UnitStats,
    derive_seed,
    describe_failures,
    run_units,
)
from openrlhf_reward.schema import DataError, Requirement, WEvalDocument, build_prompt
from openrlhf_reward.teachers.base import Teacher

__all__ = ["WEvalBuildConfig", "build_weval"]

STORE_NAME = "work.jsonl"


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


def _meta(cfg: WEvalBuildConfig, teacher: Teacher) -> dict[str, Any]:
    # Everything that changes what a stored unit means; not output paths or speed knobs.
    keys = (
        "text_field", "requirements_field", "seed", "n_requirements", "min_types", "max_attempts",
        "max_dropped", "temperature", "max_tokens", "aug_temperature", "aug_max_tokens",
        "system_prompt", "embedder", "threshold", "id_prefix",
    )
    meta = {"builder": "weval", "format": 1, **{k: getattr(cfg, k) for k in keys}}
    meta["prototypes_sha"] = _prototypes_hash(cfg.prototypes)
    from openrlhf_reward.builders.cli_args import teacher_meta

    meta.update(teacher_meta(teacher))
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
    seeds = load_seeds(
        cfg.seeds,
        text_field=cfg.text_field,
        id_field=cfg.id_field,
        requirements_field=cfg.requirements_field,
        category_field=cfg.category_field,
        split=cfg.split,
        dataset_config=cfg.dataset_config,
        limit=cfg.limit,
    )
    workdir = cfg.resolved_workdir()
    store = WorkStore.open(workdir / STORE_NAME, meta=_meta(cfg, teacher))
    try:
        key_of = {s.id: f"{s.id}@{_text_hash(s.text)}" for s in seeds}
        categories = _assign_categories(cfg, seeds, store, key_of, assigner)
        kept = [s for s in seeds if categories[s.id] is not None]
        aug_stats = _augment(cfg, teacher, kept, store, key_of)
        reqs_of = _requirements(kept, store, key_of)
        cand_stats = _candidates(cfg, teacher, kept, reqs_of, store, key_of)
        run_stats = {"requirements": _stats(aug_stats), "candidates": _stats(cand_stats)}
        failures = [*describe_failures(aug_stats), *describe_failures(cand_stats)]
        if failures:
            # Units the teacher could not answer are not stored; writing now would give a file
            # that differs from a complete run. Report and let a rerun finish them.
            summary = {"complete": False, "output": None, "pending_units": len(aug_stats.failed) + len(cand_stats.failed),
                       "failures": failures, "kept": 0, "seeds": len(seeds), "rejected": 0,
                       "rejected_by_reason": {}, "rejects_path": None}
        else:
            summary = _assemble(cfg, teacher, seeds, categories, reqs_of, store, key_of, workdir)
            summary["complete"] = True
    finally:
        store.close()
    summary["this_run"] = run_stats
    summary_path = Path(cfg.summary) if cfg.summary else workdir / "summary.json"
    write_text_atomic(summary_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    summary["summary_path"] = str(summary_path)
    return summary


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


def _stats(stats: UnitStats) -> dict[str, Any]:
    return {
        "done_before": stats.done_before,
        "accepted": stats.accepted,
        "rejected": dict(stats.rejected),
        "retried": stats.retried,
        "failed": len(stats.failed),
    }


def _augment(
    cfg: WEvalBuildConfig, teacher: Teacher, kept: Sequence[Seed], store: WorkStore, key_of: dict[str, str]
) -> UnitStats:
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
    return run_units(
        teacher, units, store, temperature=cfg.aug_temperature, max_tokens=cfg.aug_max_tokens,
        retries=cfg.max_attempts - 1, chunk_size=cfg.chunk_size, desc="requirements", progress=cfg.progress,
        json_schema=requirements_json_schema(cfg.n_requirements),
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


def _candidate_messages(cfg: WEvalBuildConfig, prompt: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return msgs + [{"role": "user", "content": prompt}]


def _validate_candidate(text: str) -> str:
    if not text.strip():
        raise Rejected("empty_response", "the teacher returned no text")
    return text


def _candidates(
    cfg: WEvalBuildConfig,
    teacher: Teacher,
    kept: Sequence[Seed],
    reqs_of: dict[str, Any],
    store: WorkStore,
    key_of: dict[str, str],
) -> UnitStats:
    units = []
    for s in kept:
        reqs = reqs_of[s.id]
        if not isinstance(reqs, tuple):
            continue
        for lvl in dropout_levels(s.text, reqs, seed=cfg.seed, doc_id=s.id, max_dropped=cfg.max_dropped):
            key = f"cand:{key_of[s.id]}:{lvl.k}"
            units.append(
                TeacherUnit(
                    key=key,
                    messages=_candidate_messages(cfg, lvl.prompt),
                    seed=derive_seed(cfg.seed, key),
                    accept=_validate_candidate,
                )
            )
    return run_units(
        teacher, units, store, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
        retries=cfg.max_attempts - 1, chunk_size=cfg.chunk_size, desc="candidates", progress=cfg.progress,
    )


def _assemble(
    cfg: WEvalBuildConfig,
    teacher: Teacher,
    seeds: Sequence[Seed],
    categories: dict[str, str | None],
    reqs_of: dict[str, Any],
    store: WorkStore,
    key_of: dict[str, str],
    workdir: Path,
) -> dict[str, Any]:
    docs: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    per_category: Counter[str] = Counter()
    req_source: Counter[str] = Counter()
    for s in seeds:  # input order: the output order does not depend on finish order
        cat = categories[s.id]
        if cat is None:
            score = store[f"cat:{key_of[s.id]}"]["score"]
            rejects.append({"id": s.id, "stage": "categories", "reason": "below_threshold", "detail": f"best similarity {score}"})
            reasons["below_threshold"] += 1
            continue
        reqs = reqs_of[s.id]
        if not isinstance(reqs, tuple):
            rejects.append({"id": s.id, "stage": "requirements", "reason": reqs["reason"], "detail": reqs["error"], "output": reqs.get("output")})
            reasons[reqs["reason"]] += 1
            continue
        levels = dropout_levels(s.text, reqs, seed=cfg.seed, doc_id=s.id, max_dropped=cfg.max_dropped)
        cands, failed = [], None
        for lvl in levels:
            rec = store[f"cand:{key_of[s.id]}:{lvl.k}"]
            if not rec["ok"]:
                failed = rec
                break
            cands.append({"response": rec["value"], "dropped": list(lvl.dropped), "gold_rank": lvl.k + 1})
        if failed is not None:
            rejects.append({"id": s.id, "stage": "candidates", "reason": failed["reason"], "detail": failed["error"]})
            reasons[failed["reason"]] += 1
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
    if docs:
        write_jsonl_atomic(cfg.output, docs)
    write_jsonl_atomic(workdir / "rejects.jsonl", rejects)
    return {
        "output": str(cfg.output) if docs else None,
        "seeds": len(seeds),
        "kept": len(docs),
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "kept_by_category": dict(sorted(per_category.items())),
        "requirements_from": dict(sorted(req_source.items())),
        "teacher": teacher.model_name,
        "config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
        "rejects_path": str(workdir / "rejects.jsonl"),
    }
