"""Matplotlib figures as PNG bytes for the self-contained HTML reports (headless backend, figure closed)."""

from __future__ import annotations

import io


def figure_png(fig, dpi: int = 90, tight: bool = True) -> bytes:
    """Render `fig` to PNG bytes and close it, so long report runs never accumulate open figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
