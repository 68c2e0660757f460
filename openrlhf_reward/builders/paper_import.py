"""Import the data released with the paper (Rainier-rq1/From_Coarse_to_Fine) as published.

``openrlhf-reward import-paper --input FILE --output OUT [--as weval|pairs|grpo]`` reads the
file as it is (Parquet with pyarrow, JSON Lines with the project's reader), recognises its
layout by its columns, and writes one output row per group or pair, in input order.
Layouts (docs/data.md has the full description):

``writing_subset`` (``writing_subset.parquet``; columns ``prompt``, ``response``,
    ``constraint``, ``instruction_id_list``): N = 5 x G rows, G base prompts x 5 levels,
    **strided**: rows ``i, i+G, i+2G, i+3G, i+4G`` share base prompt ``i``; the level-k row
    keeps the first k constraints (nested), its ``prompt`` is the base query followed by them
    and ``response`` answers it. -> ``--as weval``: one WEval document per base prompt:
    requirements ``c1..c5`` = the level-5 list, 5 candidates, level k dropped ``c(k+1)..c5``
    (gold rank ``6 - k``, so level 5 is rank 1). Query = the level-1 prompt up to its first
    constraint. Requirement types by the embedding classifier (:mod:`.requirement_types`,
    ``type_source: "embedding"``) unless ``--requirement-type`` (``"given"``); category by
    the MiniLM category assignment (:mod:`.categories`, nearest centroid, never dropped)
    unless ``--category``. Validated with :class:`~openrlhf_reward.schema.WEvalDocument`.
``train`` (``train.parquet``; ``prompt``, ``chosen``, ``rejected`` strings, ``constraint``,
    ``instruction_id_list``, ``kwargs``): one WRL pair per row.
    -> ``--as pairs`` (default): OpenRLHF RM pairs (``prompt`` / ``chosen`` / ``rejected`` as
    one-message lists, as ``build-pairs`` writes them; ``requirements`` = the 5 constraints;
    no ``margin``/``dropped``: the release does not say which requirements the rejected
    answer missed). Rows whose chosen and rejected texts are identical are skipped and
    counted. -> ``--as grpo``: GRPO rows (as ``build-grpo`` writes them) whose ``label``
    carries all 5 requirements: IFEval ids become ``ifeval`` checks (kwargs: nulls dropped,
    integral floats such as ``3.0`` made ints), the paper's soft ids become text-only
    requirements (:data:`openrlhf_reward.ifeval.PAPER_SOFT_ID_TYPES`); texts are the
    paper's constraint texts.
``chat_pairs`` (``wrl_pairs_test.jsonl``; ``chosen`` / ``rejected`` as
    ``[{"role": "user"}, {"role": "assistant"}]`` lists): -> ``--as pairs``: RM pairs
    (prompt = the shared user turn; ``requirements`` empty: the file lists none).
``ifeval`` (``val_set.jsonl``; ``prompt``, ``instruction_id_list``, ``kwargs``):
    -> ``--as grpo``: GRPO rows, as ``import-ifeval`` writes them.

Any malformed row stops the import with a :class:`DataError` naming the file, row (1-based
Parquet row or JSONL line) and field.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import (
    CATEGORIES,
    REQUIREMENT_TYPES,
    DataError,
    Requirement,
    WEvalDocument,
    iter_jsonl,
)

__all__ = [
    "LAYOUTS",
    "PaperImportConfig",
    "detect_layout",
    "import_paper",
    "normalise_kwargs",
    "read_rows",
]

HELP = "Import the paper's released data (writing_subset/train parquet, pair/IFEval JSONL) as WEval, RM pairs or GRPO rows."

# layout -> (required columns, output kinds; the first is the default)
LAYOUTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "writing_subset": (frozenset({"prompt", "response", "constraint", "instruction_id_list"}), ("weval",)),
    "train": (
        frozenset({"prompt", "chosen", "rejected", "constraint", "instruction_id_list", "kwargs"}),
        ("pairs", "grpo"),
    ),
    "chat_pairs": (frozenset({"chosen", "rejected"}), ("pairs",)),
    "ifeval": (frozenset({"prompt", "instruction_id_list", "kwargs"}), ("grpo",)),
}
LEVELS = 5  # writing_subset: nested levels per base prompt


@dataclass
class PaperImportConfig:
    kind: str | None = field(default=None, metadata={"help": "Output: weval, pairs or grpo (None: the layout's default)."})
    category: str | None = field(default=None, metadata={"help": "Category of every WEval document (None: MiniLM assignment)."})
    requirement_type: str | None = field(default=None, metadata={"help": "One type for every writing_subset requirement (None: embedding classifier)."})
    type_prototypes: str | None = field(default=None, metadata={"help": "Prototype JSON for the type classifier (None: shipped)."})
    embedder: str = field(default="all-MiniLM-L6-v2", metadata={"help": "Sentence embedder for categories and types."})
    id_prefix: str | None = field(default=None, metadata={"help": "Output ids are <prefix>-<row or group> (None: paper-<file stem>)."})
    datasource: str | None = field(default=None, metadata={"help": "Add this 'datasource' to GRPO rows."})
    seed: int = field(default=0, metadata={"help": "Seed of the candidate order within each WEval document."})


@dataclass
class ImportResult:
    layout: str
    kind: str
    rows: list[dict[str, Any]]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading


def read_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based row or line number, row) for a ``.parquet`` (pyarrow) or JSON Lines file."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .parquet or JSONL file")
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a non-Parquet file
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        return list(enumerate(table.to_pylist(), 1))
    rows = list(iter_jsonl(path))
    for lineno, obj in rows:
        if not isinstance(obj, Mapping):
            raise DataError(f"{path.name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return rows


def detect_layout(columns: Sequence[str] | set[str], where: str = "input") -> str:
    """The released layout whose columns are all present (most specific first)."""
    cols = set(columns)
    for name in ("writing_subset", "train", "chat_pairs", "ifeval"):
        if LAYOUTS[name][0] <= cols:
            return name
    expected = "; ".join(f"{n}: {', '.join(sorted(c))}" for n, (c, _) in LAYOUTS.items())
    raise DataError(f"{where}: columns {sorted(cols)} match none of the paper's layouts ({expected})")


def normalise_kwargs(kw: Mapping[str, Any] | None) -> dict[str, Any]:
    """IFEval kwargs as the checkers expect them: nulls dropped, integral floats (3.0) made ints."""
    out: dict[str, Any] = {}
    for k, v in (kw or {}).items():
        if v is None:
            continue
        out[k] = int(v) if isinstance(v, float) and v.is_integer() else v
    return out


def _str(row: Mapping[str, Any], key: str, where: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string")
    return v


def _str_list(row: Mapping[str, Any], key: str, where: str) -> list[str]:
    v = row.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise DataError(f"{where}: field {key!r} must be a list of non-empty strings")
    return v


# ----------------------------------------------------------------------------- layouts


def _cut_query(prompt: str, constraints: Sequence[str]) -> str | None:
    """The base query: the prompt up to the earliest of its constraint texts (None if none is there)."""
    found = [at for c in constraints if (at := prompt.find(c.strip())) > 0]
    return (prompt[: min(found)].strip() or None) if found else None


def _writing_subset(rows: list[tuple[int, dict]], name: str, cfg: PaperImportConfig, prefix: str) -> list[dict]:
    n = len(rows)
    if n % LEVELS:
        raise DataError(f"{name}: {n} rows is not a multiple of {LEVELS} (base prompts x {LEVELS} nested levels)")
    g = n // LEVELS
    groups = []
    for i in range(g):
        levels = []
        for k in range(1, LEVELS + 1):
            rownum, row = rows[i + (k - 1) * g]
            where = f"{name} row {rownum} (base prompt {i}, level {k})"
            cons = _str_list(row, "constraint", where)
            if len(cons) != k:
                raise DataError(
                    f"{where}: field 'constraint' has {len(cons)} entries, expected {k} "
                    f"(rows i, i+{g}, ... must hold levels 1..{LEVELS})"
                )
            levels.append((rownum, where, _str(row, "prompt", where), _str(row, "response", where), cons))
        full = levels[-1][4]
        for _rownum, where, _p, _r, cons in levels:
            if cons != full[: len(cons)]:
                raise DataError(f"{where}: field 'constraint' is not a prefix of the level-{LEVELS} list (not nested)")
        groups.append((i, levels))

    texts = [c.strip() for _, levels in groups for c in levels[-1][4]]
    embedder = None
    if not (cfg.requirement_type and cfg.category):
        from openrlhf_reward.builders.categories import load_embedder

        embedder = load_embedder(cfg.embedder)  # one model for both types and categories
    if cfg.requirement_type:
        types, type_source = [cfg.requirement_type] * len(texts), "given"
    else:
        from openrlhf_reward.builders.requirement_types import TypeClassifier

        types = TypeClassifier(embedder, prototypes=cfg.type_prototypes).classify(texts)
        type_source = "embedding"

    queries = []
    for _i, levels in groups:
        q = _cut_query(levels[0][2], levels[0][4])
        if q is None:
            raise DataError(f"{levels[0][1]}: field 'prompt' does not contain its constraint; cannot find the base query")
        queries.append(q)
    if cfg.category:
        cats = [(cfg.category, None)] * len(groups)
    else:
        from openrlhf_reward.builders.categories import CategoryAssigner

        # threshold -1: every group gets its nearest category (the release has no dropped seeds)
        cats = CategoryAssigner(embedder, threshold=-1.0).assign(queries)

    out = []
    for (i, levels), query, (cat, sim) in zip(groups, queries, cats):
        req_ids = [f"c{j + 1}" for j in range(LEVELS)]
        t = types[i * LEVELS : (i + 1) * LEVELS]
        reqs = [
            {"id": rid, "type": ty, "text": text.strip(), "check": None, "type_source": type_source}
            for rid, ty, text in zip(req_ids, t, levels[-1][4])
        ]
        cands = [
            {"response": resp, "dropped": req_ids[k:], "gold_rank": 1 + LEVELS - k}
            for k, (_n, _w, _p, resp, _c) in enumerate(levels, 1)
        ]
        doc_id = f"{prefix}-{i:05d}"
        random.Random(f"{cfg.seed}:{doc_id}:candidates").shuffle(cands)  # file order is gold order
        source = {
            "teacher": "paper release",
            "seed": "Rainier-rq1/From_Coarse_to_Fine writing_subset",
            "file": name,
            "rows": [lv[0] for lv in levels],
            "category_from": "given" if cfg.category else "minilm",
        }
        if sim is not None:
            source["category_similarity"] = sim
        doc = {
            "id": doc_id,
            "category": cat,
            "query": query,
            "requirements": reqs,
            "prompt": levels[-1][2],
            "candidates": cands,
            "source": source,
        }
        out.append(WEvalDocument.from_dict(doc, where=f"{name} base prompt {i}").to_dict())
    return out


def train_requirements(row: Mapping[str, Any], where: str) -> tuple[list[Requirement], list[str]]:
    from openrlhf_reward.schema import requirements_from_ifeval

    ids = _str_list(row, "instruction_id_list", where)
    cons = _str_list(row, "constraint", where)
    kwargs = row.get("kwargs")
    if not isinstance(kwargs, list) or not all(k is None or isinstance(k, Mapping) for k in kwargs):
        raise DataError(f"{where}: field 'kwargs' must be a list of objects")
    if not (len(ids) == len(cons) == len(kwargs)):
        raise DataError(
            f"{where}: fields 'instruction_id_list', 'constraint', 'kwargs' differ in length "
            f"({len(ids)}, {len(cons)}, {len(kwargs)})"
        )
    try:
        reqs = requirements_from_ifeval(ids, [normalise_kwargs(k) for k in kwargs], cons)
    except DataError as e:
        raise DataError(f"{where}: field 'instruction_id_list'/'kwargs': {e}") from None
    return reqs, cons


def _train(rows: list[tuple[int, dict]], name: str, kind: str, cfg: PaperImportConfig, prefix: str, skipped: Counter) -> list[dict]:
    from openrlhf_reward.builders.grpo import grpo_row, validate_grpo_row
    from openrlhf_reward.builders.instructions import Instruction

    out = []
    for rownum, row in rows:
        where = f"{name} row {rownum}"
        prompt = _str(row, "prompt", where)
        reqs, cons = train_requirements(row, where)
        rid = f"{prefix}-{rownum:05d}"
        if kind == "grpo":
            query = _cut_query(prompt, cons) or prompt.strip()
            rec = grpo_row(Instruction(id=rid, query=query, requirements=tuple(reqs), instruction=prompt), cfg.datasource)
            validate_grpo_row(rec, where)
        else:
            chosen, rejected = _str(row, "chosen", where), _str(row, "rejected", where)
            if chosen.strip() == rejected.strip():
                skipped["identical_answers"] += 1
                continue
            rec = _pair(rid, prompt, chosen, rejected, [r.to_dict() for r in reqs], {"file": name, "row": rownum})
        out.append(rec)
    return out


def _pair(rid: str, prompt: str, chosen: str, rejected: str, reqs: list[dict], source: dict) -> dict[str, Any]:
    return {
        "id": rid,
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "requirements": reqs,
        "granularity": "query",
        "source": {"teacher": "paper release", **source},
    }


def _turn(messages: Any, role: str, where: str, key: str) -> str:
    for m in messages if isinstance(messages, list) else []:
        if isinstance(m, Mapping) and m.get("role") == role and isinstance(m.get("content"), str):
            if m["content"].strip():
                return m["content"]
    raise DataError(f"{where}: field {key!r} must be a chat list with a non-empty {role!r} message")


def _chat_pairs(rows: list[tuple[int, dict]], name: str, prefix: str, skipped: Counter) -> list[dict]:
    out = []
    for rownum, row in rows:
        where = f"{name}:{rownum}"
        prompt = _turn(row.get("chosen"), "user", where, "chosen")
        if _turn(row.get("rejected"), "user", where, "rejected") != prompt:
            raise DataError(f"{where}: fields 'chosen' and 'rejected' have different user turns")
        chosen = _turn(list(reversed(row["chosen"])), "assistant", where, "chosen")
        rejected = _turn(list(reversed(row["rejected"])), "assistant", where, "rejected")
        if chosen.strip() == rejected.strip():
            skipped["identical_answers"] += 1
            continue
        out.append(_pair(f"{prefix}-{rownum:05d}", prompt, chosen, rejected, [], {"file": name, "line": rownum}))
    return out


def _ifeval(rows: list[tuple[int, dict]], name: str, cfg: PaperImportConfig) -> list[dict]:
    from openrlhf_reward.builders.grpo import grpo_row, validate_grpo_row
    from openrlhf_reward.builders.ifeval_import import ifeval_instruction

    out = []
    for rownum, row in rows:
        where = f"{name}:{rownum}"
        row = dict(row)
        if isinstance(row.get("kwargs"), list):
            row["kwargs"] = [normalise_kwargs(k) if isinstance(k, Mapping) else k for k in row["kwargs"]]
        rec = grpo_row(ifeval_instruction(row, where), cfg.datasource)
        validate_grpo_row(rec, where)
        out.append(rec)
    return out


def import_paper(path: str | Path, config: PaperImportConfig | None = None) -> ImportResult:
    """Read one released file and convert it (see the module docstring)."""
    cfg = config or PaperImportConfig()
    if cfg.category is not None and cfg.category not in CATEGORIES:
        raise DataError(f"unknown category {cfg.category!r} (expected one of {', '.join(CATEGORIES)})")
    if cfg.requirement_type is not None and cfg.requirement_type not in REQUIREMENT_TYPES:
        raise DataError(f"unknown requirement type {cfg.requirement_type!r} (expected one of {', '.join(REQUIREMENT_TYPES)})")
    path = Path(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    layout = detect_layout(rows[0][1].keys(), where=f"{path.name} row {rows[0][0]}")
    kinds = LAYOUTS[layout][1]
    kind = cfg.kind or kinds[0]
    if kind not in kinds:
        raise DataError(f"{path.name}: a {layout} file imports as {' or '.join(kinds)}, not {kind!r} (--as)")
    prefix = cfg.id_prefix or f"paper-{path.stem}"
    skipped: Counter = Counter()
    if layout == "writing_subset":
        out = _writing_subset(rows, path.name, cfg, prefix)
    elif layout == "train":
        out = _train(rows, path.name, kind, cfg, prefix, skipped)
    elif layout == "chat_pairs":
        out = _chat_pairs(rows, path.name, prefix, skipped)
    else:
        out = _ifeval(rows, path.name, cfg)
    return ImportResult(layout, kind, out, skipped)


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_io_arguments

    add_io_arguments(p, "A released file: writing_subset.parquet, train.parquet, wrl_pairs_test.jsonl or val_set.jsonl.", "JSONL to write (atomically).")
    p.add_argument("--as", dest="kind", default=None, choices=("weval", "pairs", "grpo"),
                   help="Output kind (default: weval for writing_subset, pairs for train and chat pairs, grpo for IFEval rows).")
    p.add_argument("--category", default=None, choices=CATEGORIES, help="Category of every WEval document (default: MiniLM assignment).")
    p.add_argument("--requirement-type", default=None, choices=REQUIREMENT_TYPES,
                   help="One type for every writing_subset requirement (default: the embedding classifier).")
    p.add_argument("--type-prototypes", default=None, help="Prototype JSON {type: [texts]} for the type classifier.")
    p.add_argument("--embedder", default="all-MiniLM-L6-v2", help="Sentence embedder for categories and types (default %(default)s, offline).")
    p.add_argument("--id-prefix", default=None, help="Ids are PREFIX-<row or group> (default: paper-<file stem>).")
    p.add_argument("--datasource", default=None, help="Add this 'datasource' to every GRPO row.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the candidate order in WEval documents (default %(default)s).")


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.runner import finish, write_rows

    cfg = PaperImportConfig(
        kind=args.kind, category=args.category, requirement_type=args.requirement_type,
        type_prototypes=args.type_prototypes, embedder=args.embedder, id_prefix=args.id_prefix,
        datasource=args.datasource, seed=args.seed,
    )
    result = import_paper(args.input, cfg)
    return finish("import-paper", {result.kind: len(result.rows)}, result.skipped,
                  notes=[f"layout {result.layout} -> {result.kind}"], output=write_rows(args.output, result.rows))
