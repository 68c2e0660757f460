"""Load seed instructions from a JSON Lines file or a `datasets` dataset.

A seed row needs an instruction text; it may also carry an id, a ready category, and its
own requirements (then no teacher augmentation is needed for it). Bad rows raise
:class:`~openrlhf_reward.schema.DataError` naming the row and the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import (
    CATEGORIES,
    DataError,
    Requirement,
    iter_jsonl,
    parse_requirements,
)

__all__ = ["TEXT_FIELD_CANDIDATES", "Seed", "load_seeds"]

TEXT_FIELD_CANDIDATES = ("query", "instruction", "prompt", "text")


@dataclass(frozen=True)
class Seed:
    id: str
    text: str
    index: int  # position in the input: fixes the output order
    requirements: tuple[Requirement, ...] | None = None
    category: str | None = None


def _rows(source: str, split: str, dataset_config: str | None) -> tuple[Iterable[tuple[str, Any]], str]:
    path = Path(source)
    if path.is_file():
        return ((f"{path.name}:{ln}", obj) for ln, obj in iter_jsonl(path)), str(path)
    if source.endswith((".jsonl", ".json")) or path.parent != Path(".") and path.parent.is_dir():
        raise DataError(f"seed file not found: {source}")
    import datasets

    try:
        ds = datasets.load_dataset(source, dataset_config, split=split)
    except Exception as e:  # noqa: BLE001 - surface the datasets error with context
        raise DataError(f"could not load seeds {source!r} (split {split!r}) with datasets: {e}") from None
    return ((f"{source}[{i}]", row) for i, row in enumerate(ds)), source


def _seed_requirements(value: Any, where: str) -> tuple[Requirement, ...] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise DataError(f"{where}: seed requirements must be a list of {{type, text, check}} objects")
    items = []
    for i, r in enumerate(value, 1):
        if isinstance(r, Mapping) and "id" not in r:
            r = {"id": f"c{i}", **r}
        items.append(r)
    return tuple(parse_requirements(items, where))


def load_seeds(
    source: str,
    *,
    text_field: str | None = None,
    id_field: str = "id",
    requirements_field: str | None = "requirements",
    category_field: str | None = None,
    split: str = "train",
    dataset_config: str | None = None,
    limit: int | None = None,
) -> list[Seed]:
    """Seeds in input order.

    Args:
        source: a JSONL file path, or a `datasets` dataset name (loaded with ``split``).
        text_field: the instruction field; None picks the first of query/instruction/prompt/text.
        id_field: stable id field; rows without it get ``seed-<index>``.
        requirements_field: field listing the seed's own requirements (optional per row).
        category_field: field with a ready category (skips embedding for those rows).
        limit: keep only the first ``limit`` rows.
    """
    rows, _ = _rows(source, split, dataset_config)
    seeds: list[Seed] = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        if limit is not None and index >= limit:
            break
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: a seed row must be an object")
        field_name = text_field
        if field_name is None:
            field_name = next((f for f in TEXT_FIELD_CANDIDATES if f in row), None)
            if field_name is None:
                raise DataError(
                    f"{where}: no instruction field found (looked for {', '.join(TEXT_FIELD_CANDIDATES)}; "
                    f"row has {sorted(row)}); pass --text-field"
                )
        text = row.get(field_name)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field {field_name!r} must be a non-empty string")
        raw_id = row.get(id_field)
        seed_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else f"seed-{index:06d}"
        if seed_id in seen:
            raise DataError(f"{where}: duplicate seed id {seed_id!r} (first at {seen[seed_id]})")
        seen[seed_id] = where
        reqs = _seed_requirements(row.get(requirements_field), where) if requirements_field else None
        category = None
        if category_field and row.get(category_field) is not None:
            category = row[category_field]
            if category not in CATEGORIES:
                raise DataError(f"{where}: unknown category {category!r} (expected one of {', '.join(CATEGORIES)})")
        seeds.append(Seed(id=seed_id, text=text.strip(), index=index, requirements=reqs, category=category))
    if not seeds:
        raise DataError(f"no seeds in {source}")
    return seeds
