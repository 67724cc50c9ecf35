"""Consoles for the CLI with rich markup off: prompts, answers and paths are printed as they are.

A prompt such as "[/INST] ..." would otherwise be read as markup and crash (or silently restyle) a table.
Styles come from `style=` arguments and column styles, never from text.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, markup=False, highlight=False)  # messages, beside the progress bars
out = Console(markup=False, highlight=False)  # results (tables) on stdout


def wide(min_width: int) -> Console:
    """A stdout console at least min_width columns wide (tables of numbers in narrow or piped terminals)."""
    return Console(markup=False, highlight=False, width=max(out.width, min_width))
