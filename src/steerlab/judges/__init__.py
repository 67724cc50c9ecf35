"""Judges turn (prompt, response, steering label) into attempts with 0-100 scores, or a recorded error."""

from steerlab.judges.agreement import agreement
from steerlab.judges.backends import AnthropicBackend, ChatBackend, OpenAIBackend
from steerlab.judges.base import BaseJudge, Judge
from steerlab.judges.cache import CachedJudge, GradeCache, grade_key
from steerlab.judges.llm import LLMJudge
from steerlab.judges.parse import parse_attempts, parse_rating, parse_verdict
from steerlab.judges.persona import PersonaGrade, PersonaJudge, is_misaligned, misalignment_rate
from steerlab.judges.refusal import RefusalJudge, is_refusal_keyword
from steerlab.judges.registry import JUDGES, make_judge
from steerlab.judges.restarts import split_attempts
from steerlab.judges.types import Attempt, Grade, GradeRequest

__all__ = [
    "AnthropicBackend",
    "Attempt",
    "BaseJudge",
    "CachedJudge",
    "ChatBackend",
    "Grade",
    "GradeCache",
    "GradeRequest",
    "JUDGES",
    "Judge",
    "LLMJudge",
    "OpenAIBackend",
    "PersonaGrade",
    "PersonaJudge",
    "RefusalJudge",
    "agreement",
    "grade_key",
    "is_misaligned",
    "is_refusal_keyword",
    "make_judge",
    "misalignment_rate",
    "parse_attempts",
    "parse_rating",
    "parse_verdict",
    "split_attempts",
]
