"""A small service for readiness tests; behaviour comes from the environment.

READY_AFTER   seconds until /health/ready turns 200 (503 with the loading components before)
STUCK         "1": /health/ready never turns ready
EXIT_AFTER    seconds after which the process exits with code 3 ("fatal: ..." on stderr)
UNHEALTHY_AFTER  seconds after which /health answers 500 (the HEALTHCHECK turns unhealthy)
WRITE_TO      a path written at start; a read-only root filesystem makes that fail loudly
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()


def _after(name: str) -> bool:
    value = os.environ.get(name)
    return value is not None and time.monotonic() - STARTED >= float(value)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            code = 500 if _after("UNHEALTHY_AFTER") else 200
            self._json(code, {"status": "ok" if code == 200 else "failing"})
        elif self.path == "/health/live":
            self._json(200, {"status": "alive"})
        elif self.path == "/health/ready":
            waited = time.monotonic() - STARTED
            ready = os.environ.get("STUCK") != "1" and waited >= float(
                os.environ.get("READY_AFTER", 0)
            )
            if ready:
                self._json(200, {"status": "ready", "components": {"model": "loaded"}})
            else:
                self._json(503, {"status": "not_ready", "components": {"model": "loading"}})
        else:
            self._json(404, {"error": "not found"})

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def _exit_later(seconds: float) -> None:
    time.sleep(seconds)
    print("fatal: model worker crashed", file=sys.stderr, flush=True)
    os._exit(3)


def main() -> None:
    if os.environ.get("WRITE_TO"):
        with open(os.environ["WRITE_TO"], "w") as handle:
            handle.write("started\n")
    if os.environ.get("EXIT_AFTER"):
        threading.Thread(target=_exit_later, args=(float(os.environ["EXIT_AFTER"]),)).start()
    print("listening on :8000", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()


if __name__ == "__main__":
    main()
