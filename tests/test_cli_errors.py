"""Builders and importers on bad input (issue 8): one line naming file and line, exit 2, no
traceback, nothing left behind; no rows -> non-zero; output == input refused."""

from __future__ import annotations

import json

import pytest

from openrlhf_reward.cli import main

GOOD_IFEVAL = {"key": 1, "prompt": "Write a haiku.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
REQ = {"id": "a", "type": "style", "text": "lowercase", "check": {"kind": "lowercase"}}
GOOD_LISTED = {"id": "x1", "query": "Write a poem.", "requirements": [REQ]}

BAD_FILES = {
    "binary garbage": b"\x00\x01\xff\xfe\x89PNG\r\n",
    "invalid UTF-8": json.dumps(GOOD_LISTED).encode() + b"\n" + b'{"query": "caf\xe9"}\n',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "huge integer": b'{"id": ' + b"9" * 5000 + b"}\n",
    "list-valued kind": (json.dumps({**GOOD_LISTED, "requirements": [{**REQ, "check": {"kind": ["lowercase"]}}]}) + "\n").encode(),
    "dict-valued kind": (json.dumps({**GOOD_LISTED, "requirements": [{**REQ, "check": {"kind": {"a": 1}}}]}) + "\n").encode(),
}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def _one_line_error(err: str, name: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert name in lines[0], err


CASES = [(c, w) for c in ("build-grpo", "import-ifeval") for w in sorted(BAD_FILES)
         if not (c == "import-ifeval" and "kind" in w)]  # not IFEval rows: see the next test


@pytest.mark.parametrize(("command", "what"), CASES)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, command, what):
    src = tmp_path / "in.jsonl"
    src.write_bytes(BAD_FILES[what])
    out = tmp_path / "out.jsonl"
    rc, err = _run(capsys, [command, "--input", str(src), "--output", str(out)])
    assert rc == 2
    _one_line_error(err, "in.jsonl:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no work dir


@pytest.mark.parametrize(("iid", "kwargs", "why"), [
    ("keywords:existence", {"keywords": 5}, "kwargs.keywords must be a list of strings"),
    ("length_constraints:number_words", {"num_words": "abc", "relation": "at least"}, "kwargs.num_words must be an integer"),
])
def test_import_ifeval_wrong_kwarg_types(tmp_path, capsys, iid, kwargs, why):
    """Readable JSON with bad kwargs is a rejected row, not a bad file: the import goes on
    (exit 0 with the good rows, exit 1 when none is left); --strict stops there with exit 2."""
    bad = {**GOOD_IFEVAL, "instruction_id_list": [iid], "kwargs": [kwargs]}
    src = tmp_path / "in.jsonl"
    out = tmp_path / "out.jsonl"
    src.write_text(json.dumps(bad) + "\n")
    rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(out), "--no-progress"])
    assert rc == 1, err  # the only row rejected: no rows
    assert "rejected 1 (invalid_row: 1)" in err and "in.jsonl:1: IFEval label: instruction 0: " in err and why in err
    assert "no rows came out of" in err and "Traceback" not in err
    assert not out.exists()

    src.write_text(json.dumps(bad) + "\n" + json.dumps({**GOOD_IFEVAL, "key": 2}) + "\n")
    rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(out), "--no-progress"])
    assert rc == 0, err
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["2"] and "in.jsonl:1:" in err
    out.unlink()

    rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(out), "--strict"])
    assert rc == 2
    _one_line_error(err, "in.jsonl:1:")
    assert why in err and not out.exists()


def test_build_pairs_leaves_no_work_directory_after_input_errors(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(BAD_FILES["binary garbage"])
    out = tmp_path / "pairs.jsonl"
    rc, err = _run(capsys, ["build-pairs", "--input", str(src), "--output", str(out),
                            "--teacher-model", "m", "--base-url", "http://127.0.0.1:9/v1"])
    assert rc == 2
    _one_line_error(err, "in.jsonl:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_import_paper_bad_bytes(tmp_path, capsys):
    src = tmp_path / "eval.jsonl"
    src.write_bytes(BAD_FILES["invalid UTF-8"])
    rc, err = _run(capsys, ["import-paper", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                            "--category", "creative_writing"])
    assert rc == 2
    _one_line_error(err, "eval.jsonl:2")
    assert not (tmp_path / "o.jsonl").exists()


def test_output_that_is_a_directory_or_the_input_is_refused(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(GOOD_LISTED) + "\n")
    before = src.read_bytes()
    rc, err = _run(capsys, ["build-grpo", "--input", str(src), "--output", str(tmp_path / "." / "in.jsonl")])
    assert rc == 2
    _one_line_error(err, "is the input file")
    assert src.read_bytes() == before
    (tmp_path / "outdir").mkdir()
    rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(tmp_path / "outdir")])
    assert rc == 2
    _one_line_error(err, "is a directory")


@pytest.mark.parametrize("content", ["", "\n\n", json.dumps({"prompt": ""}) + "\n"])
def test_an_import_with_no_rows_fails(tmp_path, capsys, content):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(out)])
    assert rc != 0
    assert "no rows" in err
    assert not out.exists()


def test_good_input_still_works(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(GOOD_IFEVAL) + "\n")
    out = tmp_path / "out.jsonl"
    rc, _ = _run(capsys, ["import-ifeval", "--input", str(src), "--output", str(out)])
    assert rc == 0
    assert len(out.read_text().splitlines()) == 1


@pytest.mark.slow
def test_weval_bad_metadata_and_bad_data_file(tmp_path, capsys, monkeypatch):
    from weval_tasks.cli import main as weval_main

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "caf\xe9"}\n')
    for meta, needle in (('{"data_files": 5}', "data_files"), (json.dumps({"data_files": str(bad)}), "bad.jsonl:1")):
        monkeypatch.setattr("sys.argv", ["weval"])
        rc = weval_main(["--model", "rules", "--tasks", "weval-creative_writing", "--metadata", meta,
                         "--output_path", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2
        last = [x for x in err.splitlines() if x.strip()][-1]
        assert last.startswith("weval: error:") and needle in last
        assert "Traceback" not in err


# ---------------------------------------------------------------- issue 20, item 8


def test_import_paper_on_a_directory_says_so(tmp_path, capsys):
    rc, err = _run(capsys, ["import-paper", "--input", str(tmp_path), "--output", str(tmp_path / "o.jsonl"),
                            "--category", "creative_writing"])
    assert rc == 2
    _one_line_error(err, "is a directory")
    assert "not found" not in err


def test_builder_refuses_an_unwritable_output_folder_before_work(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(GOOD_IFEVAL) + "\n")
    import importlib

    from openrlhf_reward.cli import COMMANDS

    builder = importlib.import_module(COMMANDS["import-ifeval"])
    monkeypatch.setattr(builder, "run", lambda args: pytest.fail("the builder ran"))
    # /proc refuses new files even to root (a chmod'ed folder would not stop root)
    for out in ("/proc/weval-i20-test/out.jsonl", str(src / "out.jsonl")):
        rc, err = _run(capsys, ["import-ifeval", "--input", str(src), "--output", out])
        assert rc == 2
        _one_line_error(err, "cannot write" if out.startswith("/proc") else "is a file, not a folder")


def test_a_one_line_file_past_the_line_bound_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    from openrlhf_reward import schema

    monkeypatch.setattr(schema, "MAX_LINE_BYTES", 1000)
    src = tmp_path / "big.jsonl"
    src.write_text('{"id": "' + "x" * 5000 + '"}\n')
    reads = []

    class Counting:  # the file object: every read is bounded by the line limit
        def __init__(self, f):
            self.f = f

        def readline(self, limit=-1):
            reads.append(limit)
            return self.f.readline(limit)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = type(src).open
    monkeypatch.setattr(type(src), "open", lambda self, *a, **k: Counting(real_open(self, *a, **k)))
    with pytest.raises(schema.DataError, match="big.jsonl:1: line longer than"):
        list(schema.iter_jsonl(src))
    assert reads and all(0 < r <= 1001 for r in reads)


def test_weval_refuses_an_unwritable_output_path_before_the_run(tmp_path, capsys, monkeypatch):
    from weval_tasks.cli import main as weval_main

    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    before = data.read_bytes()
    for out, needle in ((str(data), "is a file, not a folder"), ("/proc/weval-i20-test/out", "cannot write")):
        monkeypatch.setattr("sys.argv", ["weval"])
        monkeypatch.setattr("lm_eval._cli.HarnessCLI.execute", lambda *a, **k: pytest.fail("the run started"))
        rc = weval_main(["--model", "rules", "--tasks", "weval-creative_writing", "--output_path", out])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert needle in err and "--output_path" in err
    assert data.read_bytes() == before
