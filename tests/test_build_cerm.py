"""`openrlhf-reward build-cerm`: preference pairs -> CE-RM prompt rows, on excerpts of the
paper's WRL pairs (Parquet with string answers, JSONL with chat lists) and hand-made rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_reward.cerm.rollout import parse_label
from openrlhf_reward.cli import main
from openrlhf_reward.judge_prompts import CERM_CRITERIA_TEMPLATE, fill_template

DATA = Path(__file__).parent / "data"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_paper_parquet_pairs(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = _rows(DATA / "cerm_paper_train_excerpt.jsonl")
    pq.write_table(pa.Table.from_pylist(src), tmp_path / "train.parquet")
    out = tmp_path / "rows.jsonl"
    assert main(["build-cerm", "--input", str(tmp_path / "train.parquet"), "--output", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == 2 * len(src)
    assert [r["id"] for r in rows[:2]] == ["cerm-000000-chosen", "cerm-000000-rejected"]
    for i, r in enumerate(rows):
        pair = src[i // 2]
        label = parse_label(r["label"])  # what the agent reads
        assert (label.query, label.chosen, label.rejected) == (pair["prompt"].strip(), pair["chosen"], pair["rejected"])
        assert label.side == ("chosen", "rejected")[i % 2]
        assert r["input"] == [{"role": "user", "content": fill_template(CERM_CRITERIA_TEMPLATE, query=label.query)}]
        assert pair["chosen"] not in r["input"][0]["content"]  # the prompt is the query alone
    assert "kept pairs 3, rows 6" in capsys.readouterr().err


def test_paper_chat_list_pairs_and_one_side(tmp_path):
    src = _rows(DATA / "cerm_paper_test_pairs_excerpt.jsonl")
    out = tmp_path / "rows.jsonl"
    assert main(["build-cerm", "--input", str(DATA / "cerm_paper_test_pairs_excerpt.jsonl"),
                 "--output", str(out), "--sides", "rejected", "--datasource", "wrl"]) == 0
    rows = _rows(out)
    assert len(rows) == len(src) and all(r["label"]["side"] == "rejected" and r["datasource"] == "wrl" for r in rows)
    assert rows[0]["label"]["chosen"] == src[0]["chosen"][-1]["content"]
    assert rows[0]["label"]["rejected"] == src[0]["rejected"][-1]["content"]


def test_chat_only_rows_multi_turn_query_file_template_and_skips(tmp_path, capsys):
    chat = [{"role": "user", "content": "Write a haiku."}]
    multi = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Now a limerick."}]
    lines = [
        {"chosen": chat + [{"role": "assistant", "content": "good"}], "rejected": chat + [{"role": "assistant", "content": "bad"}]},
        {"chosen": multi + [{"role": "assistant", "content": "A"}], "rejected": multi + [{"role": "assistant", "content": "B"}]},
        {"question": "Same?", "chosen": "x", "rejected": " x "},
    ]
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tmpl = tmp_path / "t.txt"
    tmpl.write_text("Q: {query}")
    out = tmp_path / "rows.jsonl"
    assert main(["build-cerm", "--input", str(src), "--output", str(out), "--criteria-template-file", str(tmpl)]) == 0
    rows = _rows(out)
    assert [r["input"][0]["content"] for r in rows[::2]] == [
        "Q: Write a haiku.", "Q: User: Hi\n\nAssistant: Hello!\n\nUser: Now a limerick."]
    assert "identical responses: 1" in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ({"prompt": "q", "chosen": "a"}, "pairs.jsonl:1: missing field 'rejected'"),
    ({"prompt": "q", "chosen": "a", "rejected": ""}, "pairs.jsonl:1: field 'rejected' is empty"),
    # blank as the reward server sees it: nothing visible (a zero-width space) or only reasoning
    ({"prompt": "q", "chosen": "\u200b", "rejected": "b"}, "pairs.jsonl:1: field 'chosen' is empty"),
    ({"prompt": "q", "chosen": "a", "rejected": "<think>x</think>"}, "pairs.jsonl:1: field 'rejected' is empty"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "pairs.jsonl:1: field 'chosen' must be a string or a list"),
    ({"chosen": "a", "rejected": "b"}, "pairs.jsonl:1: no query field"),
    ({"chosen": [{"role": "user", "content": "q"}], "rejected": "b"}, "last chat message must be the assistant"),
])
def test_bad_rows_exit_2_with_the_line(tmp_path, capsys, line, message):
    src = tmp_path / "pairs.jsonl"
    src.write_text(json.dumps(line) + "\n")
    out = tmp_path / "rows.jsonl"
    assert main(["build-cerm", "--input", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_input_and_bad_template(tmp_path, capsys):
    assert main(["build-cerm", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    tmpl = tmp_path / "t.txt"
    tmpl.write_text("no placeholder")
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    assert main(["build-cerm", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                 "--criteria-template-file", str(tmpl)]) == 2
    assert "{query}" in capsys.readouterr().err


def test_cerm_modules_import_light():
    from test_imports import heavy_modules_after

    code = ("import openrlhf_reward.cerm, openrlhf_reward.cerm.rollout, openrlhf_reward.builders.cerm\n"
            "import openrlhf_reward.scorers.judge\n")
    assert heavy_modules_after(code) == []  # only agent.py (loaded by OpenRLHF) imports openrlhf


def test_datasets_table(tmp_path):
    """A `datasets` table (here a local folder of data files, loaded by datasets itself)."""
    folder = tmp_path / "prefs"
    folder.mkdir()
    rows = [{"question": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rows.jsonl"
    assert main(["build-cerm", "--input", str(folder), "--output", str(out), "--split", "train", "--limit", "2"]) == 0
    got = [r["label"] for r in _rows(out)]
    assert [(g["query"], g["chosen"], g["side"]) for g in got] == [
        ("Q0", "good 0", "chosen"), ("Q0", "good 0", "rejected"), ("Q1", "good 1", "chosen"), ("Q1", "good 1", "rejected")]
