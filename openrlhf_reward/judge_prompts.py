"""The judge's prompts and answer parsers: one definition for everything that asks a model
for a judgement or reads one.

Used by the ``judge`` backend (:mod:`openrlhf_reward.scorers.judge`), the ``wevaljudge-*``
lm-eval tasks (the same verdict prompt and score), the CE-RM rollout agent
(:mod:`openrlhf_reward.cerm`) and ``build-cerm``. Plain strings, regular expressions and
arithmetic only: importing it loads no HTTP client or model library.

Verdict (``mode=verdict``): :func:`verdict_messages` / :func:`verdict_text`,
:func:`parse_verdict`, :func:`verdict_probability`, :func:`normalized_verdict`.
Criteria (``mode=criteria``): :data:`CRITERIA_PROMPT`, :data:`SCORE_PROMPT`,
:func:`parse_criteria`, :func:`parse_item_scores`.
CE-RM (``mode=cerm`` and its training): :data:`CERM_CRITERIA_TEMPLATE`,
:data:`CERM_EVAL_TEMPLATE`, :func:`parse_cerm_criteria`, :func:`parse_cerm_score`,
:func:`fill_template`, :func:`read_template`. Every mode: :func:`truncate_middle`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from openrlhf_reward.teachers.base import strip_reasoning

# --------------------------------------------------------------------------- prompts

#: System message for per-requirement verdicts.
VERDICT_SYSTEM_PROMPT = (
    "You are a strict evaluator of writing. You judge whether a response satisfies one "
    "specific requirement of an instruction. Answer with a single word: Yes or No."
)
#: User message for a verdict; fields: instruction, response, requirement.
VERDICT_PROMPT = (
    "Instruction:\n{instruction}\n\n"
    "Response:\n{response}\n\n"
    "Requirement:\n{requirement}\n\n"
    "Does the response satisfy the requirement? Answer Yes or No."
)
#: The single requirement judged when a sample carries none.
GENERIC_REQUIREMENT = "The response fully follows the instruction."
#: The two answers a verdict is read from (first answer token), in this order.
VERDICT_WORDS = ("Yes", "No")


def verdict_messages(instruction: str, response: str, requirement: str) -> list[dict[str, str]]:
    """The verdict conversation: the ONE judge prompt, sent as chat messages by the `judge`
    backend and rendered by the ``wevaljudge-*`` tasks (chat template or :func:`verdict_text`)."""
    user = VERDICT_PROMPT.format(instruction=instruction, response=response, requirement=requirement)
    return [{"role": "system", "content": VERDICT_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def verdict_text(instruction: str, response: str, requirement: str) -> str:
    """:func:`verdict_messages` as plain text for a model read without a chat template; the
    verdict follows as the continuation ``" Yes"`` / ``" No"``."""
    system, user = verdict_messages(instruction, response, requirement)
    return f"{system['content']}\n\n{user['content']}\nAnswer:"


def normalized_verdict(logp_yes: float, logp_no: float) -> float | None:
    """The verdict score P(Yes) / (P(Yes) + P(No)) from two log-probabilities, computed
    stably; None when neither answer has any probability (both -inf)."""
    if logp_yes == -math.inf and logp_no == -math.inf:
        return None
    d = logp_no - logp_yes  # P(Yes)/(P(Yes)+P(No)) = 1 / (1 + exp(d))
    return 1.0 / (1.0 + math.exp(d)) if d < 0 else math.exp(-d) / (1.0 + math.exp(-d))

#: System message for deriving criteria from a query.
CRITERIA_SYSTEM_PROMPT = (
    "You write evaluation criteria for responses to writing tasks. You see only the task, "
    "never a response."
)
#: User message for criteria; fields: query, max_criteria.
CRITERIA_PROMPT = (
    "Task:\n{query}\n\n"
    "List at most {max_criteria} concrete criteria that an excellent response to this task "
    "must meet (content, structure, style). Write one criterion per line as a numbered list "
    "(1. ..., 2. ...) and nothing else."
)
#: The single criterion used when the judge's criteria cannot be parsed and the sample has
#: no requirements either.
GENERIC_CRITERION = "Overall quality and adherence to the task."

#: System message for pointwise scoring.
SCORE_SYSTEM_PROMPT = (
    "You are a strict evaluator of writing. You rate a response against numbered evaluation "
    "items on a 1-10 scale (1 = not met at all, 10 = fully met)."
)
#: User message for pointwise scoring; fields: instruction, items, response, n_items.
SCORE_PROMPT = (
    "Instruction:\n{instruction}\n\n"
    "Evaluation items:\n{items}\n\n"
    "Response:\n{response}\n\n"
    "Rate the response on each of the {n_items} items. Reply with exactly one line per item "
    'in the form "<item number>: <score from 1 to 10>" and nothing else.'
)

#: CE-RM turn 1 (user message); ``{query}`` is replaced literally (other braces are kept).
CERM_CRITERIA_TEMPLATE = """You are an expert evaluator. Before seeing any response, work out how responses to the query below should be judged.

[Start of Query]
{query}
[End of Query]

First analyse what an ideal response to this query has to achieve. Then write a minimal, complete and non-overlapping set of evaluation criteria. Each criterion is a short term followed by a clear, unambiguous description of what it covers. Put the most important criterion first.

After your analysis, give the criteria as a numbered list between the tags [Start of Criteria] and [End of Criteria], exactly like this:
[Start of Criteria]
1. <term>: <description>
2. <term>: <description>
...
[End of Criteria]"""

#: CE-RM turn 2 (user message, after the judge's criteria answer); ``{response}`` is
#: replaced literally (``{query}`` too, if a replacement template uses it).
CERM_EVAL_TEMPLATE = r"""Now evaluate the following response to the query against your criteria.

[Start of Response]
{response}
[End of Response]

Go through your criteria in order. For each one, write a short analysis of how well the response meets it, then give a score from 0 to 5 (an integer or a half point such as 3.5) written as \boxed{score}. If something important is not covered by your criteria, you may add one extra criterion named "Other Point(s)" for bonuses or deductions, analysed and scored in the same way. Finally, give the response an overall score from 0 to 10 (an integer or a half point) written as \boxed{score}; this must be the last thing you write."""

#: A marker put where the middle of an over-long response was cut out.
TRUNCATION_MARKER = "\n\n[... {n} characters omitted ...]\n\n"
# About 4,000 tokens: a 2 MB answer is scored instead of exhausting a judge's memory.
DEFAULT_MAX_RESPONSE_CHARS = 16000

# --------------------------------------------------------------------------- parsing

# A leading Yes/No that stands alone: "Yes", "No.", "**Yes**, because", "Answer: No" - but
# not "No idea" or "Yes and no" (a word right after it makes the answer ambiguous).
_VERDICT = re.compile(
    r"^[\W_]*(?:(?:final\s+)?answer\s*[:\-]\s*[\W_]*)?(yes|no)[*\"'`]*[ \t]*(?:$|[.,;:!\n])",
    re.I,
)
_CRITERION_LINE = re.compile(r"^\s*(?:\d{1,2}\s*[.)]|[-*\u2022])\s+(\S.*?)\s*$")
_ITEM_LINE = re.compile(
    r"^\s*(?:item\s*)?(\d{1,3})\s*[:.)=\-]\s*\**\s*(\d{1,2}(?:\.\d+)?)\s*(?:/\s*10)?\**\s*(?:$|[\s,;.(-])",
    re.I,
)


_BOXED = re.compile(r"\\boxed\{\s*([^{}]*?)\s*\}")
_BOXED_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:\s*/\s*10)?$")
_CRITERIA_BLOCK = re.compile(r"\[Start of Criteria\](.*?)\[End of Criteria\]", re.S | re.I)


def _clean(text: str | None) -> str:
    # A judge's reasoning is dropped exactly as a teacher's is (one rule for helper-model output).
    return strip_reasoning(text or "")


def parse_verdict(text: str | None) -> bool | None:
    """Yes -> True, No -> False, anything else -> None. The verdict must lead the answer and
    be followed by punctuation, a line break or the end."""
    m = _VERDICT.match(_clean(text))
    return None if m is None else m.group(1).lower() == "yes"


def _field(obj: Any, name: str) -> Any:
    # log-probabilities arrive as the answer's JSON (dicts) or as client objects (attributes)
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def verdict_probability(logprobs: Any) -> float | None:
    """:func:`normalized_verdict` at the first non-blank answer token, if Yes or No is in its
    top-k. ``logprobs`` is a chat choice's ``logprobs`` (``{"content": [{"token", "logprob",
    "top_logprobs": [...]}]}``, as JSON or as client objects). Spellings of one answer (``Yes``,
    `` yes``, ``YES``) are summed: an API's top-k list holds them separately."""
    content = _field(logprobs, "content") or []
    for tok in content:
        if not re.sub(r"[\W_]", "", _field(tok, "token") or ""):
            continue  # skip leading whitespace / markup tokens
        p = {"yes": 0.0, "no": 0.0}
        for alt in _field(tok, "top_logprobs") or []:
            word = re.sub(r"[\W_]", "", _field(alt, "token") or "").lower()
            if word in p:
                p[word] += math.exp(_field(alt, "logprob"))
        return normalized_verdict(*(math.log(v) if v > 0 else -math.inf for v in (p["yes"], p["no"])))
    return None


def parse_criteria(text: str | None, max_criteria: int) -> list[str]:
    """The numbered (or bulleted) lines of the judge's answer, at most ``max_criteria``."""
    out = []
    for line in _clean(text).splitlines():
        m = _CRITERION_LINE.match(line)
        if m:
            out.append(m.group(1))
    return out[:max_criteria]


def parse_item_scores(text: str | None, n_items: int) -> list[float | None]:
    """1-10 score per item from lines ``"k: s"``; missing, repeated-and-conflicting or
    out-of-range items are None."""
    found: dict[int, float | None] = {}
    for line in _clean(text).splitlines():
        m = _ITEM_LINE.match(line)
        if not m:
            continue
        k, s = int(m.group(1)), float(m.group(2))
        if not 1 <= k <= n_items:
            continue
        val = s if 1.0 <= s <= 10.0 else None
        if k in found and found[k] != val:
            val = None  # the judge contradicted itself
        found[k] = val
    return [found.get(k) for k in range(1, n_items + 1)]


def parse_cerm_criteria(text: str | None) -> str | None:
    """The text between the last ``[Start of Criteria]`` / ``[End of Criteria]`` pair, or
    None when the tags are missing or enclose nothing."""
    blocks = [b.strip() for b in _CRITERIA_BLOCK.findall(_clean(text))]
    blocks = [b for b in blocks if b]
    return blocks[-1] if blocks else None


def parse_boxed_scores(text: str | None) -> list[float | None]:
    """Every ``\\boxed{...}`` of an answer, in order: its number, or None when it is not a
    number (``\\boxed{N/10}`` is read as N)."""
    out: list[float | None] = []
    for inner in _BOXED.findall(_clean(text)):
        m = _BOXED_NUMBER.match(inner.replace("**", "").strip())
        out.append(float(m.group(1)) if m else None)
    return out


def parse_cerm_score(text: str | None) -> float | None:
    """The CE-RM reward: the LAST boxed number of the evaluation, if it lies in [0, 10]."""
    return cerm_score(parse_boxed_scores(text))


def cerm_score(boxed: list[float | None]) -> float | None:
    """:func:`parse_cerm_score` of already parsed boxed numbers (:func:`parse_boxed_scores`)."""
    if not boxed or boxed[-1] is None:
        return None
    s = boxed[-1]
    return s if 0.0 <= s <= 10.0 and math.isfinite(s) else None


def fill_template(template: str, **fields: str) -> str:
    """``{name}`` -> value, literally: other braces (``\\boxed{}``) are left alone."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def truncate_middle(text: str, max_chars: int) -> tuple[str, int]:
    """``text`` cut to about ``max_chars`` characters (head and tail kept, a marker between)
    and the number of characters removed (0 when it fits)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text, 0
    head = max_chars - max_chars // 4  # the start carries most of the content; the end its ending
    tail = max_chars - head
    removed = len(text) - head - tail
    return text[:head] + TRUNCATION_MARKER.format(n=removed) + (text[-tail:] if tail else ""), removed


def read_template(path: str | None, default: str, placeholder: str, option: str) -> str:
    """The text of template file ``path`` (``default`` when no path is given). A ValueError
    names ``option`` (the caller's flag or option) when the file cannot be read or lacks
    ``{placeholder}``; callers add their own prefix."""
    if not path:
        return default
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ValueError(f"{option} {path!r} cannot be read: {e.strerror}") from None
    if "{" + placeholder + "}" not in text:
        raise ValueError(f"{option} {path!r} lacks the placeholder {{{placeholder}}}")
    return text
