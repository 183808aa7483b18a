"""HTTP answers to the URLs a test got from ``container.url``, kept as the test's evidence.

A plain test such as ``requests.get(container.url(8000, "/health"), timeout=5)`` carries no
check, so the answer itself is its evidence. While installed, every ``requests`` transport
(``HTTPAdapter.send``, which all of ``requests`` goes through) reports answers to URLs under a
base that :func:`pytest_imagecheck.evidence.watch_url` registered for the running test; every
other request passes untouched.
"""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters

from .evidence import observe, watched

_original: Any = None


def install() -> None:
    """Start watching (idempotent): wrap ``requests.adapters.HTTPAdapter.send``."""
    global _original
    if _original is not None:
        return
    _original = requests.adapters.HTTPAdapter.send

    def send(adapter: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        env = watched(request.url or "")
        if env is None:
            return _original(adapter, request, *args, **kwargs)
        subject = f"{request.method} {request.url}"
        try:
            response = _original(adapter, request, *args, **kwargs)
        except requests.RequestException as exc:
            observe("http", subject, f"no answer ({type(exc).__name__})", secrets_of=env)
            raise
        # A streamed body is the test's to read; otherwise requests reads it next anyway.
        body = "" if kwargs.get("stream") else " " + response.text
        observe("http", subject, f"{response.status_code}{body}", secrets_of=env)
        return response

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign, assignment]


def uninstall() -> None:
    """Stop watching: put ``HTTPAdapter.send`` back."""
    global _original
    if _original is not None:
        requests.adapters.HTTPAdapter.send = _original  # type: ignore[method-assign]
        _original = None
