"""Chat back ends for LLM judges: OpenAI-compatible (/v1/chat/completions) and Anthropic (/v1/messages).

Each takes the full model id (pinned into the run config), reads its key from a named environment
variable at call time, and keeps the key out of repr, config and error messages.
"""

from __future__ import annotations

import os
import re
from typing import Any

from steerlab.errors import SteerlabError
from steerlab.judges.http import HttpError, RateLimiter, RetryPolicy, call_with_retries, is_loopback_url, request_json


def _host(url: str) -> str:
    import urllib.parse

    return (urllib.parse.urlsplit(url).hostname or "").lower()


class ChatBackend:
    """Shared settings: model id, endpoint, key variable name, timeout, retries, rate limit."""

    kind = "chat"
    default_url = ""
    default_key_env = ""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int = 1024,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        rate_per_s: float | None = None,
    ):
        if not model:
            raise SteerlabError(f"The {self.kind} judge needs a full model id (e.g. --judge-model); none was given.")
        self.model = model
        self.base_url = (base_url or self.default_url).rstrip("/")
        self.api_key_env = api_key_env if api_key_env is not None else self.default_key_env
        # The provider's default key goes only to the provider's own host; any other host gets a key only when
        # the user names its variable (--judge-key-env).
        self._key_allowed = api_key_env is not None or _host(self.base_url) == _host(self.default_url)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(rate_per_s)
        self.rate_per_s = rate_per_s

    def _key(self) -> str | None:
        if not self.api_key_env or not self._key_allowed:
            return None
        key = os.environ.get(self.api_key_env)
        if key and self.base_url.lower().startswith("http://") and not is_loopback_url(self.base_url):
            raise SteerlabError(
                f"Refusing to send the key in ${self.api_key_env} over plain HTTP to {_host(self.base_url)}; "
                "use an https:// judge URL (plain http is fine on loopback only)."
            )
        return key

    @property
    def identity(self) -> str:
        """kind:model@url, plus the temperature when one is set (None sends none: the provider's default)."""
        suffix = f"?temperature={self.temperature:g}" if self.temperature is not None else ""
        return f"{self.kind}:{self.model}@{self.base_url}{suffix}"

    def config(self) -> dict[str, Any]:
        return {
            "backend": self.kind,
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "max_retries": self.retry.max_retries,
            "rate_per_s": self.rate_per_s,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"
        )

    def complete(self, system: str, user: str) -> str:
        raise NotImplementedError

    def _preflight(self, url: str, headers: dict[str, str], served_models) -> None:
        """GET the model list once: unreachable, bad key and unknown model each become one sentence."""
        try:
            data = request_json("GET", url, headers, None, min(self.timeout, 15.0))
        except HttpError as exc:
            if exc.status in (401, 403):
                raise SteerlabError(
                    f"The judge server at {self.base_url} rejected the API key (HTTP {exc.status}); "
                    f"set a valid key in ${self.api_key_env}."
                ) from None
            if exc.status is None:
                raise SteerlabError(
                    f"Cannot reach the judge server at {self.base_url}; start it or fix the judge URL."
                ) from None
            if exc.status == 404:
                return  # some compatible servers have no model list; the first grade will tell
            raise SteerlabError(f"The judge server at {self.base_url} failed its health check: {exc}") from None
        names = served_models(data)
        if names and self.model not in names:
            shown = ", ".join(sorted(names)[:8])
            raise SteerlabError(
                f"The judge server at {self.base_url} does not serve model '{self.model}'; it serves: {shown}."
            )


class OpenAIBackend(ChatBackend):
    """Any OpenAI-compatible chat server: OpenAI, vLLM, llama.cpp, Ollama, `steerlab serve`."""

    kind = "openai"
    default_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def check(self) -> None:
        if "api.openai.com" in self.base_url:
            if not self._key():
                raise SteerlabError(f"The OpenAI judge needs an API key; set ${self.api_key_env}.")
            if not re.search(r"\d{4}-\d{2}-\d{2}$", self.model):
                raise SteerlabError(
                    f"'{self.model}' is a floating alias; pin a dated snapshot such as gpt-4o-mini-2024-07-18 so grades stay reproducible."
                )
        self._preflight(
            f"{self.base_url}/models",
            self._headers(),
            lambda d: {m.get("id") for m in d.get("data", []) if isinstance(m, dict)},
        )

    def complete(self, system: str, user: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        data = call_with_retries(
            lambda: request_json("POST", f"{self.base_url}/chat/completions", self._headers(), body, self.timeout),
            self.retry,
            self.limiter,
        )
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise HttpError(f"The judge server returned no choices[0].message.content: {str(data)[:120]}") from None
        return content or ""


class AnthropicBackend(ChatBackend):
    """Anthropic's Messages API (claude-* model ids, pinned with their date suffix)."""

    kind = "anthropic"
    default_url = "https://api.anthropic.com"
    default_key_env = "ANTHROPIC_API_KEY"
    api_version = "2023-06-01"

    def _headers(self) -> dict[str, str]:
        key = self._key()
        headers = {"anthropic-version": self.api_version}
        if key:
            headers["x-api-key"] = key
        return headers

    def check(self) -> None:
        if not re.search(r"\d{8}$", self.model):
            raise SteerlabError(
                f"'{self.model}' is a floating alias; pin a dated model id such as claude-haiku-4-5-20251001 so grades stay reproducible."
            )
        if not self._key():
            raise SteerlabError(f"The Anthropic judge needs an API key; set ${self.api_key_env}.")
        self._preflight(f"{self.base_url}/v1/models", self._headers(), lambda d: set())

    def complete(self, system: str, user: str) -> str:
        body = {
            "model": self.model,
            "system": system,
            "messages": [{"role": "user", "content": user}],
            "max_tokens": self.max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        data = call_with_retries(
            lambda: request_json("POST", f"{self.base_url}/v1/messages", self._headers(), body, self.timeout),
            self.retry,
            self.limiter,
        )
        try:
            return "".join(part.get("text", "") for part in data["content"] if part.get("type") == "text")
        except (KeyError, TypeError, AttributeError):
            raise HttpError(f"The Anthropic server returned no text content: {str(data)[:120]}") from None
