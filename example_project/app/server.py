"""AutoVoice example service: a voice API whose readiness waits for a (simulated) model load.

Standard library only. /health and /health/live answer at once; /health/ready answers 503
with the components still loading, then 200 once the model is loaded.
"""

import json
import os
import signal
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_LOAD_SECONDS = float(os.environ.get("AUTOVOICE_MODEL_LOAD_SECONDS", "3"))
PORT = int(os.environ.get("AUTOVOICE_PORT", "5000"))
components = {"model": "loading", "synthesizer": "loading", "api": "ready"}


def load_model() -> None:
    """Stand-in for loading weights: takes a while, writes a cache file under $TMPDIR."""
    time.sleep(MODEL_LOAD_SECONDS)
    with tempfile.NamedTemporaryFile(prefix="autovoice-", suffix=".cache", delete=False) as f:
        f.write(b"warm\n")
    components.update(model="loaded", synthesizer="ready")
    print(f"model loaded in {MODEL_LOAD_SECONDS:.1f}s, cache {f.name}", flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "autovoice/1.0"

    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, {"status": "ok", "components": components})
        elif self.path == "/health/live":
            self.reply(200, {"status": "alive"})
        elif self.path == "/health/ready":
            loading = sorted(name for name, state in components.items() if state == "loading")
            if loading:
                self.reply(503, {"status": "not_ready", "loading": loading})
            else:
                self.reply(200, {"status": "ready", "components": components})
        else:
            self.reply(404, {"error": f"no route {self.path}"})

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=load_model, daemon=True).start()
    print(f"autovoice listening on :{PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
