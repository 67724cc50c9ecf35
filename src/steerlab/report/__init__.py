"""Reports: one self-contained HTML page per run (and PNG plots)."""

from steerlab.report.html import Section, write_page

__all__ = ["Section", "write_page"]
