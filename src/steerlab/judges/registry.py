"""Build a judge by name: heuristic (offline default), heuristic-phrases (its phrase-list-only predecessor),
openai (any compatible server), anthropic."""

from __future__ import annotations

import math

from steerlab.errors import SteerlabError
from steerlab.judges.backends import AnthropicBackend, OpenAIBackend
from steerlab.judges.base import Judge
from steerlab.judges.http import RetryPolicy

JUDGES = ("heuristic", "heuristic-phrases", "openai", "anthropic")


def make_judge(
    name: str,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    *,
    concurrency: int = 4,
    rate_per_s: float | None = None,
    temperature: float | None = None,
    max_tokens: int = 1024,
    timeout: float = 120.0,
    max_retries: int = 5,
    retry_base_delay: float = 1.0,
    rubric: str = "faithful",
    anchors: bool | None = None,
) -> Judge:
    """A judge from its name and settings; an unknown name, rubric or a missing model id is one-sentence error.

    rubric/anchors/temperature apply to LLM judges (temperature None: the provider's default); the
    rubric name is checked for every judge, so a typo fails before any work.
    """
    from steerlab.judges.rubrics import esr_rubric

    name = name.strip().lower()
    chosen = esr_rubric(rubric, anchors)
    if temperature is not None and not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
        raise SteerlabError(f"The judge temperature must be a number from 0 to 2; got {temperature}.")
    if name in ("heuristic", "heuristic-phrases"):
        from steerlab.judges.heuristic import HeuristicJudge

        return HeuristicJudge(restarts="probe" if name == "heuristic" else "phrases")
    if name not in JUDGES:
        raise SteerlabError(f"Unknown judge '{name}'; choose one of: {', '.join(JUDGES)}.")
    from steerlab.judges.llm import LLMJudge

    cls = OpenAIBackend if name == "openai" else AnthropicBackend
    backend = cls(
        model or "",
        base_url,
        api_key_env,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout,
        retry=RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay),
        rate_per_s=rate_per_s,
    )
    return LLMJudge(backend, concurrency=concurrency, rubric=chosen)
