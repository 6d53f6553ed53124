"""`/v1/users/{user}/profile` and `/concepts`: a key reaches its own robot's users only; the user sees, corrects
and deletes what the assistant keeps about them; forgetting the user deletes it all."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'ilearn[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from helpers import make_png  # noqa: E402
from ilearn.config import Config  # noqa: E402
from ilearn.runtime import build_runtime  # noqa: E402
from ilearn.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("profiles")
    config = Config(home=str(home)).override(model={"backend": "tiny", "max_new_tokens": 4},
                                             feedback={"method": "lexical"})
    app = create_app(build_runtime(config))
    keys = app.state.service.keys
    tokens = {"r1": keys.create("r1")[1], "r2": keys.create("r2")[1], "admin": keys.create("site", "admin")[1]}
    with TestClient(app) as client:
        yield client, {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}


def test_learned_from_the_conversation_shown_and_corrected(api) -> None:
    client, auth = api
    turn = client.post("/v1/turns", json={"user": "ana", "text": "I'm a nurse, please keep it short"},
                       headers=auth["r1"])
    assert turn.status_code == 200 and turn.json()["kind"] == "reaction"
    shown = client.get("/v1/users/ana/profile", headers=auth["r1"]).json()
    assert (shown["occupation"], shown["expertise"], shown["answer_length"]) == ("nurse", "expert", "short")
    assert "nurse" in shown["summary"]
    put = client.put("/v1/users/ana/profile", json={"occupation": "pharmacist", "expertise": "expert",
                                                    "accessibility": ["low vision"]}, headers=auth["r1"])
    assert put.status_code == 200 and put.json()["answer_length"] is None  # a PUT replaces the whole profile
    assert client.get("/v1/users/ana/profile", headers=auth["r1"]).json()["occupation"] == "pharmacist"
    cleared = client.delete("/v1/users/ana/profile", headers=auth["r1"])
    assert cleared.status_code == 200 and cleared.json()["summary"] == ""


def test_a_key_sees_only_its_robots_users(api) -> None:
    client, auth = api
    client.put("/v1/users/bea/profile", json={"name": "Bea"}, headers=auth["r1"])
    other = client.get("/v1/users/bea/profile", headers=auth["r2"]).json()
    assert other["name"] is None and other["robot"] == "r2"  # r2's bea is another user
    assert client.get("/v1/users/bea/profile?robot=r1", headers=auth["r2"]).status_code == 404
    assert client.get("/v1/users/bea/profile?robot=r1", headers=auth["admin"]).json()["name"] == "Bea"
    assert client.get("/v1/users/bea/profile").status_code == 401


def test_bad_profiles_are_refused(api) -> None:
    client, auth = api
    for body in ({"gender": "female"}, {"age_group": "toddler"}, {"accessibility": ["telepathy"]}, {"name": ""}):
        assert client.put("/v1/users/cy/profile", json=body, headers=auth["r1"]).status_code == 422


def test_concepts_listed_renamed_and_deleted(api) -> None:
    client, auth = api
    photo = base64.b64encode(make_png((200, 30, 30))).decode()
    taught = client.post("/v1/turns", json={"user": "dan", "text": "This is my mug, it's called Bobby",
                                            "image_base64": photo}, headers=auth["r1"])
    assert taught.status_code == 200 and "Bobby" in taught.json()["text"]
    (concept,) = client.get("/v1/users/dan/concepts", headers=auth["r1"]).json()["concepts"]
    assert (concept["kind"], concept["name"], concept["views"]) == ("mug", "Bobby", 1)
    assert client.get("/v1/users/dan/concepts", headers=auth["r2"]).json()["concepts"] == []
    assert client.patch(f"/v1/users/dan/concepts/{concept['id']}", json={"name": "Rex"},
                        headers=auth["r2"]).status_code == 404
    renamed = client.patch(f"/v1/users/dan/concepts/{concept['id']}", json={"name": "Rex"}, headers=auth["r1"])
    assert renamed.json()["concepts"][0]["name"] == "Rex"
    seen = client.post("/v1/turns", json={"user": "dan", "text": "What is this?", "image_base64": photo},
                       headers=auth["r1"]).json()
    assert seen["text"] == "That's Rex, your mug."
    assert client.delete(f"/v1/users/dan/concepts/{concept['id']}", headers=auth["r1"]).json()["concepts"] == []
    assert client.delete(f"/v1/users/dan/concepts/{concept['id']}", headers=auth["r1"]).status_code == 404


def test_forgetting_the_user_deletes_profile_and_concepts(api) -> None:
    client, auth = api
    photo = base64.b64encode(make_png((30, 30, 200), shape="square")).decode()
    client.post("/v1/turns", json={"user": "eve", "text": "These are my pills", "image_base64": photo},
                headers=auth["r1"])
    client.put("/v1/users/eve/profile", json={"age_group": "senior"}, headers=auth["r1"])
    assert client.delete("/v1/robots/r1/users/eve", headers=auth["admin"]).status_code == 200
    assert client.get("/v1/users/eve/profile", headers=auth["r1"]).json()["age_group"] is None
    assert client.get("/v1/users/eve/concepts", headers=auth["r1"]).json()["concepts"] == []
