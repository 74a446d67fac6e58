"""A local OpenAI-compatible chat server that injects faults, for backend tests.

The reply to a request is chosen by the first script marker found in its last user message;
each marker has a list of steps consumed in order (the last one repeats):
("ok", text) | ("429", retry_after) | ("500",) | ("slow", seconds) | ("badjson",) | ("nochoices",).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    def __init__(self, scripts: dict[str, list[tuple]]) -> None:
        self.scripts = scripts
        self.calls: dict[str, int] = defaultdict(int)
        self.authorizations: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def step(self, body: dict[str, Any]) -> tuple:
        text = body["messages"][-1]["content"]
        marker = next((m for m in self.scripts if m in text), None)
        if marker is None:
            return ("ok", "Question: What is shown?\nAnswer: Something.")
        with self._lock:
            index = self.calls[marker]
            self.calls[marker] += 1
        steps = self.scripts[marker]
        return steps[min(index, len(steps) - 1)]

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] = {}) -> None:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization", ""))
                    server.bodies.append(body)
                step = server.step(body)
                kind = step[0]
                if kind == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": str(step[1])})
                elif kind == "500":
                    self._send(500, b'{"error": "boom"}')
                elif kind == "slow":
                    time.sleep(step[1])
                    self._send(200, _reply("late"))
                elif kind == "badjson":
                    self._send(200, b'{"choices": [{"message": ')
                elif kind == "nochoices":
                    self._send(200, b'{"object": "chat.completion", "choices": []}')
                else:
                    self._send(200, _reply(step[1]))

        return Handler


def _reply(text: str) -> bytes:
    return json.dumps({"object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": 7}}).encode()
