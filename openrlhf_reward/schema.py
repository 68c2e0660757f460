"""The WEval document and requirement data model, with validation.

A malformed document is rejected with a :class:`DataError` that names the document id (or
line) and the problem; nothing is silently repaired. IFEval-format labels become
requirements here too (:func:`requirements_from_ifeval_label`, their one reader).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.checks import validate_check
from openrlhf_reward.ifeval import (
    PAPER_SOFT_ID_TYPES,
    clean_kwargs,
    ifeval_description,
    requirement_type,
    validate_ifeval_check,
)
from openrlhf_reward.text import CheckSpecError, has_visible, is_blank

CATEGORIES: tuple[str, ...] = (
    "creative_writing",
    "frameworks_plans",
    "academic_writing",
    "discussion_expression",
    "informational_practical",
)
REQUIREMENT_TYPES: tuple[str, ...] = ("length", "format", "style", "content")

# Most requirements one sample (document or request label) may carry. Scoring costs
# requirements x response length, so this bounds one request's work; real documents have
# a handful (docs/server.md, "Limits").
MAX_REQUIREMENTS_PER_SAMPLE = 256


class DataError(ValueError):
    """Input data that does not follow the schema; the message names where and what.

    ``field`` names the field at fault, relative to the object read, when the raiser knows
    it (e.g. ``"kwargs"`` of an IFEval label), so a caller can point at it without reading
    the message.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Requirement:
    id: str
    type: str
    text: str
    check: dict[str, Any] | None = None
    # How ``type`` was obtained ("ifeval-id", "paper-soft-id", "embedding", "given", ...);
    # optional, and left out of to_dict() when unset so older files stay byte-identical.
    type_source: str | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "requirement") -> Requirement:
        if not isinstance(d, Mapping):
            raise DataError(f"{where}: a requirement must be an object, got {type(d).__name__}")
        for key in ("id", "type", "text"):
            if not isinstance(d.get(key), str) or not d.get(key).strip():
                raise DataError(f"{where}: requirement field {key!r} must be a non-empty string")
        if d["type"] not in REQUIREMENT_TYPES:
            raise DataError(
                f"{where}: requirement {d['id']!r} has unknown type {d['type']!r} "
                f"(expected one of {', '.join(REQUIREMENT_TYPES)})"
            )
        check = d.get("check")
        if check is not None:
            try:
                validate_check(check)
            except CheckSpecError as e:
                raise DataError(f"{where}: requirement {d['id']!r}: {e}") from None
            except (TypeError, ValueError) as e:  # a value of the wrong shape, e.g. a list as 'kind'
                raise DataError(f"{where}: requirement {d['id']!r}: invalid check ({type(e).__name__}: {e})") from None
        type_source = d.get("type_source")
        if type_source is not None and not isinstance(type_source, str):
            raise DataError(f"{where}: requirement {d['id']!r}: 'type_source' must be a string")
        return cls(
            id=d["id"], type=d["type"], text=d["text"], check=dict(check) if check else None, type_source=type_source
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["type_source"] is None:
            del d["type_source"]
        return d


def parse_requirements(items: Any, where: str) -> list[Requirement]:
    """Parse and validate a list of requirements (unique ids)."""
    if not isinstance(items, list):
        raise DataError(f"{where}: 'requirements' must be a list")
    check_requirement_count(len(items), where)
    reqs = [Requirement.from_dict(r, where) for r in items]
    # One pass with a set (ids.count per id was quadratic: 40k ids took 17 s).
    seen: set[str] = set()
    dups: set[str] = set()
    for r in reqs:
        (dups if r.id in seen else seen).add(r.id)
    if dups:
        shown = sorted(dups)
        more = f" (and {len(shown) - 20} more)" if len(shown) > 20 else ""
        raise DataError(f"{where}: duplicate requirement ids {shown[:20]}{more}")
    return reqs


def check_requirement_count(n: int, where: str, field: str | None = None) -> None:
    """Raise :class:`DataError` (with ``field``) when one sample carries more than
    :data:`MAX_REQUIREMENTS_PER_SAMPLE` requirements (checked before any is parsed)."""
    if n > MAX_REQUIREMENTS_PER_SAMPLE:
        raise DataError(
            f"{where}: {n} requirements; at most {MAX_REQUIREMENTS_PER_SAMPLE} per sample are accepted",
            field,
        )


# --------------------------------------------------------------------------- IFEval labels

# The IFEval label field that holds each key of an ``ifeval`` check spec.
_LABEL_FIELD = {"instruction_id": "instruction_id_list", "kwargs": "kwargs"}


def requirements_from_ifeval(
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None],
    texts: Sequence[str] | None = None,
) -> list[Requirement]:
    """Requirements ``c1..cn`` for an IFEval-labelled prompt (ids and kwargs in parallel).

    An IFEval id gets the type of its IFEval group and the check
    ``{"kind": "ifeval", "instruction_id": id, "kwargs": {...}}`` (falsy kwargs dropped); one
    of the paper's soft ids (:data:`~openrlhf_reward.ifeval.PAPER_SOFT_ID_TYPES`) becomes a
    text-only requirement (check None) for a model backend. The text is ``texts[i]`` when
    given (the paper's ``constraint`` list: what the prompt actually said), else IFEval's own
    description. ``type_source`` records ``ifeval-id`` or ``paper-soft-id``.

    Raises :class:`DataError` naming the position of a bad entry, with ``field`` set to the
    label field at fault: ``instruction_id_list``, ``kwargs`` or ``constraint``.
    """
    ids_error = DataError("IFEval label: 'instruction_id_list' must be a list of strings", "instruction_id_list")
    if isinstance(instruction_ids, str) or not isinstance(instruction_ids, Sequence):
        raise ids_error
    check_requirement_count(len(instruction_ids), "IFEval label: 'instruction_id_list'", "instruction_id_list")
    if not all(isinstance(i, str) for i in instruction_ids):
        raise ids_error
    if isinstance(kwargs, str | Mapping) or not isinstance(kwargs, Sequence):
        raise DataError("IFEval label: 'kwargs' must be a list of objects", "kwargs")
    if len(instruction_ids) != len(kwargs):
        raise DataError(
            f"IFEval label: 'instruction_id_list' has {len(instruction_ids)} entries but "
            f"'kwargs' has {len(kwargs)}",
            "kwargs",
        )
    if texts is not None and (
        isinstance(texts, str)
        or not isinstance(texts, Sequence)
        or len(texts) != len(instruction_ids)
        or not all(isinstance(t, str) and has_visible(t) for t in texts)
    ):
        raise DataError(
            f"IFEval label: 'constraint' must list {len(instruction_ids)} non-blank texts, one per instruction id",
            "constraint",
        )
    reqs: list[Requirement] = []
    for i, (iid, kw) in enumerate(zip(instruction_ids, kwargs)):
        if kw is not None and not isinstance(kw, Mapping):
            raise DataError(f"IFEval label: kwargs[{i}] must be an object or null", "kwargs")
        if iid in PAPER_SOFT_ID_TYPES:
            text = texts[i].strip() if texts is not None else f"Follow the requirement {iid}."
            reqs.append(
                Requirement(id=f"c{i + 1}", type=PAPER_SOFT_ID_TYPES[iid], text=text, check=None, type_source="paper-soft-id")
            )
            continue
        spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": clean_kwargs(kw)}
        try:
            validate_ifeval_check(spec)
        except CheckSpecError as e:
            raise DataError(f"IFEval label: instruction {i}: {e}", _LABEL_FIELD[e.field]) from None
        reqs.append(
            Requirement(
                id=f"c{i + 1}",
                type=requirement_type(iid),
                text=texts[i].strip() if texts is not None else ifeval_description(iid, spec["kwargs"]),
                check=spec,
                type_source="ifeval-id",
            )
        )
    return reqs


def requirements_from_ifeval_label(label: Mapping[str, Any]) -> list[Requirement]:
    """Requirements from an IFEval-format label ``{"instruction_id_list": [...], "kwargs": [...]}``.

    The one reader of IFEval labels (the reward server's ``labels[i]``, ``import-ifeval``
    rows). ``kwargs`` may be left out when no id takes arguments; a non-empty ``constraint``
    list parallel to the ids (the paper's RL data) gives the texts. Errors are
    :class:`DataError` with ``field`` set (see :func:`requirements_from_ifeval`).
    """
    if "instruction_id_list" not in label:
        raise DataError("IFEval label: missing field 'instruction_id_list'", "instruction_id_list")
    ids = label["instruction_id_list"]
    kwargs = label.get("kwargs")
    if kwargs is None and isinstance(ids, list):
        kwargs = [{}] * len(ids)  # ids without arguments may omit kwargs
    texts = label.get("constraint") or None  # IFEval's val_set carries an empty list
    return requirements_from_ifeval(ids, kwargs, texts)


def build_prompt(query: str, requirements: Iterable[Requirement]) -> str:
    """The instruction shown to a model: the query followed by the requirement texts.

    Used both to build benchmark documents and to rebuild the weaker instruction of each
    dropout level from the kept requirements only.
    """
    lines = [query.strip()]
    reqs = list(requirements)
    if reqs:
        lines.append("")
        lines.append("Requirements:")
        lines.extend(f"{i}. {r.text}" for i, r in enumerate(reqs, 1))
    return "\n".join(lines)


@dataclass(frozen=True)
class Candidate:
    response: str
    dropped: tuple[str, ...]
    gold_rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"response": self.response, "dropped": list(self.dropped), "gold_rank": self.gold_rank}


@dataclass(frozen=True)
class WEvalDocument:
    id: str
    category: str
    query: str
    requirements: tuple[Requirement, ...]
    prompt: str
    candidates: tuple[Candidate, ...]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def requirement_by_id(self) -> dict[str, Requirement]:
        return {r.id: r for r in self.requirements}

    @classmethod
    def from_dict(cls, d: Any, where: str | None = None) -> WEvalDocument:
        if not isinstance(d, Mapping):
            raise DataError(f"{where or 'document'}: must be a JSON object, got {type(d).__name__}")
        doc_id = d.get("id")
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise DataError(f"{where or 'document'}: field 'id' must be a non-empty string")
        where = f"document {doc_id!r}" + (f" ({where})" if where else "")
        for key in ("category", "query", "prompt"):
            if key not in d:
                raise DataError(f"{where}: missing field {key!r}")
            if not isinstance(d[key], str) or not d[key].strip():
                raise DataError(f"{where}: field {key!r} must be a non-empty string")
        if d["category"] not in CATEGORIES:
            raise DataError(
                f"{where}: unknown category {d['category']!r} (expected one of {', '.join(CATEGORIES)})"
            )
        if "requirements" not in d:
            raise DataError(f"{where}: missing field 'requirements'")
        reqs = parse_requirements(d["requirements"], where)
        if not reqs:
            raise DataError(f"{where}: 'requirements' is empty")
        req_ids = {r.id for r in reqs}

        cands_raw = d.get("candidates")
        if not isinstance(cands_raw, list):
            raise DataError(f"{where}: missing field 'candidates' (a list)")
        if len(cands_raw) < 2:
            raise DataError(f"{where}: needs at least 2 candidates, got {len(cands_raw)}")
        cands = []
        for j, c in enumerate(cands_raw):
            cw = f"{where}, candidate {j}"
            if not isinstance(c, Mapping):
                raise DataError(f"{cw}: must be an object")
            for key in ("response", "dropped", "gold_rank"):
                if key not in c:
                    raise DataError(f"{cw}: missing field {key!r}")
            if not isinstance(c["response"], str) or is_blank(c["response"]):
                raise DataError(f"{cw}: empty response")
            dropped = c["dropped"]
            if not isinstance(dropped, list) or not all(isinstance(x, str) for x in dropped):
                raise DataError(f"{cw}: 'dropped' must be a list of requirement ids")
            if len(set(dropped)) != len(dropped):
                raise DataError(f"{cw}: 'dropped' repeats a requirement id")
            if unknown := sorted(set(dropped) - req_ids):
                raise DataError(f"{cw}: 'dropped' names unknown requirement ids {unknown}")
            rank = c["gold_rank"]
            if isinstance(rank, bool) or not isinstance(rank, int):
                raise DataError(f"{cw}: 'gold_rank' must be an integer")
            if rank != 1 + len(dropped):
                raise DataError(
                    f"{cw}: gold_rank {rank} inconsistent with {len(dropped)} dropped "
                    f"requirement(s) (expected {1 + len(dropped)})"
                )
            cands.append(Candidate(c["response"], tuple(dropped), rank))

        by_size = sorted(cands, key=lambda c: len(c.dropped))
        sizes = [len(c.dropped) for c in by_size]
        if len(set(sizes)) != len(sizes):
            raise DataError(f"{where}: two candidates drop the same number of requirements ({sizes})")
        for a, b in zip(by_size, by_size[1:]):
            if not set(a.dropped) < set(b.dropped):
                raise DataError(
                    f"{where}: dropout is not nested: {sorted(a.dropped)} is not contained in "
                    f"{sorted(b.dropped)}"
                )
        source = d.get("source") or {}
        if not isinstance(source, Mapping):
            raise DataError(f"{where}: 'source' must be an object")
        return cls(
            id=doc_id,
            category=d["category"],
            query=d["query"],
            requirements=tuple(reqs),
            prompt=d["prompt"],
            candidates=tuple(cands),
            source=dict(source),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "query": self.query,
            "requirements": [r.to_dict() for r in self.requirements],
            "prompt": self.prompt,
            "candidates": [c.to_dict() for c in self.candidates],
            "source": dict(self.source),
        }


# (path, line number) of the JSONL line being processed, per thread: the command-line
# dispatcher names it when a builder fails on data of a shape it did not expect.
_reading = threading.local()


def current_line() -> tuple[str, int] | None:
    """The file and line :func:`iter_jsonl` last yielded in this thread, while it is being read."""
    return getattr(_reading, "where", None)


# Longest JSONL line read (bytes). A line is read with this bound, so a 1 GB one-line file
# costs at most this much memory before the error, not the whole file twice (bytes + str).
MAX_LINE_BYTES = 64 * 1024 * 1024


def check_writable_dir(folder: str | Path) -> None:
    """Raise :class:`DataError` unless files can be written in ``folder``: it is a folder
    (or does not exist yet, and its nearest existing parent is one) and a probe file can be
    created there. Nothing is left behind.

    Probes by creating and removing a file, not with ``os.access``: root passes every
    permission check but still cannot write to a read-only mount or to ``/proc``.
    """
    import tempfile

    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise DataError(f"{existing}: is a file, not a folder; cannot write output under it")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise DataError(f"{folder}: cannot write there ({e.strerror or e})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for each non-blank line.

    Every problem is a :class:`DataError` naming the file and line: a missing file or a
    directory, bytes that are not UTF-8 (binary garbage), invalid JSON, nesting too deep
    for the parser, integers past Python's digit limit, a line longer than
    :data:`MAX_LINE_BYTES` (read with that bound: the file is streamed).
    """
    path = Path(path)
    _reading.where = None
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSONL file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        f = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    with f:
        lineno = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(
                    f"{path}:{lineno}: line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB; "
                    "is this a JSONL file (one object per line)?"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line); is this a JSONL text file?") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{lineno}: JSON nested too deeply") from None
            except ValueError as e:  # e.g. an integer with more digits than Python converts
                raise DataError(f"{path}:{lineno}: unusable JSON ({str(e)[:200]})") from None
            # kept if the consumer fails on this line (the generator is closed, not resumed)
            _reading.where = (str(path), lineno)
            yield lineno, obj
            _reading.where = None


def load_weval_jsonl(path: str | Path) -> list[WEvalDocument]:
    """Load and validate a WEval file; ids must be unique across the file."""
    docs: list[WEvalDocument] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        doc = WEvalDocument.from_dict(obj, where=f"{Path(path).name}:{lineno}")
        if doc.id in seen:
            raise DataError(
                f"{path}:{lineno}: duplicate document id {doc.id!r} (first on line {seen[doc.id]})"
            )
        seen[doc.id] = lineno
        docs.append(doc)
    if not docs:
        raise DataError(f"{path}: no documents")
    return docs
