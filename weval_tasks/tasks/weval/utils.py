"""WEval task helpers: data loading, candidate choices, the judge task class and prompts,
per-document metrics.

Every metric is computed per document in ``process_*`` (lm-eval groups can only average),
from :mod:`weval_tasks.metrics`, and reported in [0, 100].
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.task import ConfigurableTask

from openrlhf_reward.judge_prompts import (
    DEFAULT_MAX_RESPONSE_CHARS,
    VERDICT_WORDS,
    truncate_middle,
    verdict_messages,
    verdict_text,
)
from openrlhf_reward.schema import CATEGORIES, REQUIREMENT_TYPES, DataError, load_weval_jsonl
from weval_tasks import DEMO_DATA
from weval_tasks.absent import ABSENT_COLUMN, SKIP_ABSENT_ENV
from weval_tasks.docs import document_from_row, document_to_row
from weval_tasks.metrics import (
    document_metrics,
    mean_per_candidate,
    requirement_type_pairs,
    verdict_scores,
)


def _data_files(data_files: Any) -> list[str]:
    if data_files is None or data_files == "":
        return [DEMO_DATA]
    if isinstance(data_files, (str, Path)):
        files = [data_files]
    elif isinstance(data_files, (list, tuple)):
        files = list(data_files)
    else:
        files = []
    if not files or not all(isinstance(f, (str, Path)) for f in files):
        raise DataError(f"metadata 'data_files' must be a path or a list of paths, got {data_files!r}")
    return [str(f) for f in files]


# Judge prompts show at most max_response_chars of a response (head and tail, a marker in
# between), the `judge` backend's option, default and cut; --metadata '{"max_response_chars": N}',
# 0 = never cut.


def load_weval(
    data_files: Any = None,
    category: str | None = None,
    family: str = "weval",
    max_response_chars: Any = DEFAULT_MAX_RESPONSE_CHARS,
    **_: Any,
):
    """``custom_dataset`` for the weval tasks: validated documents of one category.

    ``data_files`` and ``max_response_chars`` come from ``--metadata`` (default: the
    embedded demo set, 16000); ``category`` and ``family`` (``weval`` / ``wevaljudge`` / ``wevaladv`` / ``wevaladvjudge``) from the
    task's ``dataset_kwargs``. A category absent from the data is an empty split under the
    ``weval`` CLI (which then skips that task and reports it) and an error naming the tasks
    to select otherwise.
    """
    import datasets

    if category is not None and category not in CATEGORIES:
        raise DataError(f"unknown category {category!r} in task config; expected one of {CATEGORIES}")
    if isinstance(max_response_chars, bool) or not isinstance(max_response_chars, int) or max_response_chars < 0:
        raise DataError(f"metadata 'max_response_chars' must be an integer >= 0, got {max_response_chars!r}")
    docs, seen = [], {}
    for path in _data_files(data_files):
        for doc in load_weval_jsonl(path):
            if doc.id in seen:
                raise DataError(f"duplicate document id {doc.id!r} in {path} and {seen[doc.id]}")
            seen[doc.id] = path
            docs.append(doc)
    rows = [
        {**document_to_row(d), "max_response_chars": max_response_chars}
        for d in docs
        if category is None or d.category == category
    ]
    if not rows:
        present = sorted({d.category for d in docs})
        if os.environ.get(SKIP_ABSENT_ENV) == "1" and docs:
            # lm-eval 0.4.13 needs one document to construct a task (it tests doc_to_text on
            # it); this stand-in is marked so that `weval` drops the task before any request.
            stand_in = {**document_to_row(docs[0]), "max_response_chars": max_response_chars,
                        ABSENT_COLUMN: category}
            return datasets.DatasetDict({"test": datasets.Dataset.from_list([stand_in])})
        raise DataError(
            f"no documents of category {category!r} in {', '.join(_data_files(data_files))}; "
            f"categories present: {present}. Run it with `weval` (which skips absent categories), "
            f"or select only those tasks, e.g. --tasks " + ",".join(f"{family}-{c}" for c in present)
        )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def candidate_responses(row: dict) -> list[str]:
    return [c.response for c in document_from_row(row).candidates]


def _metrics(row: dict, scores: Sequence[float]) -> dict[str, Any]:
    doc = document_from_row(row)
    if len(scores) != len(doc.candidates):
        raise RuntimeError(f"document {doc.id!r}: {len(scores)} scores for {len(doc.candidates)} candidates")
    if any(math.isnan(s) for s in scores):
        raise RuntimeError(f"document {doc.id!r}: the scorer returned NaN for a candidate")
    gold = [c.gold_rank for c in doc.candidates]
    out: dict[str, Any] = {k: 100.0 * v for k, v in document_metrics(gold, scores).items()}
    types = {r.id: r.type for r in doc.requirements}
    pairs = requirement_type_pairs(gold, scores, [c.dropped for c in doc.candidates], types)
    for t in REQUIREMENT_TYPES:
        out[f"acc_{t}"] = pairs.get(t, (0, 0))
    return out


def process_ranking(row: dict, results: list) -> dict[str, Any]:
    """weval-*: one (score, is_greedy) per candidate, in candidate order."""
    return _metrics(row, [float(r[0]) for r in results])


def judge_gold(row: dict) -> int:
    # An int from doc_to_text selects lm-eval's "many contexts" mode: one context per choice.
    return 0


# ---- the judge families (wevaljudge-*, wevaladvjudge-*) ---------------------------------
# One judge definition with the `judge` backend (openrlhf_reward.scorers.judge): the same
# verdict prompt (verdict_messages) and the same score, the normalised verdict
# P(Yes) / (P(Yes) + P(No)) per (candidate, requirement); a candidate's score is the mean
# over its requirements, as the backend's reward is.


def _verdict_items(row: dict, responses: Sequence[str]) -> list[tuple[str, str, str]]:
    """(instruction, response, requirement) per judge prompt, response-major; responses cut
    to the row's max_response_chars like the backend's."""
    doc = document_from_row(row)
    budget = row.get("max_response_chars", DEFAULT_MAX_RESPONSE_CHARS)
    return [(doc.prompt, truncate_middle(resp, budget)[0], r.text) for resp in responses for r in doc.requirements]


def judge_items(row: dict) -> list[tuple[str, str, str]]:
    """wevaljudge-*: one verdict per (candidate, requirement)."""
    return _verdict_items(row, [c.response for c in document_from_row(row).candidates])


def adv_judge_items(row: dict) -> list[tuple[str, str, str]]:
    """wevaladvjudge-*: one verdict per (candidate, requirement), real then degenerate."""
    from weval_tasks.attacks import build_attacks

    doc = document_from_row(row)
    return _verdict_items(row, [c.response for c in doc.candidates] + list(build_attacks(doc).values()))


def judge_contexts(row: dict) -> list[str]:
    """wevaljudge-* choices: the verdict prompts as plain text (no chat template)."""
    return [verdict_text(*item) for item in judge_items(row)]


def adv_judge_contexts(row: dict) -> list[str]:
    """wevaladvjudge-* choices: the verdict prompts as plain text (no chat template)."""
    return [verdict_text(*item) for item in adv_judge_items(row)]


class VerdictTask(ConfigurableTask):
    """A judge task: two log-likelihood requests per verdict prompt, the answers "Yes" and
    "No", so that the score can be normalised (lm-eval's multiple-choice "many contexts" mode
    asks for one continuation only).

    Without a chat template the contexts are lm-eval's (``doc_to_choice``, with any
    ``--system_instruction`` in front) and the continuations `` Yes`` / `` No``. With
    ``--apply_chat_template`` each context is the backend's conversation
    (:func:`verdict_messages`: its system message, then the user turn) rendered by the model's
    chat template with the generation prompt, and the continuations ``Yes`` / ``No``: the
    first answer token the backend reads from a chat endpoint.
    """

    ITEMS = {"wevaljudge": judge_items, "wevaladvjudge": adv_judge_items}

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        # lm-eval hands a `class:` task its whole YAML, the `class` key included, which its
        # TaskConfig does not take.
        super().__init__(config={k: v for k, v in (config or {}).items() if k != "class"}, **kwargs)

    def construct_requests(self, doc: dict, ctx: str | list[str], **kwargs: Any) -> list[Instance]:
        apply_chat_template = kwargs.pop("apply_chat_template", False)
        chat_template = kwargs.pop("chat_template", None)
        if apply_chat_template and chat_template is not None:
            items = self.ITEMS[self.config.dataset_kwargs["family"]](doc)
            contexts, delimiter = [chat_template(verdict_messages(*item)) for item in items], ""
        else:
            contexts, delimiter = list(ctx), self.config.target_delimiter
        args = [(c, delimiter + word) for c in contexts for word in VERDICT_WORDS]
        return [Instance(request_type="loglikelihood", doc=doc, arguments=a, idx=i, **kwargs)
                for i, a in enumerate(args)]


def process_judge(row: dict, results: list) -> dict[str, Any]:
    """wevaljudge-*: candidate score = mean over requirements of P(Yes) / (P(Yes) + P(No))."""
    doc = document_from_row(row)
    return _metrics(row, mean_per_candidate(verdict_scores(results), len(doc.candidates)))


def micro_accuracy(items: list[tuple[int, int]]) -> float:
    """Pairwise accuracy pooled over all attributed adjacent pairs (NaN when there are none)."""
    correct = sum(c for c, _ in items)
    total = sum(t for _, t in items)
    return 100.0 * correct / total if total else float("nan")


# ---- hackability probe (wevaladv-*, wevaladvjudge-*) ------------------------------------
# Choices = the real candidates (document order) followed by the degenerate candidates of
# weval_tasks.attacks (ATTACKS order). Ranking metrics use the real candidates only.


def adv_responses(row: dict) -> list[str]:
    """wevaladv-*: the real candidates' responses, then one degenerate answer per attack.

    The empty answer travels as ``attacks.EMPTY_CHOICE`` (lm-eval refuses empty choices).
    """
    from weval_tasks.attacks import build_attacks, to_choice

    doc = document_from_row(row)
    return [c.response for c in doc.candidates] + [to_choice(a) for a in build_attacks(doc).values()]


def _adv_metrics(row: dict, scores: Sequence[float]) -> dict[str, Any]:
    from weval_tasks.attacks import ATTACKS, RATE_GROUPS
    from weval_tasks.metrics import hack_metrics

    doc = document_from_row(row)
    n = len(doc.candidates)
    if len(scores) != n + len(ATTACKS):
        raise RuntimeError(
            f"document {doc.id!r}: {len(scores)} scores for {n} candidates + {len(ATTACKS)} attacks"
        )
    if any(math.isnan(s) for s in scores[n:]):
        raise RuntimeError(f"document {doc.id!r}: the scorer returned NaN for a degenerate candidate")
    out = _metrics(row, scores[:n])
    hacks = hack_metrics([c.gold_rank for c in doc.candidates], scores[:n], dict(zip(ATTACKS, scores[n:])),
                         RATE_GROUPS)
    # Hack rates in [0, 100] like the other rates; margins stay in the scorer's units.
    out.update({k: (100.0 * v if k.startswith("hack_") else v) for k, v in hacks.items()})
    return out


def process_adv(row: dict, results: list) -> dict[str, Any]:
    """wevaladv-*: one (score, is_greedy) per real then degenerate candidate."""
    return _adv_metrics(row, [float(r[0]) for r in results])


def process_adv_judge(row: dict, results: list) -> dict[str, Any]:
    """wevaladvjudge-*: candidate score = mean over requirements of P(Yes) / (P(Yes) + P(No))."""
    from weval_tasks.attacks import ATTACKS

    doc = document_from_row(row)
    return _adv_metrics(row, mean_per_candidate(verdict_scores(results), len(doc.candidates) + len(ATTACKS)))
