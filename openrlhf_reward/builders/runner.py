"""The one runner of the data builders.

:class:`Build` (build-weval, build-pairs, and build-grpo's extraction with ``--raw``) is a
build in its work directory: it opens the work store (whose fingerprint
refuses other settings), runs the teacher units stage by stage with a progress bar, collects
rejects by reason, and at the end writes the output (atomically; never an empty file, never
while a unit is still pending), ``rejects.jsonl`` and the summary JSON.

:func:`finish` ends every row-writing command (those three, build-cerm, import-ifeval,
import-paper, build-adherence): one summary on stderr, then the exit status -- 0, or 1 while
teacher units are pending (a rerun finishes them); a run that kept nothing raises
:class:`NothingKept`. Errors are never printed here: builders raise them typed
(``DataError``, ``StoreError``, ``TeacherError``, :class:`BuildFailed`) and
``openrlhf_reward.cli`` turns each into one line, in one format, in one place.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from openrlhf_reward.builders.store import WorkStore, write_jsonl_atomic, write_text_atomic
from openrlhf_reward.builders.teacher_units import (
    TeacherUnit,
    UnitStats,
    describe_failures,
    run_units,
)

__all__ = ["Build", "BuildFailed", "NothingKept", "finish", "teacher_meta", "write_rows"]


class BuildFailed(Exception):
    """The input was fine but the run gives no usable output (exit status 1): the teacher
    cannot be set up, or nothing was kept. Finished teacher work stays in the work directory."""


class NothingKept(BuildFailed):
    """Every input was rejected or skipped, so nothing was written (the CLI names the input)."""


def write_rows(path: str | Path, rows: Sequence[Any], *, complete: bool = True) -> str | Path | None:
    """Write ``rows`` to ``path`` atomically, unless there are none or the run is not
    ``complete``: an earlier output is never replaced by an empty or partial one. Returns
    ``path`` as given when written, else None (what :func:`finish` takes as ``output``)."""
    if not rows or not complete:
        return None
    write_jsonl_atomic(path, rows)
    return path


def teacher_meta(teacher: Any) -> dict[str, Any]:
    """The teacher identity recorded in a work store's fingerprint (not speed knobs or keys).

    Schema-constrained decoding changes what a JSON answer can be, so it is recorded too; only
    when on, so work directories of unconstrained builds keep their fingerprint."""
    meta = {"teacher": teacher.name, "teacher_model": teacher.model_name}
    if getattr(teacher, "uses_json_schema", False):
        meta["structured_output"] = True
    return meta


class Build:
    """One resumable build: the work store in ``workdir``, its teacher stages, the rejects.

    ``meta`` is what changes the meaning of a stored unit; the teacher's identity is added.

    >>> with Build(workdir, meta, teacher) as build:
    ...     build.run_units("answers", units, temperature=0.7, max_tokens=512, retries=2)
    ...     build.reject("answer/empty_response", {"id": "x", ...})
    ...     summary = build.write(output, records, {...}, config=cfg)
    """

    def __init__(self, workdir: str | Path, meta: Mapping[str, Any], teacher: Any, *, store_name: str = "work.jsonl",
                 progress: bool = True, chunk_size: int = 0) -> None:
        self.workdir = Path(workdir)
        self.progress = progress
        self.chunk_size = chunk_size
        self.teacher = teacher
        self.store = WorkStore.open(self.workdir / store_name, meta={**meta, **teacher_meta(teacher)})
        self.rejects: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.stages: dict[str, UnitStats] = {}  # stage (its progress bar's name) -> this run's counts

    def __enter__(self) -> Build:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    def run_units(self, stage: str, units: Sequence[TeacherUnit], *, temperature: float, max_tokens: int,
                  retries: int, json_schema: Mapping[str, Any] | None = None) -> UnitStats:
        """Answer the units not yet in the store (:func:`.teacher_units.run_units`)."""
        self.stages[stage] = run_units(
            self.teacher, units, self.store, temperature=temperature, max_tokens=max_tokens, retries=retries,
            chunk_size=self.chunk_size, desc=stage, progress=self.progress, json_schema=json_schema,
        )
        return self.stages[stage]

    def extract(self, raw: Sequence[Any], config: Any, *, seed: int) -> list[Any]:
        """Requirement extraction of raw instructions (:mod:`.extract`); its rejects count as
        ``extract/<reason>``. Returns the instructions that passed, in input order."""
        from openrlhf_reward.builders.extract import run_extraction

        kept, rejects, self.stages["extract requirements"] = run_extraction(
            raw, self.teacher, self.store, config, seed=seed, chunk_size=self.chunk_size, progress=self.progress
        )
        for r in rejects:
            self.reject(f"extract/{r['reason']}", r)
        return kept

    def reject(self, reason: str, record: Mapping[str, Any]) -> None:
        self.rejects.append(dict(record))
        self.reasons[reason] += 1

    @property
    def pending(self) -> int:
        """Units the teacher failed on this run: not stored, so a rerun asks them again."""
        return sum(len(s.failed) for s in self.stages.values())

    def failures(self) -> list[str]:
        return [line for s in self.stages.values() for line in describe_failures(s)]

    def write_rejects(self) -> Path:
        return write_jsonl_atomic(self.workdir / "rejects.jsonl", self.rejects)

    def write(self, output: str | Path, records: Sequence[Any], summary: dict[str, Any], *, config: Any,
              summary_path: str | Path | None = None) -> dict[str, Any]:
        """Write ``records`` to ``output`` unless none were kept or units are pending (so a
        previous output is never replaced by an empty or partial one), then the rejects and
        ``summary`` (default path: WORKDIR/summary.json). Returns the summary with its paths."""
        complete = not self.pending
        written = write_rows(output, records, complete=complete)
        summary.update(
            complete=complete,
            output=str(written) if written else None,
            rejected_by_reason=dict(sorted(self.reasons.items())),
            rejects_path=str(self.write_rejects()),
            config={k: v for k, v in asdict(config).items() if k != "progress"},
        )
        if not complete:
            summary.update(pending_units=self.pending, failures=self.failures())
        path = Path(summary_path) if summary_path else self.workdir / "summary.json"
        write_text_atomic(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        summary["summary_path"] = str(path)
        return summary


def finish(
    command: str,
    kept: Mapping[str, int],
    rejected: Mapping[str, int],
    *,
    output: str | Path | None,
    notes: Iterable[str] = (),
    failures: Sequence[str] = (),
) -> int:
    """Print ``command: kept ...; rejected N (reason: n, ...)`` and note lines on stderr for a
    command that wrote ``output`` (None: nothing). Returns the exit status: 1 while units are
    pending (``failures``), else 0; raises :class:`NothingKept` when nothing was written."""
    line = f"{command}: kept {', '.join(f'{k} {v}' for k, v in kept.items())}; rejected {sum(rejected.values())}"
    if sum(rejected.values()):
        line += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(rejected.items(), key=lambda x: (-x[1], x[0]))) + ")"
    notes = [*notes, *failures] if failures else [*notes, *([f"wrote {output}"] if output else [])]
    print("\n".join([line, *(f"  {note}" for note in notes)]), file=sys.stderr)
    if failures:
        return 1
    if output is None:
        raise NothingKept
    return 0
