"""A self-contained HTML page from titled sections; every text cell is escaped."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from steerlab.paths import write_text

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}code,pre{background:#f6f6f6;padding:2px 4px;white-space:pre-wrap}mark{background:#ffd54f}.meta{color:#666;font-size:90%}
"""


@dataclass
class Section:
    """A heading with a table (header + rows of text), preformatted text, an embedded PNG and/or markup.

    `markup` is inserted as is: the caller builds it and escapes any untrusted text in it.
    """

    title: str
    header: Sequence[str] = ()
    rows: Sequence[Sequence[object]] = ()
    text: str = ""
    image: bytes = b""  # PNG bytes, embedded as a data URI (the page stays self-contained)
    markup: str = ""
    anchor: str = ""  # the heading's id, for links to this section (#anchor)


def table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table of text cells (each escaped), for a Section's rows or inside its markup."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def png_img(png: bytes, alt: str = "") -> str:
    """An <img> tag with the PNG inlined as a data URI (the page stays self-contained)."""
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' style='max-width:100%' src='data:image/png;base64,{data}'>"


def write_page(
    path: str | Path, title: str, sections: Sequence[Section], meta: dict | None = None, style: str = ""
) -> Path:
    """Write the page and return its path; `style` is CSS added to the page's own (for classes in markup)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta_line = ", ".join(f"{k}: {v}" for k, v in (meta or {}).items())
    parts.append(f"<p class='meta'>{html.escape(stamp)} {html.escape(meta_line)}</p>")
    for section in sections:
        anchor = f" id='{html.escape(section.anchor)}'" if section.anchor else ""
        parts.append(f"<h2{anchor}>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<pre>{html.escape(section.text)}</pre>")
        if section.rows:
            parts.append(table(section.header, section.rows))
        if section.image:
            parts.append(png_img(section.image, section.title))
        if section.markup:
            parts.append(section.markup)
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}{style}</style></head><body>{''.join(parts)}</body></html>"
    write_text(path, page)
    return path
