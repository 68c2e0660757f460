"""``build-cerm``: preference pairs -> prompt rows for CE-RM training (recipes/train_cerm.sh).

Input: a JSONL file, a Parquet file, or a ``datasets`` dataset name, one preference pair per
row: ``chosen`` and ``rejected`` as strings or as chat-message lists (the last assistant
message is the response), and the query in ``--query-field`` (default: the first of query,
prompt, instruction, question, input) or, when no such field exists, taken from the chat
list (the user turn; earlier turns of a multi-turn chat are rendered as "User: / Assistant:"
lines before it). This reads the paper's WRL pairs as released (``train.parquet``: strings;
``test.jsonl``: chat lists) and any chosen/rejected table.

Output, per pair and side (``--sides``; default both), one OpenRLHF prompt row::

    {"id": "cerm-000000-chosen",
     "input": [{"role": "user", "content": "<the CE-RM criteria turn for the query>"}],
     "label": {"query": ..., "chosen": ..., "rejected": ..., "side": "chosen"}}

The row's prompt is the criteria turn (the query alone); the agent adds the evaluation turn
for ``label.side`` and compares it with evaluations of the other side. Pairs whose two
responses are identical carry no signal and are skipped (counted).
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import DataError, iter_jsonl
from openrlhf_reward.text import is_blank

HELP = "Build CE-RM training rows (criteria prompt + pair label) from chosen/rejected preference data."
QUERY_FIELDS = ("query", "prompt", "instruction", "question", "input")
SIDES = ("chosen", "rejected")

__all__ = ["build_cerm_rows", "pair_from_row", "read_pairs"]


def read_pairs(source: str, split: str = "train", dataset_config: str | None = None) -> Iterator[tuple[str, Any]]:
    """(where, row) for each row of a JSONL / Parquet file or a ``datasets`` dataset (a hub
    name or a local folder of data files)."""
    path = Path(source)
    if path.is_file():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path)
            except Exception as e:  # noqa: BLE001 - a corrupt file is the user's input
                raise DataError(f"{path}: not a readable Parquet file ({e})") from None
            for i, row in enumerate(table.to_pylist()):
                yield f"{path.name}[{i}]", row
            return
        for lineno, obj in iter_jsonl(path):
            yield f"{path.name}:{lineno}", obj
        return
    if not path.is_dir() and (source.endswith((".jsonl", ".json", ".parquet"))
                              or (path.parent != Path(".") and path.parent.is_dir())):
        raise DataError(f"input file not found: {source}")
    # a hub name, or a local folder of data files: both are `datasets`' business
    import datasets

    try:
        ds = datasets.load_dataset(source, dataset_config, split=split)
    except Exception as e:  # noqa: BLE001 - surface the datasets error with context
        raise DataError(f"could not load {source!r} (split {split!r}) with datasets: {e}") from None
    for i, row in enumerate(ds):
        yield f"{source}[{i}]", row


def _messages(value: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        return value
    return None


def _response(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        text = value
    elif (msgs := _messages(value)) is not None:
        last = msgs[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
            raise DataError(f"{where}: field {name!r}: the last chat message must be the assistant's answer")
        text = last["content"]
    else:
        raise DataError(f"{where}: field {name!r} must be a string or a list of chat messages")
    if is_blank(text):
        raise DataError(f"{where}: field {name!r} is empty")
    return text


def _query_from_chat(msgs: list[Mapping[str, Any]], where: str) -> str:
    turns = msgs[:-1]  # everything before the answer
    if not turns or turns[-1].get("role") != "user":
        raise DataError(f"{where}: the chat has no user turn before the answer")
    if len(turns) == 1:
        return str(turns[0].get("content") or "")
    return "\n\n".join(f"{str(m.get('role', '')).capitalize()}: {m.get('content') or ''}" for m in turns)


def pair_from_row(row: Any, where: str, query_field: str | None = None) -> tuple[str, str, str]:
    """(query, chosen, rejected) of one input row; DataError names the row and field."""
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: a row must be an object")
    for name in ("chosen", "rejected"):
        if name not in row:
            raise DataError(f"{where}: missing field {name!r} (row has {sorted(row)})")
    chosen = _response(row["chosen"], where, "chosen")
    rejected = _response(row["rejected"], where, "rejected")
    fields = (query_field,) if query_field else QUERY_FIELDS
    name = next((f for f in fields if isinstance(row.get(f), str)), None)
    if name is not None:
        query = row[name]
    elif query_field:
        raise DataError(f"{where}: field {query_field!r} must be a string")
    elif (msgs := _messages(row["chosen"])) is not None:
        query = _query_from_chat(msgs, where)
    else:
        raise DataError(f"{where}: no query field (looked for {', '.join(QUERY_FIELDS)}) and 'chosen' is not a chat")
    if not query.strip():
        raise DataError(f"{where}: the query is empty")
    return query.strip(), chosen, rejected


def build_cerm_rows(
    rows: Iterable[tuple[str, Any]],
    *,
    criteria_template: str,
    sides: tuple[str, ...] = SIDES,
    query_field: str | None = None,
    id_prefix: str = "cerm",
    datasource: str | None = None,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], Counter]:
    """The prompt rows and the skipped pairs by reason."""
    from openrlhf_reward.judge_prompts import fill_template

    out: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for index, (where, row) in enumerate(rows):
        if limit is not None and index >= limit:
            break
        query, chosen, rejected = pair_from_row(row, where, query_field)
        if chosen.strip() == rejected.strip():
            skipped["identical responses"] += 1
            continue
        prompt = fill_template(criteria_template, query=query)
        for side in sides:
            r: dict[str, Any] = {
                "id": f"{id_prefix}-{index:06d}-{side}",
                "input": [{"role": "user", "content": prompt}],
                "label": {"query": query, "chosen": chosen, "rejected": rejected, "side": side},
            }
            if datasource:
                r["datasource"] = datasource
            out.append(r)
    return out, skipped


def add_arguments(p: argparse.ArgumentParser) -> None:
    from openrlhf_reward.builders.cli_args import add_io_arguments

    add_io_arguments(p, "Pairs: a JSONL or Parquet file, or a datasets dataset name.", "Prompt rows JSONL to write (atomically).")
    p.add_argument("--split", default="train", help="datasets split (default %(default)s).")
    p.add_argument("--dataset-config", default=None, help="datasets configuration name.")
    p.add_argument("--query-field", default=None, help=f"Field holding the query (default: the first of {', '.join(QUERY_FIELDS)}, else the chat's user turn).")
    p.add_argument("--sides", default="both", choices=("both", *SIDES), help="Which side each row evaluates; both = two rows per pair (default %(default)s).")
    p.add_argument("--criteria-template-file", default=None, help="File replacing the criteria turn's text (needs {query}); default: the judge backend's cerm template.")
    p.add_argument("--id-prefix", default="cerm", help="Row ids are PREFIX-<pair index>-<side> (default %(default)s).")
    p.add_argument("--datasource", default=None, help="Add this datasource to every row (OpenRLHF logs rewards per datasource).")
    p.add_argument("--limit", type=int, default=None, help="Use only the first N pairs.")


def run(args: argparse.Namespace) -> int:
    from openrlhf_reward.builders.runner import finish, write_rows
    from openrlhf_reward.judge_prompts import CERM_CRITERIA_TEMPLATE, read_template

    sides = SIDES if args.sides == "both" else (args.sides,)
    pairs = read_pairs(args.input, args.split, args.dataset_config)
    try:
        try:
            template = read_template(args.criteria_template_file, CERM_CRITERIA_TEMPLATE, "query", "--criteria-template-file")
        except ValueError as e:
            raise DataError(str(e)) from None
        rows, skipped = build_cerm_rows(
            pairs,
            criteria_template=template, sides=sides, query_field=args.query_field,
            id_prefix=args.id_prefix, datasource=args.datasource, limit=args.limit,
        )
    finally:
        pairs.close()  # release the input (an open file, a table) also when a bad row stops the build
    kept = {"pairs": len(rows) // len(sides), "rows": len(rows)} if rows else {"rows": 0}
    return finish("build-cerm", kept, skipped, output=write_rows(args.output, rows))
