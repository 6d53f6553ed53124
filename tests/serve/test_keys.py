"""API keys: stored hashed, verified, revoked; the rate limiter; the `ilearn keys` commands."""

from __future__ import annotations

import pytest

from ilearn.errors import InvalidInput, NotFound
from ilearn.serve.keys import KeyLimits, KeyStore, RateLimiter


def test_keys_are_stored_hashed_and_verified(tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    row, token = keys.create("r1", "robot", name="kitchen robot")
    admin, admin_token = keys.create("site", "admin")
    keys.close()
    secret = token.split("_", 2)[2]  # ilk_<id>_<secret>; the secret itself may hold "_"
    assert secret.encode() not in (tmp_path / "keys.db").read_bytes()  # only its digest is stored
    keys = KeyStore(tmp_path / "keys.db")
    found = keys.verify(token)
    assert found == row and found.robot == "r1" and not found.admin and found.name == "kitchen robot"
    assert keys.verify(admin_token).admin
    assert keys.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # a wrong secret
    assert keys.verify("") is None and keys.verify("Bearer " + token) is None
    assert [k.id for k in keys.list()] == [row.id, admin.id]
    keys.revoke(row.id)
    assert keys.verify(token) is None and [k.id for k in keys.list()] == [admin.id]
    assert len(keys.list(include_revoked=True)) == 2
    with pytest.raises(NotFound):
        keys.revoke(row.id)


def test_bad_robot_role_or_limits_are_refused(tmp_path):
    keys = KeyStore(tmp_path / "keys.db")
    for robot in ["", "a:b", "has space", "x" * 65]:
        with pytest.raises(InvalidInput):
            keys.create(robot)
    with pytest.raises(InvalidInput, match="role"):
        keys.create("r1", "root")
    with pytest.raises(InvalidInput, match="rate_per_minute"):
        KeyLimits(rate_per_minute=0)


def test_rate_limiter_refills_over_time(tmp_path):
    key, _ = KeyStore(tmp_path / "keys.db").create("r1", limits=KeyLimits(rate_per_minute=60))
    limiter = RateLimiter()
    assert all(limiter.take(key, now=100.0) == 0 for _ in range(60))
    assert limiter.take(key, now=100.0) == pytest.approx(1.0)  # one request a second comes back
    assert limiter.take(key, now=100.5) == pytest.approx(0.5)
    assert limiter.take(key, now=101.0) == 0
