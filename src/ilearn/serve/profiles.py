"""`/v1/users/{user}/...`: a user's profile and personal concepts (`ilearn.users`), shown, corrected and deleted.

A robot key reaches only its own robot's users (`scope.user_id`: the user `ana` of key `r1` is `r1:ana`); an
admin key names the robot with `?robot=`. A user nobody told anything about has an empty profile and no
concepts: the answer is the same as for an unknown user, so nothing tells whether a user exists. Writes hold the
user's gate like a turn does, so they never race with forgetting the user.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ilearn.errors import NotFound
from ilearn.serve.auth import Caller, ServiceDep
from ilearn.serve.errors import responses
from ilearn.serve.keys import ApiKey
from ilearn.serve.scope import user_id
from ilearn.users.concepts import Concept
from ilearn.users.profiles import Profile

router = APIRouter(prefix="/v1/users/{user}", tags=["users"])

UserPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:-]+$",
                               description="the user within the key's robot")]
RobotQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                                         description="the user's robot (admin keys only; default: the key's)")]
Need = Literal["low vision", "hearing", "dyslexia", "colour blindness", "plain language"]


class ProfileIn(BaseModel):
    """A whole profile (a field left out is cleared). Protected attributes have no field."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=64, description="what the user wants to be called")
    age_group: Literal["child", "teen", "adult", "senior"] | None = None
    expertise: Literal["newcomer", "general", "expert"] | None = None
    occupation: str | None = Field(None, min_length=1, max_length=64)
    language: str | None = Field(None, min_length=1, max_length=64, description="answers in this language")
    accessibility: list[Need] = Field(default_factory=list)
    answer_length: Literal["short", "normal", "detailed"] | None = None


class ProfileOut(ProfileIn):
    model_config = ConfigDict(extra="forbid")
    user: str
    robot: str
    summary: str = Field(description="the profile in the words the assistant reads it back with")


class ConceptOut(BaseModel):
    id: str
    kind: str
    name: str | None
    views: int = Field(description="photos that taught it")
    created: float


class ConceptsOut(BaseModel):
    user: str
    robot: str
    concepts: list[ConceptOut]


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)


def _stored(key: ApiKey, user: str, robot: str | None) -> tuple[str, str]:
    """(robot, stored user id) the key may reach (NotFound for another robot's, as for an unknown user)."""
    robot = robot or key.robot
    if robot != key.robot and not key.admin:
        raise NotFound(f"unknown user {user!r}")
    return robot, user_id(robot, user)


def _profile_out(user: str, robot: str, profile: Profile) -> ProfileOut:
    return ProfileOut(user=user, robot=robot, summary=profile.summary(), **profile.to_dict())


def _concepts_out(user: str, robot: str, concepts: list[Concept]) -> ConceptsOut:
    return ConceptsOut(user=user, robot=robot, concepts=[
        ConceptOut(id=c.id, kind=c.kind, name=c.name, views=c.views, created=c.created) for c in concepts])


@router.get("/profile", response_model=ProfileOut, responses=responses(404))
def read_profile(user: UserPath, key: Caller, svc: ServiceDep, robot: RobotQuery = None) -> ProfileOut:
    """What the user told about themselves (empty when nothing)."""
    robot, stored = _stored(key, user, robot)
    return _profile_out(user, robot, svc.assistant.personal.profiles.get(stored))


@router.put("/profile", response_model=ProfileOut, responses=responses(400, 404))
def write_profile(user: UserPath, body: ProfileIn, key: Caller, svc: ServiceDep,
                  robot: RobotQuery = None) -> ProfileOut:
    """Replace the user's profile (the user corrects it, or the robot's software sets it)."""
    robot, stored = _stored(key, user, robot)
    profile = Profile.from_dict(body.model_dump())
    with svc.assistant.sessions.user(stored):
        svc.assistant.personal.profiles.put(stored, profile)
    return _profile_out(user, robot, profile)


@router.delete("/profile", response_model=ProfileOut, responses=responses(404))
def delete_profile(user: UserPath, key: Caller, svc: ServiceDep, robot: RobotQuery = None) -> ProfileOut:
    """Forget the user's profile (their conversations and things stay; forgetting the user deletes everything)."""
    robot, stored = _stored(key, user, robot)
    with svc.assistant.sessions.user(stored):
        svc.assistant.personal.profiles.delete(stored)
    return _profile_out(user, robot, Profile())


@router.get("/concepts", response_model=ConceptsOut, responses=responses(404))
def list_concepts(user: UserPath, key: Caller, svc: ServiceDep, robot: RobotQuery = None) -> ConceptsOut:
    """The user's own named things ("this is my mug, it's called Bobby")."""
    robot, stored = _stored(key, user, robot)
    return _concepts_out(user, robot, svc.assistant.personal.concepts.list(stored))


@router.patch("/concepts/{concept_id}", response_model=ConceptsOut, responses=responses(400, 404))
def rename_concept(user: UserPath, concept_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
                   body: RenameIn, key: Caller, svc: ServiceDep, robot: RobotQuery = None) -> ConceptsOut:
    """Rename one of the user's things (from the next turn on)."""
    robot, stored = _stored(key, user, robot)
    concepts = svc.assistant.personal.concepts
    with svc.assistant.sessions.user(stored):
        concepts.rename(stored, concept_id, body.name)
    return _concepts_out(user, robot, concepts.list(stored))


@router.delete("/concepts/{concept_id}", response_model=ConceptsOut, responses=responses(404))
def delete_concept(user: UserPath, concept_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
                   key: Caller, svc: ServiceDep, robot: RobotQuery = None) -> ConceptsOut:
    """Delete one of the user's things with its photos (unless a conversation still shows them)."""
    robot, stored = _stored(key, user, robot)
    concepts = svc.assistant.personal.concepts
    with svc.assistant.sessions.user(stored):
        if not concepts.forget(stored, concept_id):
            raise NotFound(f"unknown concept {concept_id!r}")
    return _concepts_out(user, robot, concepts.list(stored))


__all__ = ["router"]
