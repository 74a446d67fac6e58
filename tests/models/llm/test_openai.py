import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llavaforge.models.llm.base import LlmRequest
from llavaforge.config.synthesize import OpenAiBackendConfig, SamplingConfig
from llavaforge.models.llm.openai_backend import (OpenAiClient, OpenAiLlmHandler, backoff_delay, read_api_key,
                                                  retry_after_seconds)
from tests.models.llm.fault_server import FaultServer

KEY = "sk-test-never-print-me-42"
GOOD = "Question: Is it red?\nAnswer: Yes."


def request(marker: str, seed: int = 0) -> LlmRequest:
    return LlmRequest(messages=({"role": "system", "content": "s"}, {"role": "user", "content": marker}), seed=seed)


def client(server, sleeps, **overrides) -> OpenAiClient:
    config = OpenAiBackendConfig(base_url=server.base_url, timeout_s=0.5, max_retries=3, backoff_base_s=0.1,
                                 backoff_max_s=5.0, **overrides)
    return OpenAiClient(config, "test-model", 32, SamplingConfig(), KEY, sleep=sleeps.append)


@pytest.mark.parametrize("fault", [("429", 2), ("500",), ("slow", 1.5), ("badjson",), ("nochoices",)])
def test_each_fault_is_retried_then_succeeds(fault):
    sleeps = []
    with FaultServer({"M": [fault, ("ok", GOOD)]}) as server:
        generation = client(server, sleeps).complete(request("M"))
    assert generation.error == "" and generation.text == GOOD
    assert (generation.tokens_in, generation.tokens_out) == (11, 7)
    assert server.calls["M"] == 2 and len(sleeps) == 1
    if fault[0] == "429":
        assert sleeps[0] >= 2  # Retry-After honoured
    assert server.authorizations == [f"Bearer {KEY}"] * 2


def test_a_request_that_keeps_failing_gives_up_after_max_retries_without_leaking_the_key():
    sleeps = []
    with FaultServer({"M": [("500",)]}) as server:
        generation = client(server, sleeps).complete(request("M"))
    assert server.calls["M"] == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[2] <= 5.0  # backoff grows, capped
    assert generation.error.startswith("gave up after 4 attempt(s): HTTP 500")
    assert KEY not in generation.error and KEY not in repr(client(server, []))


def test_client_errors_are_not_retried():
    sleeps = []
    with FaultServer({"M": [("ok", GOOD)]}) as server:
        config = OpenAiBackendConfig(base_url=server.base_url + "/missing", max_retries=3)
        generation = OpenAiClient(config, "m", 8, SamplingConfig(), None, sleep=sleeps.append).complete(request("M"))
    assert "HTTP 404" in generation.error and sleeps == []


def test_request_budget_counts_every_attempt():
    with FaultServer({"FAIL": [("500",)]}) as server:
        c = client(server, [], request_budget=5)
        results = [c.complete(request("FAIL")), c.complete(request("FAIL"))]
    assert server.calls["FAIL"] == 5 and c.requests_sent == 5
    assert "request budget exhausted" in results[1].error


def test_concurrent_batch_keeps_order_and_sends_seeds_only_when_sampling():
    with FaultServer({}) as server:
        config = OpenAiBackendConfig(base_url=server.base_url, max_concurrency=4)
        sampled = OpenAiClient(config, "m", 8, SamplingConfig(temperature=0.7), None)
        results = sampled.complete_all([request(f"r{i}", seed=i) for i in range(10)])
        greedy = OpenAiClient(config, "m", 8, SamplingConfig(), None)
        greedy.complete(request("g"))
    assert len(results) == 10 and all(r.text.startswith("Question:") for r in results)
    assert sorted(b["seed"] for b in server.bodies[:10]) == list(range(10))
    assert "seed" not in server.bodies[-1] and server.bodies[-1]["temperature"] == 0.0


def test_retry_after_and_backoff_helpers():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert backoff_delay(0, 1.0, 60, rng=lambda: 0.0) == 0.5
    assert backoff_delay(10, 1.0, 60, rng=lambda: 1.0) == 60


def test_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("LF_KEY_VAR", KEY)
    assert read_api_key("LF_KEY_VAR") == KEY
    monkeypatch.delenv("LF_KEY_VAR")
    with pytest.raises(RuntimeError, match="LF_KEY_VAR") as err:
        OpenAiLlmHandler("m", OpenAiBackendConfig(api_key_env="LF_KEY_VAR"), 8, SamplingConfig()).load_model()
    assert KEY not in str(err.value)
    assert read_api_key(None) is None


class _Recorder(FaultServer):
    """A second origin: records what reaches it."""


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_to_another_origin_never_receives_the_key(status):
    with _Recorder({}) as elsewhere, _RedirectServer(status, elsewhere.base_url + "/chat/completions") as redirecting:
        config = OpenAiBackendConfig(base_url=redirecting.base_url, timeout_s=2, max_retries=2, request_budget=10)
        generation = OpenAiClient(config, "m", 8, SamplingConfig(), KEY, sleep=lambda s: None).complete(request("M"))
    assert generation.error and "not followed" in generation.error and KEY not in generation.error
    assert elsewhere.authorizations == [] and elsewhere.bodies == []  # nothing was sent there
    assert redirecting.hits == 1  # not retried: a redirect will not go away


def test_a_same_origin_307_is_followed_with_the_key_and_counts_against_the_budget():
    with _RedirectServer(307, None) as redirecting:
        config = OpenAiBackendConfig(base_url=redirecting.base_url, timeout_s=2, max_retries=0, request_budget=1)
        client_ = OpenAiClient(config, "m", 8, SamplingConfig(), KEY, sleep=lambda s: None)
        assert "budget" in client_.complete(request("M")).error  # the follow-up would be a second request
        client_.config = config.model_copy(update={"request_budget": 2})
        client_.requests_sent = 0
        assert client_.complete(request("M")).text == "same origin ok"
    assert redirecting.authorizations[-1] == f"Bearer {KEY}"


def test_a_trickling_server_is_cut_off_at_the_deadline():
    with _TrickleServer() as trickle:
        config = OpenAiBackendConfig(base_url=trickle.base_url, timeout_s=1.0, max_retries=1, request_budget=5)
        started = time.monotonic()
        generation = OpenAiClient(config, "m", 8, SamplingConfig(), KEY, sleep=lambda s: None).complete(request("M"))
        elapsed = time.monotonic() - started
    assert "timeout" in generation.error and trickle.hits == 2
    assert elapsed < 2 * 1.0 + 1.0  # two attempts of at most 1 s each, plus scheduling slack


class _CountingHandler(BaseHTTPRequestHandler):
    """Quiet; `take_request` reads the body and counts the request on its server."""

    def log_message(self, *args) -> None:
        pass

    def take_request(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        owner = self.server.owner
        owner.hits += 1
        owner.authorizations.append(self.headers.get("Authorization", ""))


class _LocalServer:
    def __init__(self, handler) -> None:
        self.hits = 0
        self.authorizations: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _RedirectServer(_LocalServer):
    """Answers every POST with a redirect: to `location`, or (None) to itself at another path,
    which it then answers itself."""

    def __init__(self, status: int, location) -> None:
        class Handler(_CountingHandler):
            def do_POST(self) -> None:
                self.take_request()
                if self.path == "/v1/moved/chat/completions":
                    payload = json.dumps({"choices": [{"message": {"content": "same origin ok"}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(status)
                self.send_header("Location", location or "/v1/moved/chat/completions")
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)


class _TrickleServer(_LocalServer):
    """Sends its headers, then one byte of the body every 0.3 s, forever."""

    def __init__(self) -> None:
        class Handler(_CountingHandler):
            def do_POST(self) -> None:
                self.take_request()
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(200):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.3)
                except OSError:
                    pass

        super().__init__(Handler)
