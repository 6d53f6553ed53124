"""The native API, `/v1/...`: turns (JSON or multipart), sessions, explicit feedback, events, forgetting a user,
learning jobs and model versions. Robot keys talk; admin keys also learn, promote, roll back and forget."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

import ilearn.serve.schemas as schemas
from ilearn.serve.auth import Admin, Caller, ServiceDep
from ilearn.serve.errors import ApiError, responses
from ilearn.serve.keys import check_robot
from ilearn.serve.payload import decode_base64
from ilearn.serve.service import event_out, job_out, session_out

router = APIRouter(prefix="/v1", tags=["native"])

_ID = r"^[A-Za-z0-9_.-]+$"
_USER = r"^[A-Za-z0-9_.@:-]+$"
SessionPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID)]
UserPath = Annotated[str, Path(min_length=1, max_length=128, pattern=_USER)]


@router.post("/turns", response_model=schemas.ReplyOut, responses=responses(400, 404, 409))
def send_turn(body: schemas.TurnRequest, key: Caller, svc: ServiceDep) -> schemas.ReplyOut:
    """Send a user turn (text, optionally an image in base64) in a new session or `session_id`'s."""
    image = decode_base64(body.image_base64, key.limits.max_image_bytes) if body.image_base64 else None
    return svc.turn(key, body.user, body.text, image, body.session_id, "native")


@router.post("/turns/upload", response_model=schemas.ReplyOut, responses=responses(400, 404, 409))
def send_turn_upload(key: Caller, svc: ServiceDep,
                     user: Annotated[str, Form(min_length=1, max_length=128, pattern=_USER)],
                     text: Annotated[str, Form(min_length=1, max_length=20_000)],
                     session_id: Annotated[str | None, Form(max_length=64, pattern=_ID)] = None,
                     image: Annotated[UploadFile | None, File(description="the image file")] = None,
                     ) -> schemas.ReplyOut:
    """Send a user turn as a multipart form: `user`, `text`, optional `session_id` and `image` file."""
    data = None
    if image is not None:
        data = image.file.read(key.limits.max_image_bytes + 1)
        if len(data) > key.limits.max_image_bytes:
            raise ApiError(413, f"the image is over this key's limit of {key.limits.max_image_bytes} bytes")
    return svc.turn(key, user, text, data or None, session_id, "native")


@router.get("/key", response_model=schemas.KeyOut, responses=responses())
def read_key(key: Caller) -> schemas.KeyOut:
    """The caller's key: its id, robot and role (a page uses it to know what to show)."""
    return schemas.KeyOut(id=key.id, robot=key.robot, role=key.role)


@router.get("/sessions/{session_id}", response_model=schemas.SessionOut, responses=responses(404))
def read_session(session_id: SessionPath, key: Caller, svc: ServiceDep) -> schemas.SessionOut:
    """A session with its turns (404 for another robot's)."""
    return session_out(svc.session(key, session_id))


@router.post("/sessions/{session_id}/close", response_model=schemas.CloseOut, responses=responses(404))
def close_session(session_id: SessionPath, key: Caller, svc: ServiceDep) -> schemas.CloseOut:
    """End a dialogue: it is distilled into history events at once (a second close adds nothing)."""
    events = svc.close(key, session_id)
    return schemas.CloseOut(session_id=session_id, events=[event_out(e) for e in events])


@router.post("/sessions/{session_id}/feedback", response_model=schemas.FeedbackAck,
             responses=responses(400, 404, 409))
def give_feedback(session_id: SessionPath, body: schemas.FeedbackRequest, key: Caller,
                  svc: ServiceDep) -> schemas.FeedbackAck:
    """Thumbs up or down on the latest answer, with a correction for a thumbs down: recorded as the user's
    reaction, so it becomes the same event a spoken "no, it's X" would."""
    ack = svc.feedback(key, session_id, body)
    return schemas.FeedbackAck(session_id=session_id, turn_id=ack.id, text=ack.text)


@router.get("/events", response_model=schemas.EventsOut, responses=responses(400, 404))
def list_events(key: Caller, svc: ServiceDep,
                robot: Annotated[str | None, Query(max_length=64, pattern=_ID)] = None,
                user: Annotated[str | None, Query(max_length=128, pattern=_USER)] = None,
                status: Annotated[str | None, Query(max_length=20)] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> schemas.EventsOut:
    """History events in the caller's scope (a robot key: its robot's; an admin key: any robot's)."""
    events = svc.events(key, robot=robot, user=user, status=status, limit=limit)
    return schemas.EventsOut(events=[event_out(e) for e in events])


@router.get("/datasets/{kind}", response_model=schemas.DatasetOut, responses=responses(404))
def export_dataset(kind: Annotated[Literal["sft", "dpo", "kto", "rewards"], Path()], key: Caller, svc: ServiceDep,
                   robot: Annotated[str | None, Query(max_length=64, pattern=_ID)] = None,
                   user: Annotated[str | None, Query(max_length=128, pattern=_USER)] = None) -> schemas.DatasetOut:
    """A training dataset of the events in the caller's scope, in TRL's columns (sft: messages; dpo: prompt,
    chosen, rejected; kto: prompt, completion, label; rewards), each row with its event id."""
    return schemas.DatasetOut(kind=kind, rows=svc.dataset(key, kind, robot=robot, user=user))


_IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


@router.get("/images/{sha256}", response_class=Response, responses={
    **responses(404), 200: {"content": {"image/*": {}}, "description": "the image's stored bytes"}})
def read_image(sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], key: Caller, svc: ServiceDep) -> Response:
    """An image that an event in the caller's scope shows (the files a dataset's `images` name)."""
    data = svc.image(key, sha256)
    media = next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), "application/octet-stream")
    return Response(data, media_type=media)


@router.delete("/robots/{robot}/users/{user}", response_model=schemas.ForgetOut, responses=responses(403, 404))
def forget_user(robot: Annotated[str, Path(max_length=64, pattern=_ID)], user: UserPath, key: Admin, svc: ServiceDep) -> schemas.ForgetOut:
    """Delete every trace of a user of a robot: sessions, turns, events, vectors, images, the model versions
    trained on their events (admin). A serving version among them stops serving at once: the clean version made
    active serves, or the base model while the model server refuses it (`note`)."""
    check_robot(robot)
    report = svc.forget(robot, user)
    versions = report.versions
    return schemas.ForgetOut(robot=robot, user=user, deleted_events=len(report.event_ids),
                             retired_versions=versions.trained if versions is not None else [],
                             served=report.served, note=report.note,
                             weights_not_deleted=versions.undeleted if versions is not None else {})


@router.post("/learn", response_model=schemas.JobOut, status_code=202, responses=responses(403))
def start_learning(key: Admin, svc: ServiceDep, body: schemas.LearnRequest | None = None) -> schemas.JobOut:
    """Start a learning job: train a candidate, gate it, promote it if it passes (admin)."""
    body = body or schemas.LearnRequest()
    return job_out(svc.jobs.start(promote=body.promote, general=body.general))


@router.get("/learn", response_model=schemas.JobsOut, responses=responses(403))
def list_jobs(key: Admin, svc: ServiceDep) -> schemas.JobsOut:
    """The learning jobs since the server started (admin)."""
    return schemas.JobsOut(jobs=[job_out(j) for j in svc.jobs.list()])


@router.get("/learn/{job_id}", response_model=schemas.JobOut, responses=responses(403, 404))
def read_job(job_id: Annotated[str, Path(max_length=64)], key: Admin, svc: ServiceDep) -> schemas.JobOut:
    """A learning job's status and outcome (admin)."""
    return job_out(svc.jobs.get(job_id))


@router.get("/model-versions", response_model=schemas.VersionsOut, responses=responses())
def list_versions(key: Caller, svc: ServiceDep) -> schemas.VersionsOut:
    """Every model version with its lineage, recipe and gate figures, and the one that serves."""
    return _versions(svc)


@router.post("/model-versions/{version_id}/promote", response_model=schemas.VersionsOut,
             responses=responses(400, 403, 404, 409, 502))
def promote(version_id: Annotated[str, Path(max_length=128)], key: Admin, svc: ServiceDep) -> schemas.VersionsOut:
    """Make a version the one that serves from the next turn on ('base': no trained version) (admin). 502 when the
    vLLM server refuses its adapter (`model.publish` "vllm-lora"): nothing changes, the version before serves on."""
    svc.promote(version_id)
    return _versions(svc)


@router.post("/model-versions/rollback", response_model=schemas.VersionsOut,
             responses=responses(400, 403, 409, 502))
def rollback(key: Admin, svc: ServiceDep) -> schemas.VersionsOut:
    """Serve the version that served before the current one (admin). 502 when the vLLM server refuses the older
    version's adapter (`model.publish` "vllm-lora"): nothing changes."""
    svc.rollback()
    return _versions(svc)


def json_safe(value):
    """`value` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _versions(svc) -> schemas.VersionsOut:
    registry, versions = svc.assistant.registry, svc.assistant.versions
    served = versions.current().version  # what the next turn gets (a forget read here stops its adapter at once)
    if registry is None:
        return schemas.VersionsOut(serving=served, served=served, versions=[])
    return schemas.VersionsOut(serving=registry.active_id(), served=served, note=versions.note, versions=[
        schemas.VersionOut(id=v.id, parent=v.parent, recipe=v.recipe, status=v.status.value,
                           events=len(v.event_ids), created=v.created, metrics=json_safe(v.metrics))
        for v in registry.list()])


__all__ = ["router"]
