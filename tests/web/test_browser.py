"""The web page in a real headless Chromium (Debian's, driven by Playwright; never a browser Playwright downloads).

The whole story of issue 22 on the tiny model, served by uvicorn on a free loopback port: a user signs in with a
robot key, sends a photo, gets a clarifying question and picks an option, corrects the answer, starts a new
conversation with a new photo of the same object (dropped on the page), sees the right answer with its
reference and gives a thumbs up; then an operator signs in with an admin key, sees the event and forgets the
user. Screenshots go to a temporary folder (and to `ILEARN_WEB_SCREENSHOTS`, a folder, when it is set: that is
how docs/img/web-chat.png is made). Without chromium or Playwright the tests skip, unless CI is set: then they fail.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from serve.serve_helpers import live_server, require, tiny_config

require("fastapi", "serve")

from PIL import Image  # noqa: E402

from helpers import make_png  # noqa: E402
from ilearn.images import sha256_bytes  # noqa: E402
from ilearn.runtime import build_runtime  # noqa: E402
from ilearn.serve import create_app  # noqa: E402
from ilearn.serve.settings import ServeSettings  # noqa: E402
from ilearn.types import Event, EventStatus, ImageRef  # noqa: E402

CHROMIUM = os.environ.get("ILEARN_CHROMIUM", "/usr/bin/chromium")  # Debian's; another path for a check
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 30_000
REPORT = """# Experiment: pharmacy

Accuracy per round, **retrieval** then `fine-tuned`:

| round | method | accuracy |
| --- | --- | --- |
| 1 | baseline | 10.0% |
| 2 | retrieval | 80.0% |

![accuracy](learning_curves.png)
"""


def _playwright():
    """Playwright's sync API, or a skip (a failure under CI) when it or Debian's chromium is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("the playwright package (pip install 'ilearn[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium: scripts/setup.sh does it)")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: the browser test must run)")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The real app on the tiny model behind uvicorn, with a robot key and an admin key."""
    home = tmp_path_factory.mktemp("web")
    report = home / "reports" / "pharmacy-3-rounds"
    report.mkdir(parents=True)
    report.joinpath("report.md").write_text(REPORT)
    report.joinpath("learning_curves.png").write_bytes(make_png((20, 120, 60), size=(120, 60), shape="square"))
    app = create_app(build_runtime(tiny_config(home)), ServeSettings(reports_dir=str(home / "reports")))
    keys = app.state.service.keys
    tokens = {"robot": keys.create("kiosk")[1], "admin": keys.create("site", "admin")[1]}
    with live_server(app) as (_, url):
        yield {"url": url, "keys": tokens, "app": app}


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    keep = os.environ.get("ILEARN_WEB_SCREENSHOTS")

    def shot(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return shot


def _watch(page) -> list[str]:
    """The page's JavaScript errors and console errors (a CSP refusal, a failed request), as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(f"{msg.text} {msg.location}") if msg.type == "error" else None)
    return errors


def _sign_in(page, url: str, key: str, user: str) -> None:
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_label("Your name").fill(user)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#chat").wait_for(state="visible")


UNNAMED = """() => [...document.querySelectorAll('button, input, select, textarea, a, [role=group], ol, ul.refs')]
    .filter((el) => el.getClientRects().length && el.type !== 'hidden')
    .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                      || el.getAttribute('aria-labelledby') || el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 120))"""


def _unnamed(page) -> list[str]:
    """Visible controls a screen reader would have no name for."""
    return page.evaluate(UNNAMED)


def _last_reply(page, kind: str):
    reply = page.locator(f".msg.assistant[data-kind='{kind}']").last
    reply.wait_for(state="visible")
    return reply


def _drop(page, selector: str, data: bytes, name: str) -> None:
    """Drop a PNG file on an element, as a user dragging it from the desktop would."""
    transfer = page.evaluate_handle("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, { type: "image/png" }));
        return dt;
    }""", [base64.b64encode(data).decode(), name])
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_teach_an_object_see_it_answered_with_its_reference_then_forget_the_user(browser, site, shots, tmp_path):
    url, keys = site["url"], site["keys"]
    box = tmp_path / "box.png"
    box.write_bytes(make_png((30, 30, 200), shape="square"))
    again = make_png((40, 30, 190), shape="square")  # a new photo of the same box: another shade
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = _watch(page)

    # a user signs in with the robot's key and asks about a photo: a clarifying question with its options
    _sign_in(page, url, keys["robot"], "ana")
    page.set_input_files("#photo", str(box))
    assert page.locator("#preview").is_visible()
    page.get_by_role("textbox", name="Message").fill("What is this?")
    page.get_by_role("button", name="Send").click()
    question = _last_reply(page, "clarification")
    options = question.locator(".options button")
    assert "its name" in options.all_inner_texts()
    assert page.locator(".msg.user img.thumb").count() == 1
    shots(page, "1-clarifying-question")

    # the option is picked with the keyboard; the answer comes with its model version and feedback buttons
    chosen = question.get_by_role("button", name="its name")
    chosen.focus()
    page.keyboard.press("Enter")
    answer = _last_reply(page, "answer")
    assert "model version base" in answer.inner_text()
    assert options.first.is_disabled()  # choices of an answered question are spent

    # "correct it": the right answer goes to the explicit-feedback API
    answer.get_by_role("button", name="Correct it").click()
    answer.get_by_label("The right answer").fill("ibuprofen")
    answer.get_by_role("button", name="Save the correction").click()
    page.locator(".msg.ack", has_text="ibuprofen").wait_for()

    # a new conversation closes this one (the correction becomes an event), then a new photo of the same box
    page.get_by_role("button", name="New conversation").click()
    page.locator("#conversation-status", has_text="1 thing learnt").wait_for()
    assert page.locator(".msg").count() == 0
    _drop(page, "#drop", again, "box-again.png")
    assert page.locator("#preview").is_visible()
    page.get_by_role("textbox", name="Message").fill("What is this medicine called?")
    page.get_by_role("textbox", name="Message").press("Enter")
    answer = _last_reply(page, "answer")
    assert "ibuprofen" in answer.locator(".text").inner_text().lower()
    reference = answer.locator(".refs .ref")
    assert reference.count() == 1
    assert "ibuprofen" in reference.inner_text() and "What is this called?" in reference.inner_text()
    score = float(reference.locator(".meta").inner_text().split()[-1])
    assert score > 0.9
    assert "answered from memory" in answer.locator(":scope > .meta").inner_text()  # `source`: given outright
    thumb = reference.locator("img")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    answer.get_by_role("button", name="Thumbs up: right answer").click()
    answer.locator(".feedback", has_text="You said: right.").wait_for()
    shots(page, "web-chat")
    assert _unnamed(page) == []

    # the operator signs in with an admin key: the event, who taught it, and forgetting its teacher
    page.get_by_role("button", name="Sign out").click()
    _sign_in(page, url, keys["admin"], "operator")
    page.get_by_role("button", name="Operator").click()
    row = page.locator("#events tbody tr", has_text="ibuprofen").first
    row.wait_for()
    assert "active" in row.inner_text() and "ana" in row.inner_text() and "kiosk" in row.inner_text()
    page.get_by_role("searchbox", name="Search").fill("ibuprofen")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#memory-note", has_text="found").wait_for()
    assert page.locator("#events tbody tr").count() >= 1
    page.get_by_role("button", name="pharmacy-3-rounds").click()
    report = page.locator("#report")
    report.get_by_role("heading", name="Experiment: pharmacy").wait_for()
    assert report.locator("table tbody tr").count() == 2 and "80.0%" in report.inner_text()
    page.wait_for_function("() => { const img = document.querySelector('#report img.plot');"
                           " return img && img.complete && img.naturalWidth === 120; }")
    shots(page, "3-operator")
    assert _unnamed(page) == []
    row.get_by_role("button", name="Forget the user ana of kiosk").click()
    page.get_by_role("button", name="Yes, forget").click()
    page.locator("#forget-status", has_text="Forgot ana of kiosk").wait_for()
    page.wait_for_function("() => !document.querySelector('#events tbody').innerText.includes('ibuprofen')")
    store = site["app"].state.service.assistant.store
    assert list(store.iter_events(user_id="kiosk:ana")) == []
    assert errors == []
    context.close()


def test_phone_width_camera_and_keyboard(browser, site, shots):
    """At a phone's width nothing scrolls sideways; the camera (Chromium's fake one) gives a photo to send."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["camera"], origin=site["url"])
    page = context.new_page()
    errors = _watch(page)
    _sign_in(page, site["url"], site["keys"]["robot"], "bo")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Use the camera").click()
    page.locator("#camera-video").wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
    page.get_by_role("button", name="Take the photo").click()
    page.locator("#preview").wait_for(state="visible")
    page.keyboard.type("What is this?")
    page.keyboard.press("Enter")
    _last_reply(page, "clarification")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shots(page, "2-phone")
    assert errors == []
    context.close()


def test_without_a_camera_the_file_picker_takes_over(browser, site):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script("navigator.mediaDevices.getUserMedia = () => "
                            "Promise.reject(new DOMException('no camera here', 'NotFoundError'));")
    page = context.new_page()
    errors = _watch(page)
    _sign_in(page, site["url"], site["keys"]["robot"], "cy")
    assert not page.locator("#capture-fallback").is_visible()
    page.get_by_role("button", name="Use the camera").click()
    page.locator("#capture-fallback").wait_for(state="visible")
    assert "no camera here" in page.locator("#conversation-status").inner_text()
    assert page.evaluate("document.activeElement.id") == "photo-capture"  # the keyboard lands on the picker
    assert errors == []
    context.close()


def test_an_operator_settles_a_disputed_correction(browser, site, shots):
    """Two regulars taught one answer (shared); a made-up id contradicts it: the page (at a phone's width)
    shows it in review and the operator rejects it."""
    assistant = site["app"].state.service.assistant
    photo = make_png((90, 160, 40), size=(60, 60), shape="square")
    picture = Image.open(io.BytesIO(photo)).convert("RGB")
    ref = assistant.store.put_image(photo, ImageRef(sha256_bytes(photo), 60, 60, "PNG"))

    def teach(user: str, answer: str) -> Event:
        return assistant.memory.add(Event(ref, "What is this called?", answer, f"kiosk:{user}",
                                          robot_id=assistant.config.robot_id), picture)

    for user in ("dee", "eli"):
        assistant.store.ensure_user(f"kiosk:{user}")
        teach(user, "paracetamol")
    disputed = teach("mallory", "poison")
    assert disputed.status == EventStatus.QUARANTINED
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = _watch(page)
    _sign_in(page, site["url"], site["keys"]["admin"], "operator")
    page.get_by_role("button", name="Operator").click()
    card = page.locator("#review .card", has_text="poison")
    card.wait_for()
    assert "paracetamol" in card.inner_text() and "mallory" in card.inner_text()
    row = page.locator(f"#events tbody tr[data-event='{disputed.id}']")
    assert "in review" in row.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll in their own box
    shots(page, "4-review")
    card.get_by_role("button", name="Reject").click()
    page.locator("#review", has_text="Nothing waits for review").wait_for()
    assert assistant.store.get_event(disputed.id).status == EventStatus.DELETED
    assert errors == []
    context.close()


def test_an_operator_trains_a_version_then_promotes_and_rolls_it_back(browser, site, shots):
    assistant = site["app"].state.service.assistant
    for colour, answer in (((200, 30, 30), "aspirin"), ((30, 160, 200), "ibuprofen")):
        photo = make_png(colour, size=(64, 64), shape="circle")
        picture = Image.open(io.BytesIO(photo)).convert("RGB")
        ref = assistant.store.put_image(photo, ImageRef(sha256_bytes(photo), 64, 64, "PNG"))
        for user in ("fay", "gil", "hua"):
            assistant.store.ensure_user(f"kiosk:{user}")
            assistant.memory.add(Event(ref, "What is this called?", answer, f"kiosk:{user}",
                                       robot_id=assistant.config.robot_id), picture)
    # the job is held after its first training step until the page has shown it (the real learning run, its
    # progress passed on as it comes)
    jobs, shown = site["app"].state.service.jobs, threading.Event()
    learn = jobs._learn

    def held(*, progress, **kwargs):
        def report(p):
            progress(p)
            if p.phase == "training" and p.step == 1 and p.candidate == 1:
                shown.wait(60)

        return learn(progress=report, **kwargs)

    jobs._learn = held
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = _watch(page)
    _sign_in(page, site["url"], site["keys"]["admin"], "operator")
    page.get_by_role("button", name="Operator").click()
    page.get_by_label("promote when the gate passes").uncheck()
    page.get_by_label("check forgetting on the general set").uncheck()
    try:
        page.get_by_role("button", name="Start learning").click()
        job = page.locator("#jobs tbody tr").first
        bar = job.get_by_role("progressbar", name=re.compile(r"candidate 1 of 2: training step 1 of 2, \d+% done"))
        bar.wait_for()
        assert 0 < float(bar.get_attribute("value")) < 0.5 and "training step 1 of 2" in job.inner_text()
        shots(page, "5-learning")
    finally:
        shown.set()
        jobs._learn = learn
    job.locator(".badge.done").wait_for(timeout=240_000)  # the page polls while the job runs
    assert job.locator("progress").count() == 0
    assert "refused" in job.inner_text() and "learning:" in job.inner_text()  # not promoted: it was not asked to
    version = page.locator("#versions tbody tr[data-version]").first
    version.wait_for()
    version_id = version.get_attribute("data-version")
    assert "learning:" in version.inner_text()  # the gate's figures, active -> candidate
    version.get_by_role("button", name="Promote").click()
    page.locator("#serving", has_text=f"Serving: {version_id}").wait_for()
    shots(page, "6-models")
    assert assistant.versions.current().version == version_id
    page.get_by_role("button", name="Roll back").click()
    page.locator("#serving", has_text="Serving: base").wait_for()
    assert assistant.versions.current().version == "base"
    assert errors == []
    context.close()


def test_a_user_sees_corrects_and_forgets_what_the_robot_keeps_about_them(browser, site, shots, tmp_path):
    """The profile and the things a user taught in the chat, shown on the page; a field corrected, a thing renamed
    and then forgotten from it."""
    mug = tmp_path / "mug.png"
    mug.write_bytes(make_png((200, 120, 30), shape="circle"))
    personal = site["app"].state.service.assistant.personal
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = _watch(page)
    _sign_in(page, site["url"], site["keys"]["robot"], "ivy")
    page.set_input_files("#photo", str(mug))
    page.get_by_role("textbox", name="Message").fill("This is my mug, it's called Bobby")
    page.get_by_role("textbox", name="Message").press("Enter")
    page.locator(".msg.assistant:not([aria-busy])", has_text="Bobby").wait_for()
    page.get_by_role("textbox", name="Message").fill("I'm a nurse, please keep it short")
    page.get_by_role("textbox", name="Message").press("Enter")
    page.locator(".msg.assistant:not([aria-busy])").nth(1).wait_for()

    page.get_by_text("What the robot knows about you").click()
    page.locator("#things .thing", has_text="Bobby (your mug)").wait_for()
    assert page.get_by_label("Occupation").input_value() == "nurse"
    assert page.get_by_label("Answers", exact=True).input_value() == "short"
    assert "nurse" in page.locator("#profile-summary").inner_text()
    page.get_by_label("Occupation").fill("pharmacist")
    page.get_by_label("Answers", exact=True).select_option("detailed")
    page.get_by_role("button", name="Save the profile").click()
    page.locator("#profile-status", has_text="saved").wait_for()
    profile = personal.profiles.get("kiosk:ivy")
    assert (profile.occupation, profile.answer_length) == ("pharmacist", "detailed")
    shots(page, "7-about-you")
    assert _unnamed(page) == []
    page.get_by_role("button", name="Rename Bobby (your mug)").click()
    page.get_by_label("New name of Bobby (your mug)").fill("Rex")
    page.get_by_role("button", name="Save the name").click()
    page.locator("#profile-status", has_text="it is Rex now").wait_for()
    page.locator("#things .thing", has_text="Rex (your mug)").wait_for()
    assert [c.name for c in personal.concepts.list("kiosk:ivy")] == ["Rex"]
    assert _unnamed(page) == []
    page.get_by_role("button", name="Forget Rex (your mug)").click()
    page.locator("#profile-status", has_text="Forgot Rex").wait_for()
    assert page.locator("#things .thing").count() == 0 and personal.concepts.list("kiosk:ivy") == []
    assert errors == []
    context.close()
