"""OpenRLHF 0.11.2 remote-reward protocol: requests -> ScoreRequests, results -> response.

One module, used by the reward server and by the ``reward_func`` file, so both read a
trainer request the same way and answer with the same numbers.

OpenRLHF sends ``{"query": [str], "prompts": [str], "labels": [any]}`` where ``query`` is
prompt + response decoded with special tokens kept (template markers, possibly a trailing
EOS) and ``prompts`` is the templated prompt. It reads ``rewards``, ``scores`` and
``extra_logs`` (a dict of numbers, aggregated numerically, so every answer carries the
same keys).

Pure Python, no heavy imports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf_reward.schema import (
    REQUIREMENT_TYPES,
    DataError,
    Requirement,
    parse_requirements,
    requirements_from_ifeval_label,
)
from openrlhf_reward.scorers.base import ScoreRequest, ScoreResult
from openrlhf_reward.text import CheckSpecError, strip_think

# End-of-sequence / end-of-turn markers a decoded generation may end with (vLLM keeps the
# EOS token in the decoded text when special tokens are not skipped).
DEFAULT_END_MARKERS: tuple[str, ...] = (
    "</s>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<eos>",
    "<|return|>",
    "<|end▁of▁sentence|>",
    "<｜end▁of▁sentence｜>",
)

# The header a chat template puts right before the assistant's text (fallback when the
# decoded query does not start with the prompt verbatim).
GENERATION_MARKERS: tuple[str, ...] = (
    "<|im_start|>assistant\n",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<start_of_turn>model\n",
    "<|assistant|>\n",
    "<｜Assistant｜>",
    "[/INST]",
)

# Last user turn of common chat templates: ChatML/Qwen, Llama-3, Mistral/Llama-2 [INST],
# Gemma, Phi-3, DeepSeek, as (opening marker, closing marker). Found with str.find, not a
# lazy regex: r"\[INST\](.*?)\[/INST\]" is quadratic on a prompt of many "[INST]".
_USER_TURNS: tuple[tuple[str, str], ...] = (
    ("<|im_start|>user\n", "<|im_end|>"),
    ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    ("[INST]", "[/INST]"),
    ("<start_of_turn>user\n", "<end_of_turn>"),
    ("<|user|>", "<|end|>"),
    ("<｜User｜>", "<｜Assistant｜>"),
)
_LLAMA2_SYS = ("<<SYS>>", "<</SYS>>")


class RequestError(ValueError):
    """A request the server must refuse; ``status`` is the HTTP code, ``field`` what is wrong."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclass
class ProtocolOptions:
    """How a trainer request is turned into score requests."""

    end_markers: Sequence[str] = field(
        default=(), metadata={"help": "extra end-of-turn markers stripped from the end of responses"}
    )
    strip_think: bool = field(
        default=True,
        metadata={"help": "drop every <think>...</think> block (nested or unfinished ones too) from responses before scoring"},
    )
    require_requirements: bool = field(
        default=True,
        metadata={"help": "refuse (422) labels that carry no requirements"},
    )
    max_items_per_request: int = field(
        default=4096, metadata={"help": "most samples one POST may carry (413 above)"}
    )

    def all_end_markers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*DEFAULT_END_MARKERS, *self.end_markers)))


@dataclass
class ParsedRequest:
    items: list[ScoreRequest]
    # Not part of OpenRLHF's protocol: a client (our `remote` scorer) may ask for
    # per-requirement detail; OpenRLHF never sends it and ignores extra response keys.
    return_details: bool = False
    # How each response was recovered from its query ("prefix", "tail", "marker", "common").
    recovery: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- text recovery


def strip_end_markers(text: str, markers: Sequence[str] = DEFAULT_END_MARKERS) -> str:
    """Remove trailing EOS / end-of-turn markers (and whitespace between them).

    Linear in the text: it moves an end index back instead of copying the text per marker.
    """
    end = len(text)
    stripped = False
    while True:
        while end and text[end - 1].isspace():
            end -= 1
        for m in markers:
            if m and text.endswith(m, 0, end):
                end -= len(m)
                stripped = True
                break
        else:
            return text[:end] if stripped else text


def recover_response(query: str, prompt: str) -> tuple[str, str]:
    """The generated text inside ``query`` (= prompt + response), and how it was found.

    The decoded query normally starts with the prompt verbatim. It may not when OpenRLHF
    left-truncated a long prompt or the tokenizer does not round-trip the text exactly;
    then the prompt's tail, then the template's assistant header, then the common prefix
    locate the response.
    """
    if query.startswith(prompt):
        return query[len(prompt) :], "prefix"
    tail = prompt[-200:]
    if tail.strip():
        idx = query.find(tail)
        if idx >= 0:
            return query[idx + len(tail) :], "tail"
    p = prompt.rstrip()
    for marker in GENERATION_MARKERS:
        core = marker.rstrip()
        if not p.endswith(core):
            continue
        # the n-th occurrence in the query, n = occurrences in the prompt
        pos = -1
        for _ in range(p.count(core)):
            pos = query.find(core, pos + 1)
            if pos < 0:
                break
        if pos >= 0:
            rest = query[pos + len(core) :]
            ws = marker[len(core) :]
            return (rest[len(ws) :] if ws and rest.startswith(ws) else rest), "marker"
    n = 0
    for a, b in zip(query, prompt):
        if a != b:
            break
        n += 1
    return query[n:], "common"


def _spans(text: str, open_: str, close: str) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (start, inner start, inner end, end) of ``open_ ... close`` pairs,
    leftmost first with the nearest ``close`` (what ``re.findall(open(.*?)close, re.S)``
    finds), in linear time."""
    spans = []
    pos = 0
    while (i := text.find(open_, pos)) >= 0:
        j = text.find(close, i + len(open_))
        if j < 0:  # no later opening can be closed either
            break
        spans.append((i, i + len(open_), j, j + len(close)))
        pos = j + len(close)
    return spans


def last_user_turn(prompt: str) -> str:
    """The last user message of a templated prompt, or the prompt itself if no template matches."""
    for open_, close in _USER_TURNS:
        spans = _spans(prompt, open_, close)
        if spans:
            _, a, b, _ = spans[-1]
            text = prompt[a:b]
            if open_ == "[INST]":  # drop Llama-2's <<SYS>>...<</SYS>> blocks
                text = "".join(
                    text[s:e] for s, e in _gaps(text, _spans(text, *_LLAMA2_SYS))
                )
            return text.strip()
    return prompt.strip()


def _gaps(text: str, spans: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``text`` outside ``spans``."""
    out, pos = [], 0
    for start, _, _, end in spans:
        out.append((pos, start))
        pos = end
    out.append((pos, len(text)))
    return out


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelInfo:
    requirements: tuple[Requirement, ...] | None  # None: the label carries none
    instruction: str | None = None
    query: str | None = None


def parse_label(label: Any, where: str) -> LabelInfo:
    """Read one ``labels[i]``: a GRPO row label (docs/data.md), an IFEval label, or nothing.

    Accepted: ``{"requirements": [...], "instruction"?: str, "query"?: str}``;
    ``{"instruction_id_list": [...], "kwargs": [...]}`` (IFEval); a bare list of
    requirements; the same as a JSON string (datasets sometimes store labels that way);
    ``None`` / ``""`` / ``{}`` / ``[]`` / ``{"requirements": []}`` (or null) for no
    requirements.
    """
    if label is None or label == "" or label == {} or label == []:
        return LabelInfo(None)
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except RecursionError:
            raise RequestError(f"{where} is nested too deeply", field=where) from None
        except ValueError as e:  # JSONDecodeError, or an integer past Python's digit limit
            raise RequestError(
                f"{where} is a string that is not usable JSON ({str(e)[:200]}); expected an object "
                "with 'requirements'",
                field=where,
            ) from None
        if not isinstance(label, (Mapping, list)):
            raise RequestError(f"{where} must be an object or a list of requirements", field=where)
    if isinstance(label, list):
        label = {"requirements": label}
    if not isinstance(label, Mapping):
        raise RequestError(
            f"{where} must be an object with 'requirements', got {type(label).__name__}", field=where
        )
    for key in ("instruction", "query"):
        if label.get(key) is not None and not isinstance(label[key], str):
            raise RequestError(f"{where}.{key} must be a string", field=f"{where}.{key}")
    instruction = label.get("instruction") or None
    query = label.get("query") or None
    # An empty or null list says "no requirements", exactly like {} (one rule for all).
    if label.get("requirements") not in (None, []):
        try:
            reqs = parse_requirements(label["requirements"], f"{where}.requirements")
        except (DataError, CheckSpecError, ValueError, TypeError, RecursionError) as e:
            # DataError/CheckSpecError name the problem; a TypeError/ValueError from a check
            # validator given a value of the wrong shape (a list as 'kind') is still bad input.
            msg = str(e) if isinstance(e, (DataError, CheckSpecError)) else f"{where}.requirements: invalid ({type(e).__name__}: {str(e)[:200]})"
            raise RequestError(msg, field=f"{where}.requirements") from None
        return LabelInfo(tuple(reqs), instruction, query)
    if label.get("instruction_id_list") not in (None, []):
        try:
            reqs = requirements_from_ifeval_label(label)
        except DataError as e:  # e.field: the label field at fault
            raise RequestError(f"{where}: {str(e)[:500]}", field=f"{where}.{e.field}" if e.field else where) from None
        return LabelInfo(tuple(reqs), instruction, query)
    return LabelInfo(None, instruction, query)


# --------------------------------------------------------------------------- requests


def _string_list(body: Mapping[str, Any], key: str) -> list[str]:
    if key not in body:
        raise RequestError(f"missing field {key!r} (a list of strings)", field=key)
    value = body[key]
    if not isinstance(value, list):
        raise RequestError(
            f"field {key!r} must be a list of strings, got {type(value).__name__}", field=key
        )
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise RequestError(
                f"{key}[{i}] must be a string, got {type(v).__name__}", field=f"{key}[{i}]"
            )
    return value


def parse_reward_request(body: Any, options: ProtocolOptions | None = None) -> ParsedRequest:
    """Validate an OpenRLHF request body and build one ScoreRequest per sample."""
    options = options or ProtocolOptions()
    if not isinstance(body, Mapping):
        raise RequestError(
            f"the request body must be a JSON object with 'query', 'prompts' and 'labels', "
            f"got {type(body).__name__}",
            field="body",
        )
    queries = _string_list(body, "query")
    prompts = _string_list(body, "prompts")
    if len(prompts) != len(queries):
        raise RequestError(
            f"'prompts' has {len(prompts)} entries but 'query' has {len(queries)}", field="prompts"
        )
    labels = body.get("labels")
    if labels is None:
        labels = [None] * len(queries)
    elif not isinstance(labels, list):
        raise RequestError(f"field 'labels' must be a list, got {type(labels).__name__}", field="labels")
    elif len(labels) != len(queries):
        raise RequestError(
            f"'labels' has {len(labels)} entries but 'query' has {len(queries)}", field="labels"
        )
    if len(queries) > options.max_items_per_request:
        raise RequestError(
            f"'query' has {len(queries)} entries; this server accepts at most "
            f"{options.max_items_per_request} per request",
            field="query",
            status=413,
        )
    return_details = body.get("return_details", False)
    if not isinstance(return_details, bool):
        raise RequestError("field 'return_details' must be a boolean", field="return_details")

    markers = options.all_end_markers()
    items: list[ScoreRequest] = []
    recovery: list[str] = []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        try:
            info = parse_label(label, f"labels[{i}]")
        except RequestError:
            raise
        except (ValueError, TypeError, KeyError, RecursionError) as e:  # label content of the wrong shape
            raise RequestError(f"labels[{i}] is invalid: {type(e).__name__}: {str(e)[:300]}",
                               field=f"labels[{i}]") from None
        if info.requirements is None and options.require_requirements:
            raise RequestError(
                f"labels[{i}] carries no requirements: expected an object with 'requirements' "
                "(a list of {id, type, text, check}) or an IFEval label with "
                "'instruction_id_list' and 'kwargs'",
                field=f"labels[{i}].requirements",
            )
        response, how = recover_response(query, prompt)
        response = strip_end_markers(response, markers)
        if options.strip_think:
            response = strip_think(response)
        instruction = info.instruction or last_user_turn(prompt)
        items.append(
            ScoreRequest(
                prompt=instruction,
                response=response,
                requirements=info.requirements or (),
                query=info.query,
            )
        )
        recovery.append(how)
    return ParsedRequest(items=items, return_details=return_details, recovery=recovery)


# --------------------------------------------------------------------------- responses


def fallback_count(recovery: Sequence[str]) -> int:
    """How many responses were located by a fallback (the query did not start with the
    prompt): ``recovery`` is :attr:`ParsedRequest.recovery`. Read by ``extra_logs`` and
    ``/metrics``; a response's blankness is :attr:`ScoreRequest.blank <openrlhf_reward.scorers.base.ScoreRequest>`."""
    return sum(1 for how in recovery if how != "prefix")


def sample_flags(result: ScoreResult) -> dict[str, Any]:
    """Degenerate-reward signals of one scored sample: requirements the backend could not
    score (None in ``requirement_scores``) and judge answers that did not parse (the judge
    backend's ``info["n_parsed"]`` / ``info["n_unparsed"]`` / ``info["all_unparsed"]``).

    The server computes them once per request and passes the same list to
    :func:`build_response` (``extra_logs``) and to ``/metrics``."""
    scores = result.requirement_scores or {}
    info = result.info if isinstance(result.info, Mapping) else {}
    n_unparsed = info.get("n_unparsed")
    n_parsed = info.get("n_parsed")
    judged = isinstance(n_unparsed, int) and isinstance(n_parsed, int)
    return {
        "n_requirements": len(scores),
        "n_unscorable": sum(1 for v in scores.values() if v is None),
        "n_judge_answers": (n_parsed + n_unparsed) if judged else 0,
        "n_judge_unparsed": n_unparsed if judged else 0,
        "judge_all_unparsed": bool(info.get("all_unparsed", False)),
    }


#: Keys of ``extra_logs`` besides ``adherence_<type>`` / ``coverage_<type>`` (all in [0, 1]).
DEGENERATE_KEYS: tuple[str, ...] = (
    "blank_response", "unscorable_requirements", "judge_unparsed", "recovery_fallback",
)


def extra_logs(
    results: Sequence[ScoreResult],
    items: Sequence[ScoreRequest] | None = None,
    recovery: Sequence[str] | None = None,
    flags: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """Numeric per-requirement-type adherence and degenerate-reward rates for OpenRLHF's logs.

    Every answer carries the same keys (OpenRLHF stacks ``extra_logs`` across samples and
    fails on a key that some samples lack): ``adherence_<type>`` is the mean adherence over
    the batch entries that have requirements of that type (0.0 when none has),
    ``coverage_<type>`` the share of entries that have them. Averaged over a training step,
    ``mean(adherence_t) / mean(coverage_t)`` is the mean adherence of the samples that
    had type ``t`` (OpenRLHF sends one sample per request).

    Degenerate-reward rates, each a mean over the batch's samples: ``blank_response``
    (``ScoreRequest.blank``, :func:`~openrlhf_reward.text.is_blank`: nothing visible after
    stripping), ``unscorable_requirements`` (share of the sample's requirements the backend
    could not score), ``judge_unparsed`` (share of the judge's answers that did not parse),
    ``recovery_fallback`` (the query did not start with the prompt, so the response was
    located by a fallback). ``items``/``recovery`` come from :func:`parse_reward_request`;
    without them the first and last rates are 0. ``flags``: :func:`sample_flags` of each
    result when the caller already has them (else they are computed here).
    """
    if not results:
        return {}
    n = len(results)
    per_type = [r.type_adherence() for r in results]
    out: dict[str, float] = {}
    for t in REQUIREMENT_TYPES:
        vals = [a[t] for a in per_type if t in a]
        out[f"adherence_{t}"] = float(sum(vals) / len(vals)) if vals else 0.0
        out[f"coverage_{t}"] = len(vals) / n
    if flags is None:
        flags = [sample_flags(r) for r in results]
    out["blank_response"] = (sum(1 for it in items if it.blank) / n) if items else 0.0
    out["unscorable_requirements"] = sum(
        f["n_unscorable"] / f["n_requirements"] for f in flags if f["n_requirements"]) / n
    out["judge_unparsed"] = sum(
        f["n_judge_unparsed"] / f["n_judge_answers"] for f in flags if f["n_judge_answers"]) / n
    out["recovery_fallback"] = (fallback_count(recovery) / n) if recovery else 0.0
    return out


class BackendOutputError(RuntimeError):
    """The backend returned something that cannot be sent (wrong count, NaN reward)."""


def build_response(
    results: Sequence[ScoreResult],
    return_details: bool = False,
    items: Sequence[ScoreRequest] | None = None,
    recovery: Sequence[str] | None = None,
    flags: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON answer: ``rewards``, ``scores`` (lists, like OpenRLHF's ``serve_rm``), ``extra_logs``
    (see :func:`extra_logs` for ``items``, ``recovery`` and ``flags``)."""
    rewards: list[float] = []
    for i, r in enumerate(results):
        v = float(r.reward)
        if not math.isfinite(v):
            raise BackendOutputError(f"backend returned a non-finite reward ({v}) for sample {i}")
        rewards.append(v)
    out: dict[str, Any] = {"rewards": rewards, "scores": list(rewards), "extra_logs": extra_logs(results, items, recovery, flags)}
    if return_details:
        out["details"] = [
            {
                "requirement_scores": dict(r.requirement_scores),
                "requirement_types": dict(r.requirement_types),
                "info": _jsonable(r.info),
            }
            for r in results
        ]
    return out


def _jsonable(obj: Any) -> Any:
    """Keep what JSON can carry (info dicts may hold arbitrary backend objects)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return repr(obj)
