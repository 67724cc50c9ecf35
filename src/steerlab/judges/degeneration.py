"""Degenerate text: the spec's rule for a steered answer that collapsed into one word repeated.

Shared by the judges (the persona heuristic caps coherence on it) and the ESR metrics (degenerate trials).
"""

from __future__ import annotations


def is_degraded(text: str, repeats: int = 5) -> bool:
    """A whitespace token longer than one character repeated `repeats` times in a row (the spec's rule)."""
    run, prev = 0, None
    for tok in text.split():
        run = run + 1 if tok == prev and len(tok) > 1 else 1
        prev = tok
        if run >= repeats:
            return True
    return False
