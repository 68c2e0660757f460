"""`weval view RUN [RUN2] --output DIR`: a static per-sample viewer of logged WEval runs.

Writes ``DIR/index.html`` (every page of the site: the data is embedded as one JSON block
and rendered by a small inline script, so it opens from ``file://`` with no server and no
network) and ``DIR/report.png`` (the `weval report` plot). Pages, addressed by the URL hash:

* summary (``#``): each run's metrics with their 95 % bootstrap CIs, the plot and, for two
  runs, the paired comparison;
* document list (``#list``): paginated, filterable by family, category, requirement type
  and "misordered only"; with two runs it is sorted by how much the runs disagree;
* one document (``#doc=<key>``): instruction, requirements (type, check, which candidates
  drop them), the candidates in gold order with each run's score and rank, the misordered
  pairs highlighted, and the hack-probe answers with their scores.

Documents are rendered from the embedded JSON on demand (one page of the list, one
document), so a 506-document run opens as fast as the demo set.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import DataError
from weval_tasks.stats import DEFAULT_RESAMPLES, DEFAULT_SEED

PAGE_SIZE = 50
#: Attack answers are shown up to this many characters: most are long copies of the document's
#: own text (dots, repeat, echo, worst_claim), and embedding them whole would triple the page.
ATTACK_SHOWN_CHARS = 600


def _clip(text: str) -> str:
    if len(text) <= ATTACK_SHOWN_CHARS:
        return text
    return text[:ATTACK_SHOWN_CHARS] + f" [... {len(text) - ATTACK_SHOWN_CHARS} more characters]"


def _sgn(x: float) -> int:
    return (x > 0) - (x < 0)


def misordered_pairs(gold: list[int], scores: list[float]) -> list[list[int]]:
    """[better, worse] candidate indices (gold order) the scorer does not put strictly in order;
    a tie counts as misordered, as in ``pairwise_acc``."""
    out = []
    for i, j in combinations(range(len(gold)), 2):
        b, w = (i, j) if gold[i] < gold[j] else (j, i)
        if not scores[b] > scores[w]:
            out.append([b, w])
    return sorted(out, key=lambda p: (gold[p[0]], gold[p[1]]))


def disagreement(a: list[float], b: list[float]) -> float:
    """Share of candidate pairs the two scorers order differently (a tie differs from an order)."""
    pairs = list(combinations(range(len(a)), 2))
    return sum(_sgn(a[i] - a[j]) != _sgn(b[i] - b[j]) for i, j in pairs) / len(pairs)


def _run_rows(path: str) -> list[dict[str, Any]]:
    from weval_tasks.report import find_results, load_run

    files = find_results([path])
    if len(files) != 1:
        raise DataError(f"{path} holds {len(files)} runs (results_*.json); name one results file")
    rows = load_run(files[0])
    if not rows:
        raise DataError(f"no WEval task results in {path}")
    if not any(r["per_doc"] for r in rows):
        raise DataError(f"{path}: no logged samples; rerun weval with --log_samples")
    return rows


def build_site_data(paths: list[str], n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                    page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (what ``index.html`` embeds)."""
    return _site_data(_load(paths, n_resamples, seed), n_resamples, seed, page_size)


def _load(paths: list[str], n_resamples: int, seed: int) -> list[list[dict[str, Any]]]:
    from weval_tasks.report import add_cis, disambiguate

    runs = [_run_rows(p) for p in paths]
    disambiguate([r for rows in runs for r in rows])
    for rows in runs:
        add_cis(rows, n_resamples, seed)
    return runs


def _site_data(runs: list[list[dict[str, Any]]], n_resamples: int, seed: int, page_size: int) -> dict[str, Any]:
    from weval_tasks.attacks import build_attacks
    from weval_tasks.metrics import pessimistic_positions
    from weval_tasks.report import compare, hack_columns, json_rows

    names = [rows[0]["name"] for rows in runs]
    if len(names) == 2 and names[0] == names[1]:
        names = [f"A: {names[0]}", f"B: {names[1]}"]

    docs: dict[str, dict[str, Any]] = {}
    for k, rows in enumerate(runs):
        for row in rows:
            fam = row["family"]
            metrics_of = {(e["task"], e["id"]): e["metrics"] for e in row["per_doc"]}
            for task, doc, real, attacks in row["scored"]:
                key = f"{fam}/{doc.id}"
                d = docs.get(key)
                if d is None:
                    dropped_by: dict[str, list[int]] = {r.id: [] for r in doc.requirements}
                    for i, c in enumerate(doc.candidates):
                        for rid in c.dropped:
                            dropped_by.setdefault(rid, []).append(i)
                    d = docs[key] = {
                        "key": key, "family": fam, "task": task, "id": doc.id, "category": doc.category,
                        "prompt": doc.prompt,
                        "requirements": [{"id": r.id, "type": r.type, "text": r.text, "check": r.check,
                                          "dropped_by": dropped_by.get(r.id, [])} for r in doc.requirements],
                        "candidates": [{"gold": c.gold_rank, "response": c.response, "dropped": list(c.dropped)}
                                       for c in doc.candidates],
                        "attacks": {a: _clip(t) for a, t in build_attacks(doc).items()} if attacks else None,
                        "runs": [None] * len(runs),
                    }
                gold = [c.gold_rank for c in doc.candidates]
                pos = pessimistic_positions(gold, real)
                d["runs"][k] = {
                    "scores": real,
                    "rank": [p + 1 for p in pos],
                    "misordered": misordered_pairs(gold, real),
                    "attack_scores": attacks,
                    "metrics": metrics_of.get((task, doc.id), {}),
                }
    for d in docs.values():
        both = [r for r in d["runs"] if r is not None]
        d["disagreement"] = disagreement(both[0]["scores"], both[1]["scores"]) if len(both) == 2 else None
    def corr_gap(d: dict[str, Any]) -> float:
        both = [r for r in d["runs"] if r is not None]
        return abs(both[0]["metrics"]["correlation"] - both[1]["metrics"]["correlation"]) if len(both) == 2 else 0.0

    # Two runs: most disagreement first (equal shares: the larger gap in correlation first);
    # one run: data order by family, task and id.
    order = sorted(docs.values(), key=lambda d: (-(d["disagreement"] or 0.0), -corr_gap(d), d["family"], d["task"], d["id"]))

    comparisons = []
    if len(runs) == 2:
        by_b = {r["family"]: r for r in runs[1]}
        for ra in runs[0]:
            rb = by_b.get(ra["family"])
            if rb is None:
                continue
            try:
                comparisons.append(compare(ra, rb, n_resamples, seed))
            except DataError as e:
                comparisons.append({"family": ra["family"], "error": str(e)})
    return {
        "runs": names,
        "files": [rows[0]["file"] for rows in runs],
        "summary": [{"run": k, **j} for k, rows in enumerate(runs) for j in json_rows(rows)],
        "comparisons": comparisons,
        "hack_columns": [c for c in hack_columns() if c.startswith("hack_")],
        "docs": order,
        "page_size": page_size,
        "n_resamples": n_resamples,
    }


def write_site(paths: list[str], out: Path, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
               with_plot: bool = True, page_size: int = PAGE_SIZE) -> Path:
    """Write the site into ``out``; returns the path of ``index.html``."""
    from weval_tasks.report import plot

    runs = _load(paths, n_resamples, seed)
    data = _site_data(runs, n_resamples, seed, page_size)
    out.mkdir(parents=True, exist_ok=True)
    data["plot"] = None
    if with_plot:
        plot([r for rows in runs for r in rows], out / "report.png")
        data["plot"] = "report.png"
    # "</" would end the <script> element early; "\u2028"/"\u2029" are fine in JSON and in JS.
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    index = out / "index.html"
    index.write_text(_TEMPLATE.replace("__DATA__", blob), encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weval view", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="one or two runs (lm-eval output folder or results file)")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the site into")
    parser.add_argument("--n-resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples for the CIs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed")
    parser.add_argument("--no-plot", action="store_true", help="skip the report plot (no matplotlib)")
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE, help="documents per list page")
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error("give one run, or two to compare")
    if args.page_size < 1 or args.n_resamples < 1:
        parser.error("--page-size and --n-resamples must be >= 1")
    try:
        index = write_site(args.runs, args.output, args.n_resamples, args.seed, not args.no_plot, args.page_size)
    except (FileNotFoundError, json.JSONDecodeError, DataError) as e:
        print(f"weval view: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {index} (open it in a browser: file://{index.resolve()})")
    return 0


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>WEval viewer</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; font-size: 13px; }
th { background: #f2f2f2; }
td.num { text-align: right; white-space: nowrap; }
.ci { color: #777; font-size: 11px; }
pre { white-space: pre-wrap; max-height: 14em; overflow: auto; margin: 0; font-size: 12px; }
td.in-misordered { background: #ffd7d7; }
.scroll { overflow-x: auto; }
li.pair.misordered { color: #a00; }
.better { color: #070; } .worse { color: #a00; }
.hacked { background: #ffd7d7; }
#filters label { margin-right: 1em; }
.runs { display: flex; gap: 1em; }
.runs > div { flex: 1; }
img { max-width: 100%; }
</style>
</head>
<body>
<nav><a href="#">Summary</a><a href="#list">Documents</a></nav>
<div id="app"></div>
<script type="application/json" id="weval-data">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("weval-data").textContent);
const app = document.getElementById("app");
const NRUNS = DATA.runs.length;
const HEAD = ["correlation", "il", "pl", "top1", "bon", "pairwise_acc", "tie_rate", "hack_rate", "hack_rate_keys"];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function fmt(v, d) { return (v === null || v === undefined || Number.isNaN(v)) ? "-" : Number(v).toFixed(d === undefined ? 1 : d); }
function fmtScore(v) { return (v === null || v === undefined) ? "-" : (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : Number(v).toPrecision(4)); }
function metricCell(m) {
  if (!m) return el("td", {class: "num", text: "-"});
  const td = el("td", {class: "num"}, fmt(m.value));
  if (m.ci95) td.append(" ", el("span", {class: "ci", text: "[" + fmt(m.ci95[0]) + ", " + fmt(m.ci95[1]) + "]"}));
  return td;
}
function table(header, rows, attrs) {
  const t = el("table", attrs || {});
  t.append(el("tr", {}, ...header.map(h => el("th", {text: h}))));
  for (const r of rows) t.append(r);
  return t;
}
function parseHash() {
  const h = location.hash.replace(/^#/, "");
  const out = {};
  for (const part of h.split("&")) {
    if (!part) continue;
    const i = part.indexOf("=");
    if (i < 0) out[decodeURIComponent(part)] = true; else out[decodeURIComponent(part.slice(0, i))] = decodeURIComponent(part.slice(i + 1));
  }
  return out;
}
function setHash(state) {
  location.hash = Object.entries(state).filter(([k, v]) => v !== "" && v !== undefined && v !== null)
    .map(([k, v]) => encodeURIComponent(k) + (v === true ? "" : "=" + encodeURIComponent(v))).join("&");
}

function renderSummary() {
  app.append(el("h1", {text: "WEval runs"}));
  DATA.runs.forEach((n, k) => app.append(el("p", {}, el("b", {text: (NRUNS > 1 ? "ABCD"[k] + ": " : "") + n}), " ", el("span", {class: "ci", text: DATA.files[k]}))));
  app.append(el("p", {class: "ci", text: "Values with their 95% bootstrap CI over documents (" + DATA.n_resamples + " resamples, seeded)."}));
  const rows = [];
  for (const s of DATA.summary) {
    for (const [task, ms] of Object.entries(s.tasks)) {
      if (!task.endsWith("_all") && Object.keys(s.tasks).some(t => t.endsWith("_all"))) continue;
      rows.push(el("tr", {"data-run": s.run, "data-task": task}, el("td", {text: s.name}), el("td", {text: task}),
        ...HEAD.map(k => metricCell(ms[k])),
        ...["length", "format", "style", "content"].map(t => metricCell(s.per_type[t]))));
    }
  }
  app.append(el("h2", {text: "Metrics"}), el("div", {class: "scroll"}, table(["run", "task", ...HEAD, "acc_length", "acc_format", "acc_style", "acc_content"], rows, {id: "summary"})));
  const hackRows = [];
  for (const s of DATA.summary) for (const [task, ms] of Object.entries(s.tasks)) {
    if (!task.endsWith("_all") || !ms.hack_rate) continue;
    hackRows.push(el("tr", {}, el("td", {text: s.name}), el("td", {text: task}), ...DATA.hack_columns.map(k => metricCell(ms[k]))));
  }
  if (hackRows.length) app.append(el("h2", {text: "Hack rate per attack"}), el("div", {class: "scroll"}, table(["run", "task", ...DATA.hack_columns.map(c => c.slice(5))], hackRows)));
  for (const c of DATA.comparisons) {
    app.append(el("h2", {text: "Paired comparison A - B, " + c.family}));
    if (c.error) { app.append(el("p", {class: "worse", text: c.error})); continue; }
    app.append(el("p", {text: c.n_docs + " documents scored by both runs."}));
    app.append(table(["metric", "A", "B", "A - B", "95% CI", "verdict"], Object.entries(c.metrics).map(([k, m]) =>
      el("tr", {}, el("td", {text: k}), el("td", {class: "num", text: fmt(m.a)}), el("td", {class: "num", text: fmt(m.b)}),
        el("td", {class: "num", text: fmt(m.diff)}), el("td", {class: "num", text: m.ci95 ? "[" + fmt(m.ci95[0]) + ", " + fmt(m.ci95[1]) + "]" : "-"}),
        el("td", {class: m.verdict === "A better" ? "better" : (m.verdict === "B better" ? "worse" : ""), text: m.verdict})))));
  }
  if (DATA.plot) app.append(el("h2", {text: "Plot"}), el("img", {src: DATA.plot, alt: "weval report plot"}));
}

function filtered(st) {
  return DATA.docs.filter(d =>
    (!st.family || d.family === st.family) &&
    (!st.category || d.category === st.category) &&
    (!st.type || d.requirements.some(r => r.type === st.type)) &&
    (st.misordered === undefined || d.runs.some(r => r && r.misordered.length > 0)));
}

function select(name, values, current, st) {
  const s = el("select", {id: "f-" + name}, el("option", {value: "", text: "all"}));
  for (const v of values) { const o = el("option", {value: v, text: v}); if (v === current) o.defaultSelected = true; s.append(o); }
  s.addEventListener("change", () => { const n = {...st, page: ""}; n[name] = s.value; setHash({list: true, ...n}); });
  return el("label", {}, name + " ", s);
}

function renderList(st) {
  const uniq = f => [...new Set(DATA.docs.flatMap(f))].sort();
  const box = el("input", {type: "checkbox", id: "f-misordered"});
  box.defaultChecked = st.misordered !== undefined;  // the attribute: visible in the DOM
  box.addEventListener("change", () => { const n = {...st, page: ""}; if (box.checked) n.misordered = true; else delete n.misordered; setHash({list: true, ...n}); });
  app.append(el("div", {id: "filters"}, select("family", uniq(d => [d.family]), st.family, st),
    select("category", uniq(d => [d.category]), st.category, st),
    select("type", uniq(d => d.requirements.map(r => r.type)), st.type, st),
    el("label", {}, box, " misordered only")));
  const docs = filtered(st);
  const size = DATA.page_size, pages = Math.max(1, Math.ceil(docs.length / size));
  const page = Math.min(pages, Math.max(1, parseInt(st.page || "1", 10) || 1));
  app.append(el("p", {id: "count", text: docs.length + " documents" + (NRUNS > 1 ? ", the runs' largest disagreement first" : "") + "; page " + page + " of " + pages}));
  const header = ["document", "family", "category"];
  DATA.runs.forEach((n, k) => header.push(...(NRUNS > 1 ? ["ABCD"[k] + " corr", "ABCD"[k] + " misordered"] : ["correlation", "top1", "misordered pairs"])));
  if (NRUNS > 1) header.push("disagreement");
  const rows = docs.slice((page - 1) * size, page * size).map(d => {
    const tr = el("tr", {class: "doc-row", "data-doc": d.key},
      el("td", {}, el("a", {href: "#doc=" + encodeURIComponent(d.key), text: d.id})), el("td", {text: d.family}), el("td", {text: d.category}));
    d.runs.forEach(r => {
      if (!r) { tr.append(el("td", {text: "not scored"}), el("td", {})); if (NRUNS === 1) tr.append(el("td", {})); return; }
      tr.append(el("td", {class: "num", text: fmt(r.metrics.correlation)}));
      if (NRUNS === 1) tr.append(el("td", {class: "num", text: fmt(r.metrics.top1, 0)}));
      tr.append(el("td", {class: "num", text: String(r.misordered.length)}));
    });
    if (NRUNS > 1) tr.append(el("td", {class: "num", text: d.disagreement === null ? "-" : fmt(100 * d.disagreement) + "%"}));
    return tr;
  });
  app.append(table(header, rows, {id: "doc-list"}));
  const nav = el("p", {id: "pages"});
  for (let p = 1; p <= pages; p++) {
    nav.append(p === page ? el("b", {text: String(p)}) : el("a", {href: "#", text: String(p), "data-page": p}), " ");
  }
  nav.addEventListener("click", ev => { const p = ev.target.getAttribute("data-page"); if (p) { ev.preventDefault(); setHash({list: true, ...st, page: p}); } });
  app.append(nav);
}

function renderDoc(key) {
  const d = DATA.docs.find(x => x.key === key);
  if (!d) { app.append(el("p", {text: "no document " + key})); return; }
  app.append(el("h1", {id: "doc-title", "data-doc": d.key, text: d.id}), el("p", {text: d.family + " / " + d.task + " / " + d.category}));
  app.append(el("h2", {text: "Instruction"}), el("pre", {id: "prompt", text: d.prompt}));
  const label = i => "C" + (i + 1) + " (gold " + d.candidates[i].gold + ")";
  app.append(el("h2", {text: "Requirements"}), table(["id", "type", "text", "check", "dropped by"], d.requirements.map(r =>
    el("tr", {class: "req", "data-type": r.type}, el("td", {text: r.id}), el("td", {text: r.type}), el("td", {text: r.text}),
      el("td", {}, el("code", {text: r.check ? JSON.stringify(r.check) : "none (no rule check)"})),
      el("td", {text: r.dropped_by.map(label).join(", ") || "-"})))));
  const order = d.candidates.map((c, i) => i).sort((a, b) => d.candidates[a].gold - d.candidates[b].gold);
  const header = ["candidate", "gold rank", "dropped"];
  DATA.runs.forEach((n, k) => header.push((NRUNS > 1 ? "ABCD"[k] + " " : "") + "score", (NRUNS > 1 ? "ABCD"[k] + " " : "") + "scorer rank"));
  header.push("response");
  const rows = order.map(i => {
    const c = d.candidates[i];
    const bad = d.runs.some(r => r && r.misordered.some(p => p.includes(i)));
    const tr = el("tr", {class: "cand" + (bad ? " misordered-cand" : ""), "data-cand": i}, el("td", {text: "C" + (i + 1)}),
      el("td", {class: "num", text: String(c.gold)}), el("td", {text: c.dropped.join(", ") || "-"}));
    d.runs.forEach((r, k) => {
      if (!r) { tr.append(el("td", {text: "-"}), el("td", {text: "-"})); return; }
      const mis = r.misordered.some(p => p.includes(i));
      tr.append(el("td", {class: "num score" + (mis ? " in-misordered" : ""), "data-run": k, "data-cand": i, "data-score": String(r.scores[i]), text: fmtScore(r.scores[i])}),
        el("td", {class: "num", text: String(r.rank[i])}));
    });
    tr.append(el("td", {}, el("pre", {text: c.response})));
    return tr;
  });
  app.append(el("h2", {text: "Candidates in gold order"}), table(header, rows, {id: "candidates"}));
  const cols = el("div", {class: "runs"});
  d.runs.forEach((r, k) => {
    const box = el("div", {}, el("h3", {text: (NRUNS > 1 ? "ABCD"[k] + ": " : "") + DATA.runs[k]}));
    if (!r) { box.append(el("p", {text: "not scored by this run"})); cols.append(box); return; }
    box.append(el("p", {text: "correlation " + fmt(r.metrics.correlation) + ", top1 " + fmt(r.metrics.top1, 0) + ", bon " + fmt(r.metrics.bon, 0) + ", pairwise_acc " + fmt(r.metrics.pairwise_acc)}));
    const ul = el("ul", {class: "pairs", "data-run": k});
    for (const [b, w] of r.misordered) {
      const tie = r.scores[b] === r.scores[w];
      ul.append(el("li", {class: "pair misordered", "data-run": k, "data-pair": b + "-" + w,
        text: "C" + (b + 1) + " (gold " + d.candidates[b].gold + ") " + (tie ? "tied with " : "scored below ") + "C" + (w + 1) + " (gold " + d.candidates[w].gold + "): " + fmtScore(r.scores[b]) + (tie ? " = " : " < ") + fmtScore(r.scores[w])}));
    }
    box.append(el("h4", {text: r.misordered.length + " misordered pair(s)"}), ul);
    cols.append(box);
  });
  app.append(el("h2", {text: "Scorer's view"}), cols);
  if (d.attacks) {
    const worst = d.candidates.reduce((a, c, i) => c.gold > d.candidates[a].gold ? i : a, 0);
    const hdr = ["attack"];
    DATA.runs.forEach((n, k) => hdr.push((NRUNS > 1 ? "ABCD"[k] + " " : "") + "score"));
    hdr.push("answer");
    const rows = Object.entries(d.attacks).map(([name, text]) => {
      const tr = el("tr", {class: "attack", "data-attack": name}, el("td", {text: name}));
      d.runs.forEach((r, k) => {
        if (!r || !r.attack_scores) { tr.append(el("td", {text: "-"})); return; }
        const s = r.attack_scores[name], hacked = s >= r.scores[worst];
        tr.append(el("td", {class: "num" + (hacked ? " hacked" : ""), "data-run": k, "data-score": String(s), title: hacked ? "hack: >= the gold-worst real candidate" : "", text: fmtScore(s) + (hacked ? " (hack)" : "")}));
      });
      tr.append(el("td", {}, el("pre", {text: text})));
      return tr;
    });
    app.append(el("h2", {text: "Hack-probe answers (hack = scores >= the gold-worst real candidate C" + (worst + 1) + ")"}), table(hdr, rows, {id: "attacks"}));
  }
}

function render() {
  app.textContent = "";
  const st = parseHash();
  if (st.doc !== undefined) renderDoc(st.doc);
  else if (st.list !== undefined) { const s = {...st}; delete s.list; renderList(s); }
  else renderSummary();
  document.body.setAttribute("data-rendered", "1");
}
window.addEventListener("hashchange", render);
render();
</script>
</body>
</html>
"""

if __name__ == "__main__":
    sys.exit(main())
