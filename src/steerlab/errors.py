"""User-facing errors: one sentence that says what is wrong and how to fix it."""


class SteerlabError(ValueError):
    """Bad input caught at the edge, before expensive work; the CLI prints it and exits with code 2."""
