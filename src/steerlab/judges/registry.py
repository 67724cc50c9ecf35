"""Build a judge by name: heuristic (offline default), openai (any compatible server), anthropic."""

from __future__ import annotations

from steerlab.errors import SteerlabError
from steerlab.judges.backends import AnthropicBackend, OpenAIBackend
from steerlab.judges.base import Judge
from steerlab.judges.http import RetryPolicy

JUDGES = ("heuristic", "openai", "anthropic")


def make_judge(
    name: str,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    *,
    concurrency: int = 4,
    rate_per_s: float | None = None,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    timeout: float = 120.0,
    max_retries: int = 5,
    retry_base_delay: float = 1.0,
) -> Judge:
    """A judge from its name and settings; an unknown name or a missing model id is one-sentence error."""
    name = name.strip().lower()
    if name == "heuristic":
        from steerlab.judges.heuristic import HeuristicJudge

        return HeuristicJudge()
    if name not in JUDGES:
        raise SteerlabError(f"Unknown judge '{name}'; choose one of: {', '.join(JUDGES)}.")
    from steerlab.judges.llm import LLMJudge

    cls = OpenAIBackend if name == "openai" else AnthropicBackend
    backend = cls(
        model or "", base_url, api_key_env, temperature=temperature, max_tokens=max_tokens, timeout=timeout,
        retry=RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay), rate_per_s=rate_per_s,
    )
    return LLMJudge(backend, concurrency=concurrency)
