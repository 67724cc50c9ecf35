"""User-facing errors: one sentence that says what is wrong and how to fix it."""


class SteerlabError(ValueError):
    """Bad input caught at the edge, before expensive work; the CLI prints it and exits with code 2."""


def check_number(
    value: object,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise one sentence unless value is a finite number in [lo, hi] (an open end excludes the bound).

    Args:
        value: the number (bools are refused).
        name: how the user knows the setting, e.g. "--temperature" or "ESR config field 'target'".
        lo, hi: the bounds, None for none.
    """
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SteerlabError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value):
        raise SteerlabError(f"{name} must be a finite number, got {value}.")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "-inf" if lo is None else _shown(lo)
        right = "inf" if hi is None else _shown(hi)
        span = f"{'(' if lo_open or lo is None else '['}{left}, {right}{')' if hi_open or hi is None else ']'}"
        raise SteerlabError(f"{name} must lie in {span}, got {_shown(value)}.")


def _shown(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


Range = tuple  # (lo, hi) or (lo, hi, "open-low" | "open-high" | "open") as for check_number


def check_fields(config: object, what: str, ranges: dict[str, Range] | None = None) -> None:
    """Every number in a dataclass's fields (also inside lists, tuples and dicts) is finite, and in range where given.

    Args:
        config: a dataclass instance (a config).
        what: its name in the sentence, e.g. "ESR config".
        ranges: field -> (lo, hi[, openness]); applies to the field's value or to each number inside it.
    """
    import dataclasses

    ranges = ranges or {}
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        bounds = ranges.get(f.name, (None, None))
        opened = bounds[2] if len(bounds) > 2 else ""
        stack = [value]
        while stack:
            x = stack.pop()
            if isinstance(x, (list, tuple)):
                stack.extend(x)
            elif isinstance(x, dict):
                stack.extend(x.values())
            elif isinstance(x, (int, float)) and not isinstance(x, bool):
                check_number(
                    x,
                    f"{what} field '{f.name}'",
                    bounds[0],
                    bounds[1],
                    lo_open=opened in ("open", "open-low"),
                    hi_open=opened in ("open", "open-high"),
                )
