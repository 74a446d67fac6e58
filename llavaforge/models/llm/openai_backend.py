"""`openai` backend: any OpenAI-compatible chat endpoint (vLLM or llama.cpp server, hosted APIs).

Stdlib HTTP only. Requests of a batch go out concurrently, bounded per worker process by
`max_concurrency`. A 429, a 5xx, a timeout, a connection error or a reply that is not the
expected JSON is retried up to `max_retries` times with exponential backoff and jitter
(a 429's Retry-After is honoured, capped by `backoff_max_s`); other 4xx are not retried.
A request that still fails comes back as a `Generation` with `error` set. Every HTTP
attempt counts against `request_budget`. The API key is read from the environment variable
the recipe names, sent only in the Authorization header, and never put in an error text.

`timeout_s` is a deadline for one attempt as a whole (connect, send, headers, body): a server
that trickles its reply is cut off at the deadline, not merely after a quiet interval. A
redirect is followed only to the same origin (scheme, host, port) and only as a 307/308 that
keeps the POST; any other redirect fails the request without sending anything (nor the key)
to the new location.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Optional, Sequence

from llavaforge.models.llm.base import Generation, LlmHandler, LlmRequest
from llavaforge.config.synthesize import OpenAiBackendConfig, SamplingConfig

log = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
FOLLOWED_REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 3


class DeadlineExceeded(TimeoutError):
    pass


def _origin(url: str) -> tuple[str, Optional[str], Optional[int]]:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, parts.port or default


def post_with_deadline(url: str, data: bytes, headers: dict[str, str], deadline: float) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one POST that must be done by `deadline` (time.monotonic).
    A timer shuts the socket down at the deadline, so a blocked read returns at once."""
    parts = urllib.parse.urlsplit(url)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded()
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=remaining)
    expired = threading.Event()
    sockets: list[socket.socket] = []

    def cut() -> None:
        expired.set()
        for sock in sockets:  # the connection hands its socket to the reply: keep our own reference
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(remaining, cut)
    timer.daemon = True
    timer.start()
    try:
        connection.connect()
        sockets.append(connection.sock)
        if expired.is_set():
            cut()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path or "/", body=data, headers=headers)
        reply = connection.getresponse()
        return reply.status, reply.headers, reply.read()
    except (OSError, http.client.HTTPException):
        if expired.is_set() or time.monotonic() >= deadline:
            raise DeadlineExceeded() from None
        raise
    finally:
        timer.cancel()
        connection.close()


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
        url, deadline = self.url, time.monotonic() + self.config.timeout_s
        try:
            with self._slots:
                for redirects in range(MAX_REDIRECTS + 1):
                    status, reply_headers, payload = post_with_deadline(url, data, headers, deadline)
                    if not 300 <= status < 400:
                        break
                    target = urllib.parse.urljoin(url, reply_headers.get("Location") or "")
                    if status not in FOLLOWED_REDIRECTS or _origin(target) != _origin(self.url):
                        return _Attempt(None, f"HTTP {status} redirect to another place not followed (the API key "
                                              f"is sent to the configured origin only)")
                    if redirects == MAX_REDIRECTS or not self._take_budget():
                        return _Attempt(None, f"HTTP {status}: too many redirects or request budget exhausted")
                    url = target
        except (DeadlineExceeded, TimeoutError, socket.timeout):
            return _Attempt(None, f"timeout (no complete reply within {self.config.timeout_s:g} s)", True)
        except (ConnectionError, OSError, http.client.HTTPException) as e:
            return _Attempt(None, f"connection failed ({type(e).__name__})", True)
        if status >= 400:
            retryable = status in RETRYABLE_STATUS or status >= 500
            return _Attempt(None, f"HTTP {status}", retryable, retry_after_seconds(reply_headers.get("Retry-After")))
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


def read_api_key(env_name: Optional[str], field: str = "synthesize.openai.api_key_env") -> Optional[str]:
    """The key from the environment variable the recipe `field` names (None: no key)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(f"environment variable {env_name} (named by {field}) is not "
                           f"set; set {field} to null for endpoints without a key")
    return key


class OpenAiLlmHandler(LlmHandler[OpenAiClient]):
    backend = "openai"
    thread_safe = True  # bounded concurrency and the budget are guarded inside the client

    def load(self) -> OpenAiClient:
        return OpenAiClient(self.config, self.model_name, self.max_new_tokens, self.sampling,
                            read_api_key(self.config.api_key_env))

    def generate(self, model: OpenAiClient, requests: Sequence[LlmRequest]) -> list[Generation]:
        return model.complete_all(requests)
