"""Who sees what: user ids namespaced by the key's robot.

A request's user `ana` sent with a key of robot `r1` is the user `r1:ana` everywhere in the store; robot names
cannot contain ':', so no key reaches another robot's users, their sessions or their events. The deployment
itself stays one robot (`Config.robot_id`) with one model: what its users teach privately stays theirs, shared
(corroborated) events serve every user of the deployment, and learning trains on the deployment's events.
"""

from __future__ import annotations

from ilearn.errors import NotFound
from ilearn.serve.keys import ApiKey
from ilearn.types import Session

SEP = ":"


def user_id(robot: str, user: str) -> str:
    """The stored user id of `user` of `robot`."""
    return f"{robot}{SEP}{user}"


def split_user(stored: str) -> tuple[str, str]:
    """(robot, user) of a stored user id (robot "" for ids made outside the service)."""
    robot, sep, user = stored.partition(SEP)
    return (robot, user) if sep else ("", stored)


def can_see(key: ApiKey, stored_user_id: str) -> bool:
    """An admin key sees every robot; a robot key only its own robot's users."""
    return key.admin or split_user(stored_user_id)[0] == key.robot


def check_session(key: ApiKey, session: Session) -> Session:
    """The session if the key may see it, else NotFound (the same answer as for an unknown id: no data leaks)."""
    if not can_see(key, session.user_id):
        raise NotFound(f"unknown session {session.id!r}")
    return session


__all__ = ["can_see", "check_session", "split_user", "user_id"]
