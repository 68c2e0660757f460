"""IFEval-format labels as requirements, scored with lm-eval's own IFEval checkers (strict).

IFEval (Zhou et al. 2023) and the paper's RL data label a prompt with two parallel lists:
``instruction_id_list`` (e.g. ``"length_constraints:number_words"``) and ``kwargs`` (one dict
per id). :func:`openrlhf_reward.schema.requirements_from_ifeval_label` turns them into
requirements whose ``check`` is ``{"kind": "ifeval", "instruction_id": ..., "kwargs": {...}}``
(with the static tables and helpers of this module); the ``rules`` backend then scores them
through :func:`run_ifeval_check`.

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
* Arguments are literal text, never regular expressions: lm-eval builds regexes from
  ``keywords``, ``keyword``, ``forbidden_words``, ``section_spliter`` and
  ``postscript_marker``; here they are escaped (so ``"("`` is a parenthesis and ``"(a+)+$"``
  cannot backtrack), and such a search argument may have at most
  :data:`~openrlhf_reward.text.MAX_PHRASE_CHARS` characters (longer ones are rejected).
* Linear time: the checkers whose lm-eval code backtracks on some inputs (placeholders,
  bullet lists, titles, postscripts, sections, keywords) are re-implemented here with the
  same results (the parity test below compares all 541 GPT-4 responses); a JSON answer
  nested too deeply for Python's parser is not valid JSON (False, not an exception).
* Argument types are checked: integer arguments given as integral floats (``3.0``, as
  datasets store them) become ints; a non-integral number or a wrong type is a
  :class:`~openrlhf_reward.text.CheckSpecError` naming the argument.

Importing this module is cheap: lm-eval (and nltk) are imported by :func:`preload` or on the
first evaluation. See ``docs/checks.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from openrlhf_reward.text import (
    MAX_PHRASE_CHARS,
    CheckSpecError,
    contains_aligned,
    contains_phrase,
    has_visible,
    is_blank,
)

__all__ = [
    "MAX_NLTK_CHARS",
    "IFEVAL_INSTRUCTION_ARGS",
    "IFEVAL_LANGUAGES",
    "PUNKT_INSTRUCTION_IDS",
    "PAPER_SOFT_ID_TYPES",
    "clean_kwargs",
    "ifeval_description",
    "preload",
    "punkt_tab_dir",
    "requirement_type",
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

# Language codes lm-eval's response_language checker knows (LANGUAGE_CODES; a test keeps
# this in sync): any other code is a KeyError inside lm-eval, so it is refused up front.
IFEVAL_LANGUAGES: tuple[str, ...] = (
    "en", "es", "pt", "ar", "hi", "fr", "ru", "de", "ja", "it", "bn", "uk", "th", "ur", "ta",
    "te", "bg", "ko", "pl", "he", "fa", "vi", "ne", "sw", "kn", "mr", "gu", "pa", "ml", "fi",
)

# Argument types of the 25 checkers.
_INT_ARGS = frozenset({
    "num_sentences", "num_paragraphs", "num_words", "nth_paragraph", "num_placeholders",
    "num_bullets", "num_highlights", "num_sections", "frequency", "let_frequency",
    "capital_frequency",
})
_STR_LIST_ARGS = frozenset({"keywords", "forbidden_words"})
# Arguments searched for in the response (built into a regex by lm-eval): length-capped.
_SEARCH_ARGS = frozenset({"keywords", "keyword", "forbidden_words", "section_spliter",
                          "postscript_marker"})


def requirement_type(instruction_id: str) -> str:
    """The WEval requirement type (length/format/style/content) of an IFEval or paper soft id."""
    if instruction_id in PAPER_SOFT_ID_TYPES:
        return PAPER_SOFT_ID_TYPES[instruction_id]
    return _GROUP_TYPE[instruction_id.split(":", 1)[0]]


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop falsy values, as lm-eval does before ``build_description`` (HF rows carry nulls).

    Integer arguments stored as integral floats (``3.0``: datasets with nulls store ints as
    floats) become ints; other values are kept as given (:func:`validate_ifeval_check`
    rejects wrong types).
    """
    out: dict[str, Any] = {}
    for k, v in (kwargs or {}).items():
        if not v:
            continue
        if k in _INT_ARGS and isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out


def _check_arg_types(iid: str, kw: Mapping[str, Any]) -> None:
    """Raise CheckSpecError naming the first argument of a wrong type (after clean_kwargs)."""

    def bad(key: str, what: str) -> CheckSpecError:
        value = repr(kw[key])
        if len(value) > 60:
            value = value[:57] + "..."
        return CheckSpecError(f"check kind 'ifeval' ({iid}): kwargs.{key} must be {what}, got {value}", "kwargs")

    for key, v in kw.items():
        if key in _INT_ARGS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(key, "an integer")
        elif key in _STR_LIST_ARGS:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise bad(key, "a list of strings")
        elif not isinstance(v, str):
            raise bad(key, "a string")
        if key in _SEARCH_ARGS:
            for x in v if isinstance(v, list) else [v]:
                if not has_visible(x):  # " " or a zero-width space is found in (or absent from) anything
                    raise CheckSpecError(
                        f"check kind 'ifeval' ({iid}): kwargs.{key} has a blank entry {x[:40]!r}; "
                        "search arguments must have a visible character",
                        "kwargs",
                    )
                if len(x) > MAX_PHRASE_CHARS:
                    raise CheckSpecError(
                        f"check kind 'ifeval' ({iid}): kwargs.{key} entry {x[:40]!r}... is longer "
                        f"than {MAX_PHRASE_CHARS} characters",
                        "kwargs",
                    )
    if "language" in kw and kw["language"] not in IFEVAL_LANGUAGES:
        raise CheckSpecError(
            f"check kind 'ifeval' ({iid}): kwargs.language {kw['language']!r} is not one of "
            f"IFEval's codes ({', '.join(IFEVAL_LANGUAGES)})",
            "kwargs",
        )


def validate_ifeval_check(spec: Mapping[str, Any]) -> None:
    """Raise :class:`CheckSpecError` unless ``spec`` is a well-formed ``ifeval`` check.

    Static checks only (no lm-eval import): a known id, a dict of known argument names,
    argument types (integers, strings, lists of strings; integral floats count as
    integers), relations among IFEval's two, a known language code, search arguments of at
    most :data:`~openrlhf_reward.text.MAX_PHRASE_CHARS` characters.
    """
    iid = spec.get("instruction_id")
    if iid not in IFEVAL_INSTRUCTION_ARGS:
        raise CheckSpecError(
            f"check kind 'ifeval': unknown instruction_id {iid!r}; known ids: "
            f"{', '.join(IFEVAL_INSTRUCTION_ARGS)}",
            "instruction_id",
        )
    kwargs = spec.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise CheckSpecError(f"check kind 'ifeval' ({iid}): 'kwargs' must be an object", "kwargs")
    allowed = IFEVAL_INSTRUCTION_ARGS[iid]
    if extra := sorted(set(clean_kwargs(kwargs)) - set(allowed)):
        raise CheckSpecError(
            f"check kind 'ifeval' ({iid}): unknown kwargs {extra}; it takes {list(allowed)}", "kwargs"
        )
    _check_arg_types(iid, clean_kwargs(kwargs))
    for key in _RELATION_ARGS:
        if kwargs.get(key) and kwargs[key] not in _RELATIONS:
            raise CheckSpecError(
                f"check kind 'ifeval' ({iid}): {key!r} must be one of {list(_RELATIONS)}, "
                f"got {kwargs[key]!r}",
                "kwargs",
            )


def unscorable_reason(instruction_id: str, kwargs: Mapping[str, Any] | None) -> str | None:
    """Why lm-eval's checker cannot give a deterministic verdict here, or None if it can."""
    kw = clean_kwargs(kwargs)
    missing = [a for a in IFEVAL_INSTRUCTION_ARGS[instruction_id] if a not in kw]
    if missing:
        return f"{instruction_id}: argument(s) {missing} missing, lm-eval would draw them at random"
    negative = [a for a in IFEVAL_INSTRUCTION_ARGS[instruction_id]
                if a in _INT_ARGS and isinstance(kw[a], int) and kw[a] < 0]
    if negative:
        return f"{instruction_id}: argument(s) {negative} negative, lm-eval would draw them at random"
    if instruction_id == "length_constraints:nth_paragraph_first_word" and not (
        isinstance(kw["nth_paragraph"], int) and isinstance(kw["num_paragraphs"], int)
        and kw["nth_paragraph"] <= kw["num_paragraphs"]
    ):
        return f"{instruction_id}: nth_paragraph > num_paragraphs, lm-eval would draw it at random"
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


# Specs whose JSON is at most this long are cached; longer ones (a 1 MB end_phrase) are built
# per check, so the cache holds at most 4096 x ~1 KB whatever the requests were.
_MAX_CACHED_KEY_CHARS = 1024


def _checker(instruction_id: str, kwargs_json: str) -> tuple[Any | None, str | None]:
    """(checker, None) or (None, reason); cached per small spec so repeated checks are cheap."""
    if len(kwargs_json) <= _MAX_CACHED_KEY_CHARS:
        return _cached_checker(instruction_id, kwargs_json)
    return _new_checker(instruction_id, kwargs_json)


def _new_checker(instruction_id: str, kwargs_json: str) -> tuple[Any | None, str | None]:
    kw = json.loads(kwargs_json)
    reason = unscorable_reason(instruction_id, kw)
    if reason:
        return None, reason
    try:
        checker, _ = _build(instruction_id, kw)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckSpecError(f"check kind 'ifeval' ({instruction_id}): {e}", "kwargs") from None
    return checker, None


_cached_checker = lru_cache(maxsize=4096)(_new_checker)


def _key(kwargs: Mapping[str, Any] | None) -> str:
    return json.dumps(clean_kwargs(kwargs), sort_keys=True, ensure_ascii=False)


def run_ifeval_check(text: str, spec: Mapping[str, Any]) -> bool | None:
    """lm-eval's strict IFEval verdict for one instruction; None when not scorable.

    A blank response fails (lm-eval's strict metric: a blank response follows nothing).
    """
    if is_blank(text):
        return False
    iid = spec["instruction_id"]
    checker, _reason = _checker(iid, _key(spec.get("kwargs")))
    if checker is None:
        return None
    own = _LINEAR_CHECKS.get(iid)
    if own is not None:
        verdict = own(text, checker.get_instruction_args() or {})
        return None if verdict is None else bool(verdict)
    return bool(checker.check_following(text))


def preload() -> None:
    """Import lm-eval's IFEval registry, NLTK's punkt parameters and langdetect's profiles now.

    The reward server calls this at start-up so that the first IFEval request does not
    pay for the imports (several seconds) while holding up other requests.
    """
    _registry()
    contains_phrase("wärm up", "wärm")  # builds the Unicode word-character class (ASCII text skips it)
    is_blank("warm up")  # and the visible-character class
    _fold_tables()  # and the case-folding table of the keyword checks
    for iid, kw in (
        ("length_constraints:number_sentences", {"num_sentences": 1, "relation": "at least"}),
        ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "at least"}),
        ("language:response_language", {"language": "en"}),
    ):
        run_ifeval_check("Load the tokenizer. And the language profiles.",
                         {"kind": "ifeval", "instruction_id": iid, "kwargs": kw})


# --------------------------------------------------------------------------- linear checkers
# lm-eval's own code for these ids backtracks (time quadratic or worse in the response, on
# e.g. a run of "[" or of newlines), builds regexes from user text, or logs the response
# (language checks). Each function below
# gives lm-eval's verdict (same arguments, from get_instruction_args()) in linear time; the
# parity test pins them to lm-eval's results on the public IFEval responses.

_CLOSE_OR_NEWLINE = re.compile(r"[\]\n]")
_NON_SPACE = re.compile(r"\S")


def _count_placeholders(value: str) -> int:
    r"""``len(re.findall(r"\[.*?\]", value))``: "[" then the first "]" on the same line."""
    n = pos = 0
    while (i := value.find("[", pos)) >= 0:
        m = _CLOSE_OR_NEWLINE.search(value, i + 1)
        if m is None:
            break
        n += m.group() == "]"
        pos = m.end()  # after a newline every "[" before it fails the same way
    return n


def _count_line_matches(value: str, first: str, needs_non_star: bool) -> int:
    r"""``len(re.findall(r"^\s*<first>...$", value, re.M))`` for lm-eval's two bullet regexes.

    ``^\s*`` may run over blank lines to the next non-space character; the regex tries that
    again from every line start of the blank run (quadratic). Here each run is scanned once.
    """
    n, pos, end = 0, 0, len(value)
    while pos <= end:
        m = _NON_SPACE.search(value, pos)
        if m is None:
            break
        k = m.start()
        if value[k] == first and (not needs_non_star or (k + 1 < end and value[k + 1] != "*")):
            n += 1
            # ".*$" ends at the next newline (r"\*[^*]" may itself consume a newline)
            e = value.find("\n", k + 2 if needs_non_star else k + 1)
            if e < 0:
                break
            pos = e if value[e - 1] == "\n" else e + 1  # the next line start at or after e
        else:
            e = value.find("\n", k)
            if e < 0:
                break
            pos = e + 1
    return n


def _bullet_lists(value: str, args: Mapping[str, Any]) -> bool:
    n = _count_line_matches(value, "*", True) + _count_line_matches(value, "-", False)
    return n == args["num_bullets"]


def _placeholders(value: str, args: Mapping[str, Any]) -> bool:
    return _count_placeholders(value) >= args["num_placeholders"]


def _title(value: str, args: Mapping[str, Any]) -> bool:
    # r"<<[^\n]+>>" is greedy within a line: at most one match per line, from the first "<<"
    # to the last ">>" with at least one character between.
    for line in value.split("\n"):
        i = line.find("<<")
        if i < 0:
            continue
        j = line.rfind(">>")
        if j >= i + 3 and line[i : j + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


_PPS = re.compile(r"p\.\s?p\.\s?s")
_PS = re.compile(r"p\.\s?s\.")


def _postscript(value: str, args: Mapping[str, Any]) -> bool:
    # lm-eval: re.findall(r"\s*" + marker + r".*$", value.lower(), re.M) is non-empty exactly
    # when the marker occurs; the leading \s* only made it quadratic on whitespace runs.
    marker = args["postscript_marker"]
    value = value.lower()
    if marker == "P.P.S":
        return _PPS.search(value) is not None
    if marker == "P.S.":
        return _PS.search(value) is not None
    return marker.lower() in value  # escaped: the marker is literal text


def _sections(value: str, args: Mapping[str, Any]) -> bool:
    # lm-eval: len(re.split(r"\s?" + spliter + r"\s?\d+\s?", value)) - 1. Starting the
    # pattern with the literal spliter lets the regex engine search for it linearly (a
    # leading "\s?" made it retry the spliter at every position: O(text x spliter)); the
    # leading "\s?" only moves a match's start, so the count is the same. A spliter that
    # itself starts with whitespace keeps lm-eval's pattern (then a match may start earlier).
    spliter = args["section_spliter"]
    if spliter[:1].isspace():
        pattern = r"\s?" + re.escape(spliter) + r"\s?\d+\s?"
    else:
        pattern = re.escape(spliter) + r"\s?\d+\s?"
    return sum(1 for _ in re.finditer(pattern, value)) >= args["num_sections"]


@lru_cache(maxsize=1)
def _fold_tables() -> tuple[dict[int, str], frozenset[str]]:
    """(``str.translate`` table, mixed characters). The table gives each character the
    representative of its class under ``re.IGNORECASE`` (the regex engine's own lowercasing
    plus its extra equivalences, e.g. "ſ" ~ "s", "ı" ~ "i"): one character for one, so two
    folded strings are equal exactly when the regex matches them case-insensitively. Mixed:
    the characters of a class holding both word and non-word characters (the iota class:
    U+0345 is a combining mark)."""
    import _sre
    from re import _casefix

    table: dict[int, str] = {}
    classes: dict[int, list[int]] = {}
    for cp in range(0x110000):
        lo = _sre.unicode_tolower(cp)
        rep = min((lo, *_casefix._EXTRA_CASES.get(lo, ())))
        if rep != cp:
            table[cp] = chr(rep)
            classes.setdefault(rep, [rep]).append(cp)
    word = re.compile(r"\w")
    mixed = frozenset(
        chr(cp) for members in classes.values()
        if len({word.match(chr(c)) is None for c in members}) > 1 for cp in members
    )
    return table, mixed


def _fold(text: str) -> str:
    return text.translate(_fold_tables()[0])


_SRE_WORD_RUNS = re.compile(r"(\w+)")  # the word characters of the regex "\b"


def _keywords(value: str, args: Mapping[str, Any]) -> bool:
    # lm-eval: re.search(keyword, value, re.I) for each; a case-insensitive regex cannot use
    # the engine's fast literal search (O(text x keyword) on near-misses): fold, then find.
    folded = _fold(value)
    return all(_fold(k) in folded for k in args["keywords"])


def _keyword_frequency(value: str, args: Mapping[str, Any]) -> bool:
    # len(re.findall(keyword, value, re.I)): non-overlapping, leftmost first, as str.count
    n = _fold(value).count(_fold(args["keyword"]))
    return n < args["frequency"] if args["relation"] == _RELATIONS[0] else n >= args["frequency"]


def _forbidden_words(value: str, args: Mapping[str, Any]) -> bool:
    # re.search(r"\b" + word + r"\b", value, re.I) for each word, in linear time
    table, mixed = _fold_tables()
    return not any(
        contains_aligned(value, w, _SRE_WORD_RUNS, strict=True, fold=table, fold_mixed=mixed)
        for w in args["forbidden_words"]
    )


def _json_format(value: str, args: Mapping[str, Any]) -> bool:
    from lm_eval.tasks.ifeval.instructions import JsonFormat

    try:
        return JsonFormat("detectable_format:json_format").check_following(value)
    except RecursionError:  # nested deeper than Python's parser goes: not JSON we can read
        return False


def _detect_language(value: str) -> str | None:
    """langdetect's language, None when it finds no features (lm-eval then counts a pass).

    lm-eval logs the whole response at ERROR level in that case (1 MB of log per request);
    here it is silent.
    """
    import langdetect

    try:
        return langdetect.detect(value)
    except langdetect.LangDetectException:
        return None


def _response_language(value: str, args: Mapping[str, Any]) -> bool:
    lang = _detect_language(value)
    return lang is None or lang == args["language"]


def _english_capital(value: str, args: Mapping[str, Any]) -> bool:
    return value.isupper() and _detect_language(value) in (None, "en")


def _english_lowercase(value: str, args: Mapping[str, Any]) -> bool:
    return value.islower() and _detect_language(value) in (None, "en")


# Longest response the two NLTK ids are scored on: above it they are not scorable (None), so
# a request's cost is bounded and no verdict depends on the machine's speed. NLTK is linear
# but slow on many short sentences: "A. B. " repeated costs ~80 us per character in
# word_tokenize (about 1 s at this bound on a 2-core CPU); real answers are far below it.
MAX_NLTK_CHARS = 20_000

# The last NLTK count per thread (one text held at most): several sentence-count requirements
# on one response tokenize it once.
_nltk_memo = threading.local()


def _nltk_count(kind: str, value: str) -> int:
    """lm-eval's count for ``kind``: sentences (``count_sentences``) or all-capital words
    (``nltk.word_tokenize``, then ``str.isupper``). Raises TimeoutError when NLTK gives up."""
    memo = getattr(_nltk_memo, "last", None)
    if memo is not None and memo[0] == kind and memo[1] == value:
        return memo[2]
    from lm_eval.tasks.ifeval import instructions_util

    if kind == "sentences":
        n = instructions_util.count_sentences(value)
    else:
        n = sum(1 for w in instructions_util.nltk.word_tokenize(value) if w.isupper())
    _nltk_memo.last = (kind, value, n)
    return n


def _nltk_check(kind: str, value: str, threshold: int, relation: str) -> bool | None:
    """lm-eval's verdict from an NLTK count; None (not scorable) above MAX_NLTK_CHARS or
    when NLTK stops on its wall-clock regex limit (TimeoutError): a timeout that a slower
    machine would hit sooner never becomes a verdict."""
    if len(value) > MAX_NLTK_CHARS:
        return None
    try:
        n = _nltk_count(kind, value)
    except TimeoutError:
        return None
    return n < threshold if relation == _RELATIONS[0] else n >= threshold


def _number_sentences(value: str, args: Mapping[str, Any]) -> bool | None:
    return _nltk_check("sentences", value, args["num_sentences"], args["relation"])


def _capital_word_frequency(value: str, args: Mapping[str, Any]) -> bool | None:
    # Without one uppercase character no token is all-capitals: skip NLTK's tokenizer
    # (and its length bound: the count is 0 whatever the length).
    if not any(map(str.isupper, value)):
        n = 0
        return n < args["capital_frequency"] if args["capital_relation"] == _RELATIONS[0] \
            else n >= args["capital_frequency"]
    return _nltk_check("capitals", value, args["capital_frequency"], args["capital_relation"])


_LINEAR_CHECKS: dict[str, Any] = {
    "length_constraints:number_sentences": _number_sentences,
    "change_case:capital_word_frequency": _capital_word_frequency,
    "language:response_language": _response_language,
    "change_case:english_capital": _english_capital,
    "change_case:english_lowercase": _english_lowercase,
    "detectable_content:number_placeholders": _placeholders,
    "detectable_format:number_bullet_lists": _bullet_lists,
    "detectable_format:title": _title,
    "detectable_content:postscript": _postscript,
    "detectable_format:multiple_sections": _sections,
    "keywords:existence": _keywords,
    "keywords:frequency": _keyword_frequency,
    "keywords:forbidden_words": _forbidden_words,
    "detectable_format:json_format": _json_format,
}


# --------------------------------------------------------------------------- descriptions


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
