"""Text primitives shared by the check vocabulary and IFEval scoring.

What a word, sentence, paragraph, bullet and percent figure are, whole-word phrase matching,
``<think>`` stripping and the one blank-response rule (:func:`is_blank`), plus the limits and
the error of a check spec. :mod:`openrlhf_reward.checks` (the ``check`` kinds) and
:mod:`openrlhf_reward.ifeval` both build on this module, which imports neither. The rules are
documented in ``docs/checks.md``. Every function runs in time linear in the text (no
backtracking regex on user text).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

__all__ = [
    "CheckSpecError",
    "MAX_PHRASE_CHARS",
    "SENTENCE_END",
    "TITLE_LINE",
    "contains_aligned",
    "contains_phrase",
    "count_bullets",
    "count_paragraphs",
    "count_percents",
    "count_sentences",
    "count_words",
    "has_visible",
    "is_blank",
    "strip_think",
]


class CheckSpecError(ValueError):
    """A `check` spec that names an unknown kind or carries wrong parameters.

    ``field`` is the spec key at fault when the raiser knows it (``"instruction_id"`` or
    ``"kwargs"`` for kind ``ifeval``), so a caller can name the field without reading the
    message.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# A title line ("<<Title>>" alone on its line): not counted as a sentence or paragraph.
TITLE_LINE = re.compile(r"^\s*<<[^<>\n]+>>\s*$")
_WORD_CHAR = re.compile(r"[^\W_]")  # a letter or a digit, any script
# End punctuation, optionally closed by quotes/brackets, then whitespace or the end. The
# lookbehind and the possessive runs keep it linear: a match may only start where a run of
# end punctuation starts, and a run is never re-scanned (28 KB of dots took 15 s without).
SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"'\u201d\u2019)\]]*+(?=\s|$)")
# A list enumerator ("1." / "2)") at the start of a line is not a sentence end.
_ENUMERATOR = re.compile(r"^([ \t]*)\d+[.)](?=[ \t])", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# Starts only where a run of digits starts (same matches, linear on long digit runs).
_PERCENT = re.compile(r"(?<!\d)\d++(?:[.,]\d++)?[ \t]?%")

# Longest keyword or phrase a check accepts: phrase search costs O(len(text) * len(phrase)).
MAX_PHRASE_CHARS = 256


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
# Characters a reader cannot see besides Unicode's Cc/Cf/Zs/Zl/Zp categories: fillers that
# render as blank space (Hangul fillers, Braille blank), the combining grapheme joiner and
# the variation selectors (default-ignorable marks).
_INVISIBLE_EXTRA = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0100, 0xE01EF),
)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


@lru_cache(maxsize=1)
def _visible_char() -> re.Pattern[str]:
    """A regex matching one character a reader can see (anything not invisible)."""
    invisible = set()
    for a, b in _INVISIBLE_EXTRA:
        invisible.update(range(a, b + 1))
    for cp in (*range(0x30000), *range(0xE0000, 0xE1000)):
        if unicodedata.category(chr(cp)) in _INVISIBLE_CATEGORIES:
            invisible.add(cp)
    return re.compile(f"[^{_class_body(invisible)}]")


def _class_body(codepoints) -> str:
    """The inside of a regex character class holding exactly ``codepoints``, as ranges."""
    ranges: list[list[int]] = []
    for cp in sorted(codepoints):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


def has_visible(text: str) -> bool:
    """True when ``text`` has a character a reader can see: anything but whitespace, control
    and format characters (Unicode Cc, Cf, Zs, Zl, Zp), fillers (U+115F, U+1160, U+3164,
    U+FFA0, U+2800 Braille blank) and variation selectors. Linear (one regex scan)."""
    if not text or text.isspace():
        return False
    return _visible_char().search(text) is not None


def strip_think(text: str) -> str:
    """``text`` without its ``<think>...</think>`` blocks (reasoning is not the answer).

    Every block is removed, nested ones as a whole (``<think><think>x</think>y</think>``);
    an unfinished block (an opening tag never closed) runs to the end of the text; a
    closing tag with no opening one is dropped. Whitespace that a leading block leaves at
    the start is dropped too. Linear: one forward scan with ``str.find``.
    """
    if _THINK_OPEN not in text and _THINK_CLOSE not in text:
        return text
    out: list[str] = []
    depth = pos = 0
    next_open = text.find(_THINK_OPEN)
    next_close = text.find(_THINK_CLOSE)
    while True:
        if next_open < 0 and next_close < 0:
            if depth == 0:
                out.append(text[pos:])
            break  # depth > 0: the rest is unfinished reasoning
        if next_open >= 0 and (next_close < 0 or next_open < next_close):
            if depth == 0:
                out.append(text[pos:next_open])
            depth += 1
            pos = next_open + len(_THINK_OPEN)
            next_open = text.find(_THINK_OPEN, pos)
        else:
            if depth == 0:
                out.append(text[pos:next_close])  # a stray closing tag: drop the tag only
            else:
                depth -= 1
            pos = next_close + len(_THINK_CLOSE)
            next_close = text.find(_THINK_CLOSE, pos)
    result = "".join(out)
    return result.lstrip() if text.lstrip().startswith(_THINK_OPEN) else result


def is_blank(text: str) -> bool:
    """True when a reader would see nothing in the response: after :func:`strip_think`,
    nothing but invisible characters (:func:`has_visible`). A blank response fails every
    check. The one definition used by scorers, ``extra_logs`` and the server's metrics."""
    return not has_visible(strip_think(text))


@lru_cache(maxsize=1)
def _word_class() -> str:
    """A regex class for word characters: ``\\w`` plus combining marks (any script)."""
    marks = _class_body(cp for cp in (*range(0x30000), *range(0xE0100, 0xE01F0))
                        if unicodedata.category(chr(cp)).startswith("M"))
    return rf"[\w{marks}]"


@lru_cache(maxsize=1)
def _word_runs() -> re.Pattern[str]:
    """Runs of word characters (``\\w`` plus combining marks), captured, for ``split``."""
    return re.compile(f"({_word_class()}+)")


_ASCII_WORD_RUNS = re.compile(r"(\w+)", re.ASCII)

# Separator candidates for :func:`contains_aligned`; any character absent from the text works.
_SENTINELS = "\x00\x01\x02\x03\x04\x05\x06\x07\ue000\ue001\ue002\ue003"


def _pick_sentinel(text: str) -> str | None:
    """A character that does not occur in ``text`` (None only if it holds every code point)."""
    for c in _SENTINELS:
        if c not in text:
            return c
    used = set(text)  # an adversarial text holding all the usual candidates: look further
    return next((chr(cp) for cp in range(0xE004, 0x110000) if chr(cp) not in used), None)


# Occurrences checked one by one before switching to the cut search (most texts hold a
# keyword a few times; only a text of near-misses needs the cut).
_ALIGNED_LOOP_CAP = 32
# The cut of a long text is built in chunks of about this many characters, so that no single
# C call holds the GIL for long (other server threads run between chunks).
_CUT_CHUNK = 1 << 16
# The last cut text per thread (one text held at most): several keywords of one response
# cut it once.
_cut_memo = threading.local()


def contains_aligned(
    text: str,
    needle: str,
    word_runs: re.Pattern[str],
    *,
    strict: bool = False,
    fold: Mapping[int, str] | None = None,
    fold_mixed: frozenset[str] = frozenset(),
) -> bool:
    """True when ``needle`` occurs in ``text`` aligned to word boundaries.

    ``word_runs`` captures maximal runs of word characters (``re.compile(r"(\\w+)")``). An
    end of ``needle`` that is a word character must meet a non-word character or the end of
    the text (``"sea"`` is not in ``"research"``). With ``strict`` the text must change
    between word and non-word characters at both ends of the occurrence (regex ``\\b`` on
    both sides). ``fold``: a one-character-for-one ``str.translate`` table applied to both
    (case folding); word boundaries are those of the original characters. ``fold_mixed``:
    characters that fold together with one of the other kind (word / non-word); a needle
    holding one is checked occurrence by occurrence.

    Linear time. The first occurrences are checked one by one (``str.find``); past
    ``_ALIGNED_LOOP_CAP`` near-misses both strings are cut at every change between word and
    non-word characters with a separator absent from the text, so an aligned occurrence is
    exactly a substring occurrence of the cut needle: one more search. (A boundary-checking
    regex, or an unbounded loop over overlapping candidates, costs O(text x needle) on a
    text of near-misses.)
    """
    if not needle:
        return True
    mixed = bool(fold_mixed) and not fold_mixed.isdisjoint(needle)
    found = _contains_aligned_loop(text, needle, word_runs, strict=strict, fold=fold,
                                   cap=None if mixed else _ALIGNED_LOOP_CAP)
    if found is not None:
        return found
    sep, hay = _cut_text(text, word_runs, fold)
    if sep is None:  # the text holds every code point: keep checking one by one
        return bool(_contains_aligned_loop(text, needle, word_runs, strict=strict, fold=fold))
    if sep in needle:
        return False  # a character the text does not have (sentinels are not cased)
    cut = sep.join(word_runs.split(needle))  # begins/ends with sep where needle has a word char
    if strict:
        if not word_runs.match(needle):
            cut = sep + cut
        if not word_runs.match(needle[-1]):
            cut += sep
    if fold is not None:
        cut = cut.translate(fold)
    return cut in hay


@lru_cache(maxsize=8)
def _one_char(word_runs: re.Pattern[str]) -> re.Pattern[str]:
    """One word character of ``word_runs`` (``(X+)`` -> ``X``): a test that reads one character."""
    return re.compile(word_runs.pattern.removeprefix("(").removesuffix("+)"), word_runs.flags)


def _cut_text(text: str, word_runs: re.Pattern[str], fold: Mapping[int, str] | None) -> tuple[str | None, str]:
    """(separator, ``text`` with the separator between every word and non-word run, folded)."""
    memo = getattr(_cut_memo, "last", None)
    if memo is not None and memo[0] is word_runs and memo[1] is fold and memo[2] == text:
        return memo[3], memo[4]
    sep = _pick_sentinel(text)
    if sep is None:
        return None, ""
    parts: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + _CUT_CHUNK, len(text))
        if end < len(text):  # end the chunk just after a non-word character
            m = word_runs.match(text, end - 1)
            end = min(m.end() + 1, len(text)) if m else end
        piece = sep.join(word_runs.split(text[start:end]))
        parts.append(piece if fold is None else piece.translate(fold))
        start = end
    hay = "".join(parts)
    _cut_memo.last = (word_runs, fold, text, sep, hay)
    return sep, hay


def _contains_aligned_loop(
    text: str,
    needle: str,
    word_runs: re.Pattern[str],
    *,
    strict: bool,
    fold: Mapping[int, str] | None = None,
    cap: int | None = None,
) -> bool | None:
    """:func:`contains_aligned` by checking every occurrence (the reference definition);
    None when more than ``cap`` occurrences were checked without an aligned one."""
    folded, fneedle = (text, needle) if fold is None else (text.translate(fold), needle.translate(fold))
    one = _one_char(word_runs)

    def word(i: int) -> bool | None:  # None: outside the text
        return None if i < 0 or i >= len(text) else one.match(text, i) is not None

    first, last = word_runs.match(needle) is not None, word_runs.match(needle[-1]) is not None
    i = folded.find(fneedle)
    n = 0
    while i >= 0:
        j = i + len(needle)
        if strict:  # regex \\b: the text's own characters on either side differ in kind
            ok_before = bool(word(i - 1)) != bool(word(i))
            ok_after = bool(word(j - 1)) != bool(word(j))
        else:
            ok_before = not first or not word(i - 1)
            ok_after = not last or not word(j)
        if ok_before and ok_after:
            return True
        n += 1
        if cap is not None and n >= cap:
            return None
        i = folded.find(fneedle, i + 1)
    return False


def contains_phrase(text: str, phrase: str, *, lowered: bool = False) -> bool:
    """True when ``phrase`` occurs in ``text`` as whole words, case-insensitively.

    Whitespace inside the phrase matches any run of whitespace. ``lowered``: ``text`` is
    already lowercased (saves a copy when several phrases are looked up). Linear in the
    text (see :func:`contains_aligned`).
    """
    words = phrase.lower().split()
    if not words:
        return False
    text = text if lowered else text.lower()
    if words[0] not in text:  # cheap rejection
        return False
    # Whitespace runs become one space on both sides ("light keeper" ~ "Light\n Keeper").
    text, phrase = " ".join(text.split()), " ".join(words)
    # ASCII has no combining marks: plain \w is the same class and much faster to split on
    runs = _ASCII_WORD_RUNS if text.isascii() and phrase.isascii() else _word_runs()
    return contains_aligned(text, phrase, runs)


def _strip_title_lines(text: str) -> str:
    if "<<" not in text:  # no title line: skip the per-line regex (same line breaks)
        return "\n".join(text.splitlines())
    return "\n".join(line for line in text.splitlines() if not TITLE_LINE.match(line))


def count_words(text: str) -> int:
    return sum(1 for tok in text.split() if _WORD_CHAR.search(tok))


def count_sentences(text: str) -> int:
    text = _ENUMERATOR.sub(r"\1", _strip_title_lines(text))
    pieces = SENTENCE_END.split(text)
    return sum(1 for piece in pieces if _WORD_CHAR.search(piece))


def count_paragraphs(text: str) -> int:
    blocks = _BLANK_LINES.split(text.strip())
    return sum(1 for b in blocks if b.strip() and not TITLE_LINE.match(b))


def count_bullets(text: str, marker: str = "- ") -> int:
    return sum(1 for line in text.splitlines() if line.lstrip(" \t").startswith(marker))


def count_percents(text: str) -> int:
    # Each "%" ends at most one figure and a figure ends with a digit, so this counts the
    # matches of _PERCENT (the definition; a test compares them) by looking back from each "%".
    n = 0
    i = text.find("%")
    while i >= 0:
        j = i - 1
        if j >= 0 and text[j] in " \t":
            j -= 1
        n += j >= 0 and text[j].isdecimal()
        i = text.find("%", i + 1)
    return n
