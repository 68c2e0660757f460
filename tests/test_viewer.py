"""`weval view`: the static site rendered by a real headless Chromium (Debian's `chromium`).

Two real runs on the demo set (`rules` and the `length` backend on `wevaladv_*`, logged
samples); the page's script renders every view from the embedded JSON, and the DOM that
Chromium dumps is checked against values recomputed here from the samples: document ids,
scores, misordered pairs, filters, pagination and the two-run disagreement order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from itertools import combinations
from pathlib import Path
from urllib.parse import quote

import pytest
from test_lm_eval_e2e import _cli, read_outputs, run_cli

from openrlhf_reward.schema import load_weval_jsonl
from weval_tasks import DEMO_DATA
from weval_tasks.attacks import ATTACKS
from weval_tasks.viewer import main as view_main

pytestmark = pytest.mark.slow
DOCS = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("WEVAL_REQUIRE_CHROMIUM") == "1":
            pytest.fail("WEVAL_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium); .ci/run installs it")
    return exe


def browse(index: Path, tmp: Path, fragment: str = "", screenshot: Path | None = None) -> str:
    """The DOM after the page's script ran (or a screenshot), from a real headless Chromium."""
    url = index.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # never share a profile between runs
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    args += [f"--screenshot={screenshot}", "--window-size=1400,2000", "--hide-scrollbars"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class Dom(HTMLParser):
    """Elements with their attributes and text (enough to query a dumped DOM)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        e = {"tag": tag, **{k: (v or "") for k, v in attrs}, "text": ""}
        self.elements.append(e)
        if tag not in ("img", "input", "br", "meta", "option"):
            self._open.append(e)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for e in self._open:
            e["text"] += data

    def find(self, tag: str | None = None, **attrs) -> list[dict]:
        def ok(e):
            if tag and e["tag"] != tag:
                return False
            for k, v in attrs.items():
                k = k.rstrip("_").replace("_", "-")
                if k == "class":
                    if v not in e.get("class", "").split():
                        return False
                elif e.get(k) != v:
                    return False
            return True
        return [e for e in self.elements if ok(e)]


def weval(out: Path, cwd: Path, *args: str) -> None:
    proc = run_cli([*_cli("weval", "weval_tasks"), *args, "--output_path", str(out), "--log_samples"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("view")
    weval(tmp / "rules", tmp, "--model", "rules", "--tasks", "wevaladv_*")
    weval(tmp / "length", tmp, "--model", "rm", "--model_args", "backend=length", "--tasks", "wevaladv_*")
    scores = {}
    for name in ("rules", "length"):
        _, samples = read_outputs(tmp / name)
        scores[name] = {rec["doc"]["id"]: [float(r[0][0]) for r in rec["resps"]]
                        for recs in samples.values() for rec in recs}
    assert view_main([str(tmp / "rules"), str(tmp / "length"), "--output", str(tmp / "two"),
                      "--n-resamples", "200"]) == 0
    assert view_main([str(tmp / "rules"), "--output", str(tmp / "one"), "--n-resamples", "200",
                      "--page-size", "10"]) == 0
    return {"tmp": tmp, "two": tmp / "two" / "index.html", "one": tmp / "one" / "index.html", "scores": scores}


def misordered(gold: list[int], s: list[float]) -> set[str]:
    out = set()
    for i, j in combinations(range(len(gold)), 2):
        b, w = (i, j) if gold[i] < gold[j] else (j, i)
        if s[b] <= s[w]:  # a tie is misordered too
            out.add(f"{b}-{w}")
    return out


def n_real(doc_id: str) -> int:
    return len(DOCS[doc_id].candidates)


def test_the_site_is_static_and_self_contained(site):
    html = site["two"].read_text()
    assert "http://" not in html and "https://" not in html  # no CDN, no server
    assert (site["two"].parent / "report.png").stat().st_size > 10_000
    assert '<img src="report.png"' not in html  # the image is added by the script, relative to the page


def test_summary_shows_metrics_with_cis_and_the_comparison(site):
    dom = Dom(browse(site["two"], site["tmp"]))
    rows = dom.find("tr", data_task="wevaladv_all")
    assert {r["data-run"] for r in rows} == {"0", "1"}
    assert "rules on demo" in rows[0]["text"] and "[" in rows[0]["text"]  # value [lo, hi]
    assert dom.find("img", src="report.png")
    text = " ".join(e["text"] for e in dom.find("h2"))
    assert "Paired comparison A - B, wevaladv" in text and "Hack rate per attack" in text


def test_two_runs_list_documents_by_disagreement_and_filters_work(site):
    a, b = site["scores"]["rules"], site["scores"]["length"]

    def disagree(i: str) -> float:
        n = n_real(i)
        sg = lambda x: (x > 0) - (x < 0)  # noqa: E731
        pairs = list(combinations(range(n), 2))
        return sum(sg(a[i][p] - a[i][q]) != sg(b[i][p] - b[i][q]) for p, q in pairs) / len(pairs)

    dom = Dom(browse(site["two"], site["tmp"], "list"))
    keys = [e["data-doc"] for e in dom.find("tr", class_="doc-row")]
    assert sorted(keys) == sorted(f"wevaladv/{i}" for i in DOCS)
    shares = [disagree(k.split("/", 1)[1]) for k in keys]
    assert shares == sorted(shares, reverse=True) and shares[0] > shares[-1]
    # filters from the page's own state (the URL hash its controls write)
    gold = {i: [c.gold_rank for c in d.candidates] for i, d in DOCS.items()}
    want = {f"wevaladv/{i}" for i, d in DOCS.items() if d.category == "creative_writing"
            and (misordered(gold[i], a[i][: n_real(i)]) or misordered(gold[i], b[i][: n_real(i)]))}
    dom = Dom(browse(site["two"], site["tmp"], "list&category=creative_writing&misordered"))
    assert {e["data-doc"] for e in dom.find("tr", class_="doc-row")} == want
    assert dom.find("input", id="f-misordered")[0].get("checked") is not None
    rtype = "style"
    dom = Dom(browse(site["two"], site["tmp"], f"list&type={rtype}"))
    assert {e["data-doc"] for e in dom.find("tr", class_="doc-row")} == {
        f"wevaladv/{i}" for i, d in DOCS.items() if any(r.type == rtype for r in d.requirements)}


def test_document_view_shows_scores_misordered_pairs_and_attacks_side_by_side(site):
    a, b = site["scores"]["rules"], site["scores"]["length"]
    doc_id = "demo-cw-03"
    doc = DOCS[doc_id]
    n, gold = n_real(doc_id), [c.gold_rank for c in DOCS[doc_id].candidates]
    dom = Dom(browse(site["two"], site["tmp"], "doc=" + quote(f"wevaladv/{doc_id}", safe="")))
    assert dom.find("h1", id="doc-title")[0]["text"] == doc_id
    # candidates in gold order
    assert [int(e["data-cand"]) for e in dom.find("tr", class_="cand")] == sorted(range(n), key=lambda i: gold[i])
    for run, s in (("0", a[doc_id]), ("1", b[doc_id])):
        cells = {int(e["data-cand"]): e for e in dom.find("td", class_="score", data_run=run)}
        assert {i: float(e["data-score"]) for i, e in cells.items()} == pytest.approx(dict(enumerate(s[:n])))
        want = misordered(gold, s[:n])
        assert {e["data-pair"] for e in dom.find("li", class_="misordered", data_run=run)} == want
        # exactly the candidates in a misordered pair are highlighted, per run
        involved = {int(x) for p in want for x in p.split("-")}
        assert {i for i, e in cells.items() if "in-misordered" in e["class"].split()} == involved
        # the hack-probe answers, each with this run's score
        attack = {e["data-attack"]: e for e in dom.find("tr", class_="attack")}
        assert list(attack) == list(ATTACKS)
        got = {e["data-score"] for e in dom.find("td", data_run=run) if "data-score" in e and "score" not in e["class"].split()}
        assert {float(x) for x in got} == {float(x) for x in s[n:]}
    assert len(dom.find("tr", class_="req")) == len(doc.requirements)


def test_one_run_paginates_and_a_screenshot_renders(site):
    dom = Dom(browse(site["one"], site["tmp"], "list&page=3"))
    keys = [e["data-doc"] for e in dom.find("tr", class_="doc-row")]
    assert len(keys) == 5  # 25 documents, 10 a page
    assert dom.find("p", id="count")[0]["text"].endswith("page 3 of 3")
    first = [e["data-doc"] for e in Dom(browse(site["one"], site["tmp"], "list")).find("tr", class_="doc-row")]
    assert len(first) == 10 and not set(first) & set(keys)
    shot = site["tmp"] / "shot.png"
    browse(site["one"], site["tmp"], "", screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_view_errors_are_clear(site, tmp_path, capsys):
    assert view_main([str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(site["tmp"] / "rules", bare)
    for f in bare.rglob("samples_*.jsonl"):
        f.unlink()
    assert view_main([str(bare), "--output", str(tmp_path / "o")]) == 2
    assert "no logged samples" in capsys.readouterr().err
    # the embedded JSON cannot close its <script> element early, and parses back
    html = site["two"].read_text()
    blob = html.split('<script type="application/json" id="weval-data">', 1)[1].split("</script>", 1)[0]
    assert "</" not in blob
    assert json.loads(blob)["runs"] == ["rules on demo", "rm(backend=length) on demo"]
