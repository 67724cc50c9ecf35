"""Split a response into attempts at explicit restart language, the rule the ESR rubric states.

Only phrases that abandon what came before start a new attempt ("Wait, that's not right.",
"Let me try again."). Elaboration never does, and neither does the plain word "wait" in prose
("wait for the water to boil"). Restart language before any attempt starts no empty attempt.
"""

from __future__ import annotations

import re

RESTART_PHRASES = (
    r"no,? wait\b",
    r"wait,? no\b",
    r"wait[,!.]* that(?:'s| is| was) (?:not right|wrong|not correct|incorrect|not what)",
    r"wait[,!.]* (?:i|let me) (?:made a mistake|messed up|got (?:that|this) wrong|think i)",
    r"hold on[,!.]* that(?:'s| is) (?:not right|wrong)",
    r"let me (?:try|start|do) (?:that |this )?(?:again|over)\b",
    r"i(?:'ll| will) (?:try|start) (?:that |this )?(?:again|over)\b",
    r"(?:trying|try) (?:that |this )?again\s*[:.!]",
    r"let(?:'s| us) (?:try|start) (?:that |this )?(?:again|over)\b",
    r"let me (?:re-?start|restart|rephrase|revise|correct (?:myself|that|this)|refocus|get back on track)\b",
    r"i(?:'d| would) like to (?:revise|correct|redo) my (?:answer|response)",
    r"actually,? i (?:made a mistake|was wrong|misspoke|got (?:that|this) wrong)",
    r"(?:oops|sorry)[,!.]* (?:that(?:'s| is| was) (?:not right|wrong|off[- ]topic|not what)|i (?:made a mistake|got (?:off track|sidetracked)))",
    r"i (?:apologi[sz]e|'m sorry)[^.!?\n]{0,40}(?:confusion|mistake|off[- ]topic|tangent|digression)",
    r"scratch that\b",
    r"(?:starting|start) over\b",
    r"(?:back|returning|to return) to (?:the|your) (?:question|topic|original question)",
    r"i (?:got|went) (?:off[- ]track|sidetracked|off[- ]topic)",
)

# A restart must open a sentence: start of text, or after sentence punctuation, a newline or a dash.
_RESTART = re.compile(
    r"(?:(?<=^)|(?<=[.!?:;\n\"'*)\]])\s*|(?<=\s[-\u2013\u2014])\s*)(?P<phrase>" + "|".join(RESTART_PHRASES) + ")",
    re.IGNORECASE,
)


def restart_positions(text: str) -> list[tuple[int, int]]:
    """(start, end) of every restart phrase that opens a sentence."""
    return [(m.start("phrase"), m.end("phrase")) for m in _RESTART.finditer(text)]


def split_attempts(text: str) -> list[str]:
    """The attempts in a response, each beginning with its restart phrase; no empty attempts."""
    cuts = [s for s, _ in restart_positions(text)]
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]
    attempts: list[str] = []
    for i, piece in enumerate(pieces):
        body = strip_restart(piece) if i > 0 else piece
        if not re.search(r"\w", body):
            continue  # restart language with nothing after it (or before any attempt) is no attempt
        attempts.append(piece)
    return attempts


def strip_restart(piece: str) -> str:
    """The attempt's content without its leading restart phrase and punctuation."""
    m = re.match(r"\s*(?:" + "|".join(RESTART_PHRASES) + r")[\s,.!:;\-\u2013\u2014]*", piece, re.IGNORECASE)
    return piece[m.end() :] if m else piece


# A fragment ends at sentence punctuation, a colon or semicolon followed by space, a line break, a spaced dash, or
# where a capitalised word follows a lower-case word with no punctuation between them: degenerate text (loops, word
# salad) has no sentence punctuation, and a self-correction written right after it must still open a fragment.
_FRAGMENT_END = re.compile(r"(?<=[.!?;:])[\"'*)\]]*\s+|\n+|\s+[-\u2013\u2014]+\s+|(?<=[a-z])\s+(?=[A-Z][a-z']|I\s)")


def fragments(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentence-like fragments of a text, whitespace trimmed, none empty.

    Restarts open a fragment, so these are the candidate places where a new attempt may begin.
    """
    spans, start = [], 0
    for m in _FRAGMENT_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if re.search(r"\w", text[a:b]):
            out.append((a, b))
        elif out and a < b:  # punctuation-only leftovers stay with the fragment before them
            out[-1] = (out[-1][0], b)
    return out
