"""Answers each GET as ROUTES says: JSON ``{"/path": [status, {"Header": "value"}, "body"]}``.

In a header or body, ``{NAME}`` is the value of the environment variable NAME (so a body can
carry the image's secret). Paths not in ROUTES answer 404.
"""

import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = json.loads(os.environ.get("ROUTES", "{}"))


def _filled(text: str) -> str:
    return re.sub(r"\{([A-Z_][A-Z0-9_]*)\}", lambda m: os.environ.get(m[1], ""), text)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, headers, body = ROUTES.get(self.path, [404, {}, "not found"])
        data = _filled(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, _filled(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    print("listening on :8000", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
