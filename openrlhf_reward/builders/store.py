"""A resumable, loss-free JSON Lines work store, and atomic writes of final files.

Builders append every finished unit of work (one teacher answer, one augmented seed, ...)
to a :class:`WorkStore` under a stable key as soon as it completes. Each append is one
``write`` of one complete line followed by ``flush`` + ``fsync``, so after a crash (even
SIGKILL) the file holds every finished unit plus at most one torn last line, which the
next :meth:`WorkStore.open` cuts off. On restart the builder asks ``key in store`` and
skips finished units; a key is never written twice.

Final outputs are written with :func:`write_jsonl_atomic` (temp file + ``os.replace``) in an
order fixed by the caller (input order or key), so an interrupted-then-resumed build ends
with the same bytes as an uninterrupted one given the same seed and teacher outputs.

Layout of a store file: the first line is a header ``{"key": "__meta__", "value": {...}}``
holding the settings that produced the work (a fingerprint); every other line is
``{"key": str, "value": any JSON}``. Reopening with different settings raises
:class:`StoreMismatchError` instead of silently mixing incompatible work.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "META_KEY",
    "StoreError",
    "StoreMismatchError",
    "WorkStore",
    "dumps_line",
    "write_jsonl_atomic",
    "write_text_atomic",
]

META_KEY = "__meta__"


class StoreError(RuntimeError):
    """A work store that cannot be used (corrupt beyond a torn last line, duplicate key, ...)."""


class StoreMismatchError(StoreError):
    """The work directory was created with different settings than the current run."""


def dumps_line(obj: Any) -> str:
    """One canonical JSON line (no trailing newline): UTF-8 text, stable separators."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not supported on every platform/filesystem.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def write_jsonl_atomic(path: str | Path, records: Iterable[Any]) -> Path:
    """Write ``records`` as JSON Lines to ``path`` atomically, in the order given."""
    return write_text_atomic(path, "".join(dumps_line(r) + "\n" for r in records))


class WorkStore:
    """Append-only keyed JSONL store of finished work units; safe to kill at any moment.

    >>> store = WorkStore.open("work/units.jsonl", meta={"seed": 0, "teacher": "m"})
    >>> if "doc-1" not in store:
    ...     store.put("doc-1", {"response": "..."})
    >>> store.get("doc-1")

    ``put`` is thread-safe. Values must be JSON-serialisable. Reads are served from memory.
    """

    def __init__(self, path: Path, records: dict[str, Any], meta: dict[str, Any] | None, fsync: bool) -> None:
        self.path = path
        self._records = records
        self.meta = meta
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fh = path.open("a", encoding="utf-8", newline="\n")

    @classmethod
    def open(
        cls,
        path: str | Path,
        meta: Mapping[str, Any] | None = None,
        *,
        fsync: bool = True,
    ) -> WorkStore:
        """Open (or create) the store at ``path``, loading the finished units.

        Args:
            path: the JSONL file; its parent directory is created.
            meta: settings fingerprint. A new store records it in its header; an existing
                store must carry an equal header, else :class:`StoreMismatchError` lists the
                differing keys (use a fresh work directory or the same settings).
            fsync: fsync after every append (durable against power loss, not only kills).

        A torn trailing line (no newline, or not valid JSON) left by a killed writer is
        truncated away. Damage anywhere else raises :class:`StoreError`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        records: dict[str, Any] = {}
        stored_meta: dict[str, Any] | None = None
        if path.exists():
            records, stored_meta = cls._load(path)
        meta_d = None if meta is None else json.loads(json.dumps(dict(meta)))  # normalise (tuples etc.)
        store = cls(path, records, stored_meta, fsync)
        if stored_meta is None and meta_d is not None:
            if records:
                store.close()
                raise StoreError(f"{path}: work store has units but no {META_KEY!r} header")
            store._append(META_KEY, meta_d)
            store.meta = meta_d
        elif meta_d is not None and stored_meta != meta_d:
            store.close()
            keys = sorted(k for k in set(meta_d) | set(stored_meta) if meta_d.get(k) != stored_meta.get(k))
            diff = ", ".join(f"{k}: stored {stored_meta.get(k)!r} != now {meta_d.get(k)!r}" for k in keys)
            raise StoreMismatchError(
                f"{path}: this work directory was made with different settings ({diff}); "
                "rerun with the original settings or use a new work directory"
            )
        return store

    @staticmethod
    def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
        records: dict[str, Any] = {}
        meta: dict[str, Any] | None = None
        with path.open("rb") as f:
            data = f.read()
        good_end = 0  # byte offset just past the last complete, valid line
        pos = 0
        lineno = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            lineno += 1
            end = len(data) if nl < 0 else nl + 1
            raw = data[pos:end]
            is_last = end >= len(data)
            try:
                if nl < 0:
                    raise ValueError("no trailing newline")
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict) or not isinstance(rec.get("key"), str) or "value" not in rec:
                    raise ValueError("not a {key, value} record")
            except (ValueError, UnicodeDecodeError) as e:
                if is_last:
                    break  # torn write from a killed process: drop it below
                if not raw.strip():
                    pos = end
                    good_end = end
                    continue
                raise StoreError(f"{path}:{lineno}: corrupt work store line ({e}); only a torn last line is repaired") from None
            key = rec["key"]
            if key == META_KEY:
                if lineno != 1 and meta is not None:
                    raise StoreError(f"{path}:{lineno}: second {META_KEY!r} header")
                meta = rec["value"]
            elif key in records:
                raise StoreError(f"{path}:{lineno}: duplicate key {key!r}")
            else:
                records[key] = rec["value"]
            pos = end
            good_end = end
        if good_end < len(data):
            with path.open("r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return records, meta

    def _append(self, key: str, value: Any) -> None:
        line = dumps_line({"key": key, "value": value}) + "\n"
        self._fh.write(line)  # one write of a whole line: a kill leaves at most a torn tail
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def put(self, key: str, value: Any) -> None:
        """Append one finished unit. Raises :class:`StoreError` if ``key`` is already stored."""
        if not isinstance(key, str) or not key or key == META_KEY:
            raise ValueError(f"invalid work store key {key!r}")
        with self._lock:
            if key in self._records:
                raise StoreError(f"{self.path}: key {key!r} is already stored (work done twice?)")
            self._append(key, value)
            self._records[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, key: str, default: Any = None) -> Any:
        return self._records.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._records[key]

    def __len__(self) -> int:
        return len(self._records)

    def keys(self) -> list[str]:
        """Stored keys in the order they were finished."""
        return list(self._records)

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(key, value)`` pairs whose key starts with ``prefix``, in finish order."""
        return ((k, v) for k, v in list(self._records.items()) if k.startswith(prefix))

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> WorkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
