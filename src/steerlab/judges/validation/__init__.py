"""The project's judge-validation set and the metrics a judge is validated by (`steerlab judge validate`)."""

from steerlab.judges.validation.build import SET_VERSION, build_set
from steerlab.judges.validation.core import check_row, load_set, score_rows, validate, write_set

__all__ = ["SET_VERSION", "build_set", "check_row", "load_set", "score_rows", "validate", "write_set"]
