"""What an operator needs beyond the native API's lists (admin keys): the review queue of disputed corrections,
search in the memory by text or by image, and experiment report folders.

- `GET /v1/review`, `POST /v1/review/{event_id}`: events waiting for review (quarantined: they dispute a shared
  answer) with the shared events they dispute; accept (the event becomes shared, the disputed ones private) or
  reject (deleted), as `ilearn events review --keep/--reject` does.
- `POST /v1/events/search`: text only, the events whose question, answer, rejected answers or user contain it;
  with an image, the memory's retrieval (image and text) as the user named would get it (without a user: what
  every user gets, the shared events), best first with scores.
- `GET /v1/reports...`: the report folders under `ServeSettings.reports_dir` (`ilearn experiment --out`):
  report.md and the PNG plots it shows.
"""

from __future__ import annotations

import re
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

import ilearn.serve.schemas as schemas
from ilearn.errors import NotFound
from ilearn.images import decode_image
from ilearn.serve.auth import Admin, ServiceDep
from ilearn.serve.errors import ApiError, responses
from ilearn.serve.scope import user_id
from ilearn.serve.service import Service, event_out
from ilearn.types import EventStatus

router = APIRouter(prefix="/v1", tags=["operator"])

_ID = r"^[A-Za-z0-9_.-]+$"
_USER = r"^[A-Za-z0-9_.@:-]+$"
_NAME = r"^[A-Za-z0-9_.-]{1,128}$"


class ReviewItem(BaseModel):
    event: schemas.EventOut
    disputes: list[schemas.EventOut] = Field(description="the shared events whose answer it contradicts")


class ReviewOut(BaseModel):
    items: list[ReviewItem]


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["accept", "reject"]


class SearchHit(BaseModel):
    event: schemas.EventOut
    score: float | None = Field(None, description="retrieval similarity (image searches only)")


class SearchOut(BaseModel):
    hits: list[SearchHit]


class ReportsOut(BaseModel):
    reports: list[str]


class ReportOut(BaseModel):
    name: str
    markdown: str
    files: list[str] = Field(description="the PNG files of the folder (`GET /v1/reports/{name}/files/{file}`)")


# ---------------------------------------------------------------------------------------------- review
@router.get("/review", response_model=ReviewOut, responses=responses(403, 409))
def review_queue(key: Admin, svc: ServiceDep) -> ReviewOut:
    """Corrections waiting for review: each quarantined event with the shared events it disputes (admin)."""
    memory = _memory(svc)
    return ReviewOut(items=[ReviewItem(event=event_out(e), disputes=[event_out(d) for d in disputed])
                            for e, disputed in memory.review_queue()])


@router.post("/review/{event_id}", response_model=schemas.EventOut, responses=responses(403, 404, 409))
def review_decide(event_id: Annotated[str, Path(max_length=64, pattern=_ID)], body: ReviewDecision, key: Admin,
                  svc: ServiceDep) -> schemas.EventOut:
    """Accept a disputed correction (it becomes shared, what it disputes private) or reject it (deleted) (admin)."""
    memory = _memory(svc)
    event = svc.assistant.store.get_event(event_id)
    if event.status != EventStatus.QUARANTINED:
        raise ApiError(409, f"event {event_id} is {event.status.value}, not waiting for review")
    return event_out(memory.resolve(event_id, keep=body.decision == "accept"))


# ---------------------------------------------------------------------------------------------- search
@router.post("/events/search", response_model=SearchOut, responses=responses(403, 409))
def search_events(key: Admin, svc: ServiceDep,
                  text: Annotated[str, Form(max_length=2_000)] = "",
                  robot: Annotated[str | None, Form(max_length=64, pattern=_ID)] = None,
                  user: Annotated[str | None, Form(max_length=128, pattern=_USER)] = None,
                  limit: Annotated[int, Form(ge=1, le=1_000)] = 50,
                  image: Annotated[UploadFile | None, File(description="find events with a similar image")] = None,
                  ) -> SearchOut:
    """Events by text (question, answer, rejected answers or user contain it) or, with an image, by the memory's
    retrieval as `user` of `robot` would get it (none: the shared events), best first (admin)."""
    data = image.file.read(key.limits.max_image_bytes + 1) if image is not None else b""
    if len(data) > key.limits.max_image_bytes:
        raise ApiError(413, f"the image is over this key's limit of {key.limits.max_image_bytes} bytes")
    if data:
        return _similar(svc, data, text, robot, user, limit)
    needle = text.strip().casefold()
    hits = []
    for event in svc.events(key, robot=robot, user=user, status=None, limit=10**9):
        haystack = " ".join([event.question, event.answer, *event.rejected, event.user_id]).casefold()
        if needle in haystack:
            hits.append(SearchHit(event=event_out(event)))
            if len(hits) >= limit:
                break
    return SearchOut(hits=hits)


def _similar(svc: Service, data: bytes, text: str, robot: str | None, user: str | None, limit: int) -> SearchOut:
    if user is not None and robot is None:
        raise ApiError(400, "name the robot to search as one of its users")
    memory = _memory(svc)
    config = svc.assistant.config
    picture, _ = decode_image(data, max_pixels=config.limits.max_image_pixels)
    owner = user_id(robot, user) if user is not None else None
    matches = memory.search(picture, text.strip() or "What is this?", owner, config.robot_id, k=limit)
    return SearchOut(hits=[SearchHit(event=event_out(m.event), score=round(float(m.score), 4)) for m in matches])


# ---------------------------------------------------------------------------------------------- reports
@router.get("/reports", response_model=ReportsOut, responses=responses(403))
def list_reports(key: Admin, svc: ServiceDep) -> ReportsOut:
    """The experiment report folders the server was started with (`--reports`): those holding a report.md."""
    root = _reports_root(svc)
    if root is None:
        return ReportsOut(reports=[])
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "report.md").is_file()
                   and re.fullmatch(_NAME, p.name))
    return ReportsOut(reports=names)


@router.get("/reports/{name}", response_model=ReportOut, responses=responses(403, 404))
def read_report(name: Annotated[str, Path(pattern=_NAME)], key: Admin, svc: ServiceDep) -> ReportOut:
    """A report folder's report.md and the names of its PNG plots (admin)."""
    folder = _report(svc, name)
    files = sorted(p.name for p in folder.glob("*.png") if re.fullmatch(_NAME, p.name))
    return ReportOut(name=name, markdown=(folder / "report.md").read_text(encoding="utf-8"), files=files)


@router.get("/reports/{name}/files/{file}", response_class=Response, responses={
    **responses(403, 404), 200: {"content": {"image/png": {}}, "description": "the plot"}})
def read_report_file(name: Annotated[str, Path(pattern=_NAME)],
                     file: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,124}\.png$")],
                     key: Admin, svc: ServiceDep) -> Response:
    """A PNG plot of a report folder (admin)."""
    path = _report(svc, name) / file
    if not path.is_file():
        raise NotFound(f"no plot {file!r} in report {name!r}")
    return Response(path.read_bytes(), media_type="image/png")


def _reports_root(svc: Service) -> FsPath | None:
    folder = svc.settings.reports_dir
    return FsPath(folder).resolve() if folder and FsPath(folder).is_dir() else None


def _report(svc: Service, name: str) -> FsPath:
    root = _reports_root(svc)
    folder = (root / name).resolve() if root is not None and name not in {".", ".."} else None
    if folder is None or folder.parent != root or not (folder / "report.md").is_file():
        raise NotFound(f"no report {name!r}")
    return folder


def _memory(svc: Service):
    if svc.assistant.memory is None:
        raise ApiError(409, "this assistant has no retrieval memory")
    return svc.assistant.memory


__all__ = ["router"]
