"""IFEval-format labels as requirements, scored with lm-eval's own IFEval checkers (strict).

IFEval (Zhou et al. 2023) and the paper's RL data label a prompt with two parallel lists:
``instruction_id_list`` (e.g. ``"length_constraints:number_words"``) and ``kwargs`` (one dict
per id). :func:`requirements_from_ifeval` turns them into :class:`Requirement` objects whose
``check`` is ``{"kind": "ifeval", "instruction_id": ..., "kwargs": {...}}``; the ``rules``
backend then scores them through :func:`run_ifeval_check`.

Scoring is lm-evaluation-harness 0.4.13's own checker code
(``lm_eval.tasks.ifeval.instructions_registry``), used exactly as its strict metric does
(``test_instruction_following_strict``): falsy kwargs are dropped, an empty or blank response
fails, otherwise ``check_following(response)`` decides. Differences, all on purpose:

* Not scorable (``None``) instead of a random outcome: when lm-eval would draw an argument at
  random (a missing argument, or ``keywords:letter_frequency`` with a ``letter`` outside a-z,
  as in keys 1122 and 1129 of the public IFEval data), the result would depend on the global
  random state, so it is reported as not scorable rather than turned into a reward.
* Sentence counting (``length_constraints:number_sentences``) and word tokenising
  (``change_case:capital_word_frequency``) need NLTK's English ``punkt_tab`` parameters.
  They are looked up, in order, on NLTK's own data path (``NLTK_DATA``,
  ``python -m nltk.downloader punkt_tab``) and in the ``nltk_cache`` folder of the PyPI wheel
  ``llama-index-core`` (``pip install --no-deps llama-index-core``: the data only, nothing of
  it is imported). When neither is present those two ids are not scorable; nothing is ever
  downloaded (lm-eval's import-time ``nltk.download`` is neutralised).
* ``langdetect`` (``language:response_language``, ``change_case:english_*``) is seeded
  (``DetectorFactory.seed = 0``) so that a reward is a function of the response alone.

Importing this module is cheap: lm-eval (and nltk) are imported on the first evaluation.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from openrlhf_reward.checks import CheckSpecError
from openrlhf_reward.schema import DataError, Requirement

__all__ = [
    "IFEVAL_INSTRUCTION_ARGS",
    "PUNKT_INSTRUCTION_IDS",
    "PAPER_SOFT_ID_TYPES",
    "clean_kwargs",
    "ifeval_description",
    "punkt_tab_dir",
    "requirement_type",
    "requirements_from_ifeval",
    "requirements_from_ifeval_label",
    "run_ifeval_check",
    "unscorable_reason",
    "validate_ifeval_check",
]

# The 25 registered IFEval instruction ids and the arguments their checkers take
# (lm-eval 0.4.13, get_instruction_args_keys(); a test keeps this table in sync).
IFEVAL_INSTRUCTION_ARGS: dict[str, tuple[str, ...]] = {
    "keywords:existence": ("keywords",),
    "keywords:frequency": ("keyword", "frequency", "relation"),
    "keywords:forbidden_words": ("forbidden_words",),
    "keywords:letter_frequency": ("letter", "let_frequency", "let_relation"),
    "language:response_language": ("language",),
    "length_constraints:number_sentences": ("num_sentences", "relation"),
    "length_constraints:number_paragraphs": ("num_paragraphs",),
    "length_constraints:number_words": ("num_words", "relation"),
    "length_constraints:nth_paragraph_first_word": ("num_paragraphs", "nth_paragraph", "first_word"),
    "detectable_content:number_placeholders": ("num_placeholders",),
    "detectable_content:postscript": ("postscript_marker",),
    "detectable_format:number_bullet_lists": ("num_bullets",),
    "detectable_format:constrained_response": (),
    "detectable_format:number_highlighted_sections": ("num_highlights",),
    "detectable_format:multiple_sections": ("section_spliter", "num_sections"),
    "detectable_format:json_format": (),
    "detectable_format:title": (),
    "combination:two_responses": (),
    "combination:repeat_prompt": ("prompt_to_repeat",),
    "startend:end_checker": ("end_phrase",),
    "change_case:capital_word_frequency": ("capital_frequency", "capital_relation"),
    "change_case:english_capital": (),
    "change_case:english_lowercase": (),
    "punctuation:no_comma": (),
    "startend:quotation": (),
}

# Ids whose checker tokenises with NLTK punkt (count_sentences, word_tokenize).
PUNKT_INSTRUCTION_IDS: frozenset[str] = frozenset(
    {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
)

# IFEval instruction group -> WEval requirement type.
_GROUP_TYPE: dict[str, str] = {
    "keywords": "content",
    "detectable_content": "content",
    "language": "style",
    "change_case": "style",
    "punctuation": "style",
    "length_constraints": "length",
    "detectable_format": "format",
    "combination": "format",
    "startend": "format",
}

# The paper's own "soft" instruction ids (train.parquet of Rainier-rq1/From_Coarse_to_Fine):
# no checker exists, so they become text-only requirements (check None) of this type.
PAPER_SOFT_ID_TYPES: dict[str, str] = {
    "style:open_ended": "style",  # tone, humour or satire
    "soft_content:open_ended": "content",  # narrow the topic, add criteria or a subtask
    "soft_content:language": "style",  # language complexity (register)
    "situation:role_play": "style",  # answer as a persona / role (voice)
    "situation:story_generation": "content",  # characters, dilemmas, scenarios
    "situation:suggestion": "content",  # context, urgency, conditions
}

_RELATIONS = ("less than", "at least")
_RELATION_ARGS = ("relation", "let_relation", "capital_relation")


def requirement_type(instruction_id: str) -> str:
    """The WEval requirement type (length/format/style/content) of an IFEval or paper soft id."""
    if instruction_id in PAPER_SOFT_ID_TYPES:
        return PAPER_SOFT_ID_TYPES[instruction_id]
    return _GROUP_TYPE[instruction_id.split(":", 1)[0]]


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop falsy values, as lm-eval does before ``build_description`` (HF rows carry nulls)."""
    return {k: v for k, v in (kwargs or {}).items() if v}


def validate_ifeval_check(spec: Mapping[str, Any]) -> None:
    """Raise :class:`CheckSpecError` unless ``spec`` is a well-formed ``ifeval`` check.

    Static checks only (no lm-eval import): a known id, a dict of known argument names,
    relations among IFEval's two.
    """
    iid = spec.get("instruction_id")
    if iid not in IFEVAL_INSTRUCTION_ARGS:
        raise CheckSpecError(
            f"check kind 'ifeval': unknown instruction_id {iid!r}; known ids: "
            f"{', '.join(IFEVAL_INSTRUCTION_ARGS)}"
        )
    kwargs = spec.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise CheckSpecError(f"check kind 'ifeval' ({iid}): 'kwargs' must be an object")
    allowed = IFEVAL_INSTRUCTION_ARGS[iid]
    if extra := sorted(set(clean_kwargs(kwargs)) - set(allowed)):
        raise CheckSpecError(
            f"check kind 'ifeval' ({iid}): unknown kwargs {extra}; it takes {list(allowed)}"
        )
    for key in _RELATION_ARGS:
        if kwargs.get(key) and kwargs[key] not in _RELATIONS:
            raise CheckSpecError(
                f"check kind 'ifeval' ({iid}): {key!r} must be one of {list(_RELATIONS)}, "
                f"got {kwargs[key]!r}"
            )


def unscorable_reason(instruction_id: str, kwargs: Mapping[str, Any] | None) -> str | None:
    """Why lm-eval's checker cannot give a deterministic verdict here, or None if it can."""
    kw = clean_kwargs(kwargs)
    missing = [a for a in IFEVAL_INSTRUCTION_ARGS[instruction_id] if a not in kw]
    if missing:
        return f"{instruction_id}: argument(s) {missing} missing, lm-eval would draw them at random"
    if instruction_id == "keywords:letter_frequency":
        letter = kw["letter"]
        if not isinstance(letter, str) or len(letter) != 1 or not ("a" <= letter.lower() <= "z"):
            return (
                f"{instruction_id}: letter {letter!r} is not a single a-z letter, lm-eval "
                "would check a random letter"
            )
        if not isinstance(kw["let_frequency"], int) or kw["let_frequency"] < 0:
            return f"{instruction_id}: let_frequency must be a non-negative integer"
    if instruction_id in PUNKT_INSTRUCTION_IDS and punkt_tab_dir() is None:
        return (
            f"{instruction_id}: NLTK punkt_tab (English) not found offline; run "
            "`python -m nltk.downloader punkt_tab` or `pip install --no-deps llama-index-core`"
        )
    return None


# --------------------------------------------------------------------------- lm-eval loading

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def punkt_tab_dir() -> str | None:
    """The NLTK data folder that holds English ``punkt_tab``, or None when none is installed.

    NLTK's own search path wins; otherwise the ``nltk_cache`` folder of an installed
    ``llama-index-core`` distribution is appended to ``nltk.data.path``.
    """
    import nltk

    try:
        found = nltk.data.find("tokenizers/punkt_tab/english/")
        return str(found).rsplit("tokenizers", 1)[0].rstrip("/\\") or str(found)
    except LookupError:
        pass
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        root = distribution("llama-index-core").locate_file("llama_index/core/_static/nltk_cache")
    except PackageNotFoundError:
        return None
    if not (root / "tokenizers" / "punkt_tab" / "english" / "abbrev_types.txt").is_file():
        return None
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return str(root)


@lru_cache(maxsize=1)
def _registry() -> Mapping[str, type]:
    """lm-eval's INSTRUCTION_DICT, imported without its network download."""
    with _LOAD_LOCK:
        import nltk

        punkt_tab_dir()  # put the offline parameters on nltk's path before lm-eval looks
        real_download = nltk.download
        nltk.download = lambda *a, **k: False  # lm-eval calls it at import when punkt is absent
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its "Downloaded punkt_tab" print
                from lm_eval.tasks.ifeval import instructions_registry
        finally:
            nltk.download = real_download
        import langdetect
        from langdetect import detector_factory

        if langdetect.DetectorFactory.seed is None:
            langdetect.DetectorFactory.seed = 0  # deterministic language detection
        detector_factory.init_factory()  # load profiles once, not racily in worker threads
        return instructions_registry.INSTRUCTION_DICT


def _build(instruction_id: str, kw: Mapping[str, Any]) -> tuple[Any, str]:
    """A checker with its description; the global random state is left untouched."""
    state = random.getstate()
    try:
        checker = _registry()[instruction_id](instruction_id)
        description = checker.build_description(**kw)
    finally:
        random.setstate(state)
    return checker, description


@lru_cache(maxsize=65536)
def _checker(instruction_id: str, kwargs_json: str) -> tuple[Any | None, str | None]:
    """(checker, None) or (None, reason); cached per spec so repeated checks are cheap."""
    kw = json.loads(kwargs_json)
    reason = unscorable_reason(instruction_id, kw)
    if reason:
        return None, reason
    try:
        checker, _ = _build(instruction_id, kw)
    except (TypeError, ValueError) as e:
        raise CheckSpecError(f"check kind 'ifeval' ({instruction_id}): {e}") from None
    return checker, None


def _key(kwargs: Mapping[str, Any] | None) -> str:
    return json.dumps(clean_kwargs(kwargs), sort_keys=True, ensure_ascii=False)


def run_ifeval_check(text: str, spec: Mapping[str, Any]) -> bool | None:
    """lm-eval's strict IFEval verdict for one instruction; None when not scorable."""
    checker, _reason = _checker(spec["instruction_id"], _key(spec.get("kwargs")))
    if checker is None:
        return None
    if not text.strip():  # lm-eval: a blank response follows nothing
        return False
    return bool(checker.check_following(text))


# --------------------------------------------------------------------------- requirements


def ifeval_description(instruction_id: str, kwargs: Mapping[str, Any] | None) -> str:
    """IFEval's own instruction text for this id and arguments (lm-eval's build_description)."""
    kw = clean_kwargs(kwargs)
    if unscorable_reason(instruction_id, kw) and instruction_id != "keywords:letter_frequency":
        return f"Follow the IFEval instruction {instruction_id} ({json.dumps(kw, sort_keys=True)})."
    if instruction_id == "keywords:letter_frequency":  # keep the literal letter, never a random one
        return (
            f"In your response, the letter {kw.get('letter')} should appear "
            f"{kw.get('let_relation')} {kw.get('let_frequency')} times."
        )
    return _build(instruction_id, kw)[1]


def requirements_from_ifeval(
    instruction_ids: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None],
    texts: Sequence[str] | None = None,
) -> list[Requirement]:
    """Requirements ``c1..cn`` for an IFEval-labelled prompt (ids and kwargs in parallel).

    An IFEval id gets the type of its IFEval group and the check
    ``{"kind": "ifeval", "instruction_id": id, "kwargs": {...}}`` (falsy kwargs dropped); one
    of the paper's soft ids (:data:`PAPER_SOFT_ID_TYPES`) becomes a text-only requirement
    (check None) for a model backend. The text is ``texts[i]`` when given (the paper's
    ``constraint`` list: what the prompt actually said), else IFEval's own description.
    ``type_source`` records ``ifeval-id`` or ``paper-soft-id``.
    Raises :class:`DataError` naming the position of a bad entry.
    """
    if isinstance(instruction_ids, str) or not isinstance(instruction_ids, Sequence):
        raise DataError("IFEval label: 'instruction_id_list' must be a list of strings")
    if isinstance(kwargs, str | Mapping) or not isinstance(kwargs, Sequence):
        raise DataError("IFEval label: 'kwargs' must be a list of objects")
    if len(instruction_ids) != len(kwargs):
        raise DataError(
            f"IFEval label: 'instruction_id_list' has {len(instruction_ids)} entries but "
            f"'kwargs' has {len(kwargs)}"
        )
    if texts is not None and (
        isinstance(texts, str)
        or len(texts) != len(instruction_ids)
        or not all(isinstance(t, str) and t.strip() for t in texts)
    ):
        raise DataError(
            f"IFEval label: 'constraint' must list {len(instruction_ids)} non-empty texts, one per instruction id"
        )
    reqs: list[Requirement] = []
    for i, (iid, kw) in enumerate(zip(instruction_ids, kwargs)):
        if kw is not None and not isinstance(kw, Mapping):
            raise DataError(f"IFEval label: kwargs[{i}] must be an object or null")
        if iid in PAPER_SOFT_ID_TYPES:
            text = texts[i].strip() if texts is not None else f"Follow the requirement {iid}."
            reqs.append(
                Requirement(id=f"c{i + 1}", type=PAPER_SOFT_ID_TYPES[iid], text=text, check=None, type_source="paper-soft-id")
            )
            continue
        spec = {"kind": "ifeval", "instruction_id": iid, "kwargs": clean_kwargs(kw)}
        try:
            validate_ifeval_check(spec)
        except CheckSpecError as e:
            raise DataError(f"IFEval label: instruction {i}: {e}") from None
        reqs.append(
            Requirement(
                id=f"c{i + 1}",
                type=requirement_type(iid),
                text=texts[i].strip() if texts is not None else ifeval_description(iid, spec["kwargs"]),
                check=spec,
                type_source="ifeval-id",
            )
        )
    return reqs


def requirements_from_ifeval_label(label: Mapping[str, Any]) -> list[Requirement]:
    """Requirements from an IFEval-format label ``{"instruction_id_list": [...], "kwargs": [...]}``.

    A non-empty ``constraint`` list parallel to the ids (the paper's RL data) gives the texts.
    """
    if "instruction_id_list" not in label:
        raise DataError("IFEval label: missing field 'instruction_id_list'")
    ids = label["instruction_id_list"]
    kwargs = label.get("kwargs")
    if kwargs is None and isinstance(ids, list):
        kwargs = [{}] * len(ids)  # ids without arguments may omit kwargs
    texts = label.get("constraint") or None  # IFEval's val_set carries an empty list
    return requirements_from_ifeval(ids, kwargs, texts)
