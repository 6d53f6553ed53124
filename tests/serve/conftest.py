"""One tiny-model service per test module (building it takes seconds), keys for two robots and an admin."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from helpers import make_png  # noqa: E402
from ilearn.config import Config  # noqa: E402
from ilearn.dialogue.clarify import PHARMACY_FACETS, facet_settings  # noqa: E402
from ilearn.runtime import build_runtime  # noqa: E402
from ilearn.serve import create_app  # noqa: E402


def tiny_config(home) -> Config:
    return Config(home=str(home)).override(
        model={"backend": "tiny", "max_new_tokens": 4}, feedback={"method": "lexical"},
        clarify={"facets": facet_settings(PHARMACY_FACETS)}, learn={"max_steps": 2})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + b64(data)


@dataclass
class Served:
    client: TestClient
    app: object
    keys: dict[str, str]

    b64 = staticmethod(b64)
    data_url = staticmethod(data_url)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def turn(self, who: str, user: str, text: str, image: bytes | None = None, session_id: str | None = None):
        body = {"user": user, "text": text}
        if image is not None:
            body["image_base64"] = b64(image)
        if session_id is not None:
            body["session_id"] = session_id
        return self.client.post("/v1/turns", json=body, headers=self.auth(who))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    app = create_app(build_runtime(tiny_config(home)))
    store = app.state.service.keys
    keys = {"r1": store.create("r1")[1], "r2": store.create("r2")[1], "admin": store.create("site", "admin")[1]}
    with TestClient(app) as client:
        yield Served(client, app, keys)


@pytest.fixture
def red() -> bytes:
    return make_png((200, 30, 30))


@pytest.fixture
def blue() -> bytes:
    return make_png((30, 30, 200), shape="square")
