"""`openai` backend: any OpenAI-compatible chat endpoint (vLLM or llama.cpp server, hosted APIs).

Stdlib HTTP only. Requests of a batch go out concurrently, bounded per worker process by
`max_concurrency`. A 429, a 5xx, a timeout, a connection error or a reply that is not the
expected JSON is retried up to `max_retries` times with exponential backoff and jitter
(a 429's Retry-After is honoured, capped by `backoff_max_s`); other 4xx are not retried.
A request that still fails comes back as a `Generation` with `error` set. Every HTTP
attempt counts against `request_budget`. The API key is read from the environment variable
the recipe names, sent only in the Authorization header, and never put in an error text.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Optional, Sequence

from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest
from llavaforge.config.synthesize import OpenAiBackendConfig, SamplingConfig

log = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class _Attempt(NamedTuple):
    generation: Optional[Generation]  # set on success
    failure: str = ""  # why it failed (no secrets)
    retryable: bool = False
    retry_after: Optional[float] = None  # seconds the server asked us to wait


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """A Retry-After header (seconds or an HTTP date) in seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step = min(cap, base * 2 ** attempt)
    return step / 2 + rng() * step / 2


def _read_reply(payload: bytes) -> Generation:
    data = json.loads(payload)
    content = data["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("message content is not text")
    usage = data.get("usage") or {}
    return Generation(text=content, tokens_in=int(usage.get("prompt_tokens") or 0),
                      tokens_out=int(usage.get("completion_tokens") or 0))


class OpenAiClient:
    """Sends chat completions with retries, a concurrency bound and a request budget."""

    def __init__(self, config: OpenAiBackendConfig, model: str, max_new_tokens: int,
                 sampling: SamplingConfig, api_key: Optional[str],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self._api_key = api_key
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    def __repr__(self) -> str:  # never show the key
        return f"OpenAiClient(url={self.url!r}, model={self.model!r})"

    def body(self, request: LlmRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(request.messages),
                                "max_tokens": self.max_new_tokens, "temperature": self.sampling.temperature}
        if self.sampling.temperature > 0:
            body.update(top_p=self.sampling.top_p, seed=request.seed)
        return body

    def _take_budget(self) -> bool:
        with self._lock:
            if self.config.request_budget is not None and self.requests_sent >= self.config.request_budget:
                return False
            self.requests_sent += 1
            return True

    def _attempt(self, data: bytes) -> _Attempt:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with self._slots, urllib.request.urlopen(http, timeout=self.config.timeout_s) as reply:
                payload = reply.read()
        except urllib.error.HTTPError as e:
            e.close()
            retryable = e.code in RETRYABLE_STATUS or e.code >= 500
            return _Attempt(None, f"HTTP {e.code}", retryable, retry_after_seconds(e.headers.get("Retry-After")))
        except (TimeoutError, socket.timeout):
            return _Attempt(None, "timeout", True)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            kind = "timeout" if isinstance(reason, (TimeoutError, socket.timeout)) else type(reason).__name__
            return _Attempt(None, f"connection failed ({kind})", True)
        try:
            return _Attempt(_read_reply(payload))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return _Attempt(None, f"malformed reply ({type(e).__name__})", True)

    def complete(self, request: LlmRequest) -> Generation:
        data = json.dumps(self.body(request)).encode()
        failures: list[str] = []
        for attempt in range(self.config.max_retries + 1):
            if not self._take_budget():
                failures.append("request budget exhausted")
                break
            result = self._attempt(data)
            if result.generation is not None:
                return result.generation
            failures.append(result.failure)
            if not result.retryable or attempt == self.config.max_retries:
                break
            delay = backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_max_s)
            if result.retry_after is not None:
                delay = min(max(delay, result.retry_after), self.config.backoff_max_s)
            log.info("openai backend: %s, retry %d in %.1f s", result.failure, attempt + 1, delay)
            self._sleep(delay)
        return Generation(text="", tokens_in=0, tokens_out=0,
                          error=f"gave up after {len(failures)} attempt(s): {'; '.join(failures)}")

    def complete_all(self, requests: Sequence[LlmRequest]) -> list[Generation]:
        workers = max(1, min(self.config.max_concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.complete, requests))


def read_api_key(env_name: Optional[str]) -> Optional[str]:
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(f"environment variable {env_name} (named by synthesize.openai.api_key_env) is not "
                           f"set; set synthesize.openai.api_key_env to null for endpoints without a key")
    return key


class OpenAiLlmHandler(LlmHandler[OpenAiClient]):
    backend = "openai"
    thread_safe = True  # bounded concurrency and the budget are guarded inside the client

    def load(self) -> OpenAiClient:
        return OpenAiClient(self.config, self.model_name, self.max_new_tokens, self.sampling,
                            read_api_key(self.config.api_key_env))

    def generate(self, model: OpenAiClient, requests: Sequence[LlmRequest]) -> list[Generation]:
        return model.complete_all(requests)
