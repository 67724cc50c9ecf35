"""Reports: one self-contained HTML page per run (and PNG plots)."""

from steerlab.report.figures import figure_png
from steerlab.report.html import Section, png_img, table, write_page

__all__ = ["figure_png", "png_img", "Section", "table", "write_page"]
