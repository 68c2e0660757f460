"""Re-create the small excerpts in this folder from the paper's released files.

    python tests/data/paper/make_fixtures.py /path/to/paper/data

Excerpts keep each file's own layout (Parquet re-serialised with pyarrow, same schema;
JSONL lines copied verbatim):

* ``writing_subset.parquet``: base prompts 0-2, i.e. rows i + k*506, re-strided to
  rows i + k*3 (15 rows), so the excerpt is strided like the original;
* ``train.parquet``: rows 1-6 plus the first row whose chosen equals its rejected text;
* ``wrl_pairs_test.jsonl``: lines 1-6 plus the first line with identical answers;
* ``val_set.jsonl``: lines 1-5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
GROUPS = 3


def main(src: str) -> None:
    import pyarrow.parquet as pq

    src_dir = Path(src)
    ws = pq.read_table(src_dir / "writing_subset.parquet")
    g = ws.num_rows // 5
    idx = [i + k * g for k in range(5) for i in range(GROUPS)]  # level-major, as in the release
    pq.write_table(ws.take(idx), HERE / "writing_subset.parquet")

    tr = pq.read_table(src_dir / "train.parquet")
    chosen, rejected = tr.column("chosen").to_pylist(), tr.column("rejected").to_pylist()
    same = next(i for i, (c, r) in enumerate(zip(chosen, rejected)) if c.strip() == r.strip())
    pq.write_table(tr.take(list(range(6)) + [same]), HERE / "train.parquet")

    lines = (src_dir / "wrl_pairs_test.jsonl").read_text(encoding="utf-8").splitlines()
    same = next(
        i for i, ln in enumerate(lines)
        if (o := json.loads(ln))["chosen"][-1]["content"].strip() == o["rejected"][-1]["content"].strip()
    )
    (HERE / "wrl_pairs_test.jsonl").write_text("\n".join(lines[:6] + [lines[same]]) + "\n", encoding="utf-8")

    lines = (src_dir / "val_set.jsonl").read_text(encoding="utf-8").splitlines()
    (HERE / "val_set.jsonl").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[4] / "shared" / "data" / "paper"))
