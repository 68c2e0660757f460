"""WEval documents as lm-eval dataset rows, and back.

Rows keep the validated document as a JSON string (``doc_json``): Arrow would otherwise
unify the ``check`` objects of different kinds into one struct and invent null
parameters (``exact: null`` next to ``min``), which changes their meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from openrlhf_reward.schema import WEvalDocument

# doc_json -> its document, for the life of the process (one lm-eval run). Every lm-eval hook
# and the metrics get a row back and need the document: this parses each one once. Unbounded on
# purpose: it holds the documents of the run's own dataset, which lm-eval holds anyway.
_documents: dict[str, WEvalDocument] = {}


def document_to_row(doc: WEvalDocument) -> dict[str, Any]:
    doc_json = json.dumps(doc.to_dict(), ensure_ascii=False)
    _documents[doc_json] = doc  # the loader validated it: rows from it need no parse at all
    return {
        "id": doc.id,
        "category": doc.category,
        "prompt": doc.prompt,
        "n_candidates": len(doc.candidates),
        "doc_json": doc_json,
    }


def document_from_row(row: Mapping[str, Any]) -> WEvalDocument:
    if "doc_json" not in row:
        raise ValueError("not a WEval task row (no 'doc_json' field); use the weval-* tasks")
    doc_json = row["doc_json"]
    doc = _documents.get(doc_json)
    if doc is None:  # a row from elsewhere (a logged sample): parse and validate it, once
        doc = _documents[doc_json] = WEvalDocument.from_dict(json.loads(doc_json))
    return doc
