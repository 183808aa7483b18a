"""A service slow to answer; its pace comes from the environment.

DELAY    seconds each GET waits before it answers (default 3)
TRICKLE  seconds over which the body is sent, a byte at a time after the headers (default 0)

Every path answers 200 {"status": "ready", "padding": "..."}; the padding makes the body
long enough to trickle.
"""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"status": "ready", "padding": "." * 40}).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(float(os.environ.get("DELAY", 3)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        trickle = float(os.environ.get("TRICKLE", 0))
        if trickle <= 0:
            self.wfile.write(BODY)
            return
        for byte in BODY:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(trickle / len(BODY))

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    print("listening on :8000", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
