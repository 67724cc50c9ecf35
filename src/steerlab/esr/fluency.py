"""Is a steered answer still language? Degeneration = loops, number runs or non-words (no LLM needed).

ESR is about a model that writes *fluent* text on the wrong topic and then notices; word salad gives
it nothing to notice. `degeneration(text)` names the first failure found, or None for fluent text:

- "loop": a word repeated 4+ times in a row, a 2-8 word phrase repeated 3+ times in a row, or one
  short piece repeated 6+ times inside a word ("hahahaha", "abcabcabcabc");
- "number_run": 8+ digits in a row ("1000000000"), or more than 40% of the words are numbers;
- "non_words": more than 30% of the words are not word-like (symbol clusters such as "*B", "=",
  letters mixed with digits or symbols, 4+ letters without a vowel, or 20+ letter strings), fewer
  than half of the characters are letters, or a 40+ character string has no space.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

_WORD = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*")
_PUNCT = ".,;:!?\"'()[]{}\u201c\u201d\u2018\u2019`*_#>-\u2013\u2014"
_CHAR_LOOP = re.compile(r"([A-Za-z]{1,4}?)\1{5,}", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d{8,}")
_NUMBER = re.compile(r"^[+-]?[\d.,:/%$]+$")
_VOWEL = re.compile(r"[aeiouy]", re.IGNORECASE)


def _word_like(token: str) -> bool:
    core = token.strip(_PUNCT)
    if not core:
        return token in ("-", "\u2013", "\u2014", "&")
    if _NUMBER.match(core):
        return True
    if not _WORD.fullmatch(core):
        return False
    letters = re.sub(r"[^A-Za-z]", "", core)
    if len(letters) >= 20:
        return False
    if len(letters) >= 4 and not _VOWEL.search(letters):
        return False
    return True


def _phrase_loop(words: Sequence[str], max_n: int = 8, times: int = 3) -> bool:
    """Some n-gram (2 <= n <= max_n) repeated `times` times back to back."""
    for n in range(2, max_n + 1):
        for i in range(0, len(words) - n * times + 1):
            gram = words[i : i + n]
            if all(words[i + k * n : i + (k + 1) * n] == gram for k in range(1, times)):
                return True
    return False


def degeneration(text: str) -> str | None:
    """The kind of degeneration in a text ("loop", "number_run", "non_words"), or None when fluent."""
    tokens = text.split()
    if not tokens:
        return None
    words = [t.strip(_PUNCT).lower() for t in tokens]
    run, prev = 1, None
    for w in words:
        run = run + 1 if w and w == prev else 1
        prev = w
        if run >= 4:
            return "loop"
    if _DIGIT_RUN.search(text.replace(",", "")):
        return "number_run"
    if _phrase_loop([w for w in words if w]) or _CHAR_LOOP.search(text):
        return "loop"
    numbers = sum(bool(_NUMBER.match(t.strip(_PUNCT))) and any(c.isdigit() for c in t) for t in tokens)
    if len(tokens) >= 5 and numbers / len(tokens) > 0.4:
        return "number_run"
    bad = sum(not _word_like(t) for t in tokens)
    if len(tokens) >= 5 and bad / len(tokens) > 0.3:
        return "non_words"
    chars = "".join(tokens)
    if len(chars) >= 20 and (sum(c.isalpha() for c in chars) / len(chars) < 0.5 or max(len(t) for t in tokens) >= 40):
        return "non_words"  # symbol soup, or one endless "word" with no spaces
    return None


def degenerate_rate(texts: Iterable[str]) -> float:
    """The share of texts that are degenerate (0 for no texts)."""
    flags = [degeneration(t) is not None for t in texts]
    return sum(flags) / len(flags) if flags else 0.0
