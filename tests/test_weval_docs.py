"""WEval rows: a document is parsed once per run, and a row gives back the same document."""

from __future__ import annotations

import json

from openrlhf_reward.schema import WEvalDocument, load_weval_jsonl
from weval_tasks import DEMO_DATA
from weval_tasks import docs as weval_docs


def test_rows_give_back_equal_documents_without_parsing(monkeypatch):
    documents = load_weval_jsonl(DEMO_DATA)
    rows = [weval_docs.document_to_row(d) for d in documents]
    parses = []
    real = WEvalDocument.from_dict.__func__
    monkeypatch.setattr(WEvalDocument, "from_dict",
                        classmethod(lambda cls, *a, **k: parses.append(1) or real(cls, *a, **k)))
    for _ in range(3):  # every lm-eval hook asks again
        assert [weval_docs.document_from_row(dict(r)) for r in rows] == documents
    assert parses == []
    # the row's JSON is the document: parsing it from scratch gives an equal one
    assert [WEvalDocument.from_dict(json.loads(r["doc_json"])) for r in rows] == documents


def test_a_row_from_elsewhere_is_parsed_once(monkeypatch):
    doc = load_weval_jsonl(DEMO_DATA)[0].to_dict()
    row = {"doc_json": json.dumps({**doc, "id": doc["id"] + "-logged"})}  # e.g. a logged sample
    parses = []
    real = WEvalDocument.from_dict.__func__
    monkeypatch.setattr(WEvalDocument, "from_dict",
                        classmethod(lambda cls, *a, **k: parses.append(1) or real(cls, *a, **k)))
    first = weval_docs.document_from_row(row)
    assert weval_docs.document_from_row({"doc_json": str(row["doc_json"])}) is first
    assert first.id == doc["id"] + "-logged" and len(parses) == 1
