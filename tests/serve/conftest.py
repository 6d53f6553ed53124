"""One tiny-model service per test module (building it takes seconds), keys for two robots and an admin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from serve_helpers import require

require("fastapi", "serve")

from fastapi.testclient import TestClient  # noqa: E402
from serve_helpers import b64, data_url, tiny_config  # noqa: E402

from helpers import make_png  # noqa: E402
from ilearn.runtime import build_runtime  # noqa: E402
from ilearn.serve import create_app  # noqa: E402


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
