"""Helpers of the service tests (import as `from serve_helpers import ...`): settings, images, a live server."""

from __future__ import annotations

import base64
import importlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ilearn.config import Config
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings


def require(module: str, extra: str):
    """The module, or a skip naming the extra to install; under CI (the variable CI set) a missing one fails."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"the {extra} extra is not installed: pip install 'ilearn[{extra}]'")


def tiny_config(home) -> Config:
    return Config(home=str(home)).override(
        model={"backend": "tiny", "max_new_tokens": 4}, feedback={"method": "lexical"},
        clarify={"facets": facet_settings(PHARMACY_FACETS)}, learn={"max_steps": 2})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + b64(data)


@contextmanager
def live_server(app, *, graceful_s: int = 30) -> Iterator[tuple[object, str]]:
    """`app` served by a real uvicorn on a free loopback port, in a thread: (server, base URL)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_s))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(120)
        sock.close()
