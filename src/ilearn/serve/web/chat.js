// The chat: photo (file, drop, camera), streamed replies, clarifying choices, references, feedback.
import { h } from "./api.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_QUESTION = "What is this?";

export function setupChat(app) {
  const chat = { sessionId: null, photo: null, stream: null, busy: false };
  const messages = $("messages");
  const status = (text) => { $("conversation-status").textContent = text; };
  const fail = (text) => { $("composer-error").textContent = text; };

  // ------------------------------------------------------------------ the photo
  function setPhoto(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      fail(`${file.name} is not an image.`);
      return;
    }
    fail("");
    chat.photo = file;
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    $("photo-clear").hidden = false;
    $("text").focus();
  }

  function clearPhoto() {
    chat.photo = null;
    $("preview").hidden = true;
    $("preview").removeAttribute("src");
    $("photo-clear").hidden = true;
    $("photo").value = "";
    $("photo-capture").value = "";
  }

  $("photo").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("photo-capture").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  $("photo-clear").addEventListener("click", () => { clearPhoto(); $("photo").focus(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setPhoto(e.dataTransfer.files[0]);
  });

  // ------------------------------------------------------------------ the camera (the file picker when it fails)
  function cameraFallback(reason) {
    $("capture-fallback").hidden = false;
    $("photo-capture").hidden = false;
    status(`The camera cannot be opened here (${reason}): take or choose a photo with the picker instead.`);
    $("photo-capture").focus();
  }

  $("camera-open").addEventListener("click", async () => {
    if (!navigator.mediaDevices?.getUserMedia) {
      cameraFallback("this browser gives the page no camera access");
      return;
    }
    try {
      chat.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (err) {
      cameraFallback(err.message || err.name);
      return;
    }
    $("camera-video").srcObject = chat.stream;
    $("camera").hidden = false;
    $("camera-shoot").focus();
  });

  function closeCamera() {
    chat.stream?.getTracks().forEach((t) => t.stop());
    chat.stream = null;
    $("camera").hidden = true;
  }

  $("camera-close").addEventListener("click", closeCamera);
  $("camera-shoot").addEventListener("click", () => {
    const video = $("camera-video");
    const canvas = h("canvas");
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((blob) => {
      closeCamera();
      setPhoto(new File([blob], "camera.jpg", { type: "image/jpeg" }));
    }, "image/jpeg", 0.9);
  });

  // ------------------------------------------------------------------ turns
  function retire() {
    // feedback and choices apply to the latest reply only
    messages.querySelectorAll(".feedback button, .options button, .correct input").forEach((b) => { b.disabled = true; });
  }

  async function send(text, photo) {
    if (chat.busy) return;
    chat.busy = true;
    $("send").disabled = true;
    fail("");
    retire();
    const mine = h("li", { class: "msg user" }, h("span", { class: "visually-hidden" }, "You: "), h("p", {}, text));
    if (photo) mine.prepend(h("img", { class: "thumb", src: URL.createObjectURL(photo), alt: "Your photo" }));
    messages.append(mine);
    const body = h("p", { class: "text" });
    const theirs = h("li", { class: "msg assistant", "aria-busy": "true" },
      h("span", { class: "visually-hidden" }, "Assistant: "), body);
    messages.append(theirs);
    theirs.scrollIntoView({ block: "end" });

    const form = new FormData();
    form.append("user", app.conversationUser);
    form.append("text", text);
    if (chat.sessionId) form.append("session_id", chat.sessionId);
    if (photo) form.append("image", photo, photo.name || "photo.png");
    try {
      for await (const { event, data } of app.api.events("/v1/turns/stream", form)) {
        if (event === "start") body.classList.add("typing");
        else if (event === "delta") { body.classList.remove("typing"); body.textContent += data.text; }
        else if (event === "reply") showReply(theirs, body, data);
        else if (event === "error") throw new Error(data.error.message);
      }
    } catch (err) {
      body.classList.remove("typing");
      theirs.classList.add("failed");
      body.textContent = `Not sent: ${err.message}`;
    } finally {
      theirs.removeAttribute("aria-busy");
      chat.busy = false;
      $("send").disabled = false;
    }
  }

  function showReply(li, body, reply) {
    body.classList.remove("typing");
    body.textContent = reply.text;
    chat.sessionId = reply.session_id;
    li.dataset.kind = reply.kind;
    li.dataset.turn = reply.turn_id;
    $("model-version").textContent = `model ${reply.model_version}`;
    if (reply.kind === "clarification" && reply.options.length) {
      li.append(h("div", { class: "options", role: "group", "aria-label": "Choose one" },
        reply.options.map((option) => h("button", { type: "button", onclick: () => send(option, null) }, option))));
    }
    if (reply.references.length) li.append(references(reply.references));
    if (reply.kind === "answer") {
      const from = { memory: " · answered from memory", "memory-guess": " · a guess from memory" }[reply.source] || "";
      li.append(h("p", { class: "meta" }, `model version ${reply.model_version}${from}`));
      li.append(feedback(reply));
    }
    li.querySelector(".options button")?.focus();
    app.profile?.refresh(); // what the user said may have changed their profile or things
  }

  function references(refs) {
    const list = h("ul", { class: "refs", "aria-label": "What this answer is based on" });
    for (const ref of refs) {
      const img = h("img", { class: "thumb", alt: `Photo of the reference: ${ref.question}` });
      if (ref.image_sha256) {
        app.api.imageUrl(`/v1/images/${ref.image_sha256}`).then((url) => { img.src = url; }, () => img.remove());
      } else {
        img.remove();
      }
      list.append(h("li", { class: "ref" }, ref.image_sha256 ? img : null,
        h("div", {}, h("p", {}, h("span", { class: "label" }, "Asked: "), ref.question),
          h("p", {}, h("span", { class: "label" }, "Answer: "), h("strong", {}, ref.answer)),
          h("p", { class: "meta" }, `score ${ref.score.toFixed(3)}`))));
    }
    return list;
  }

  function feedback(reply) {
    const group = h("div", { class: "feedback", role: "group", "aria-label": "Was this answer right?" });
    const correct = h("form", { class: "correct", hidden: true });
    const input = h("input", { id: `fix-${reply.turn_id}`, required: true, maxlength: 2000, autocomplete: "off" });
    correct.append(h("label", { for: input.id }, "The right answer"), input,
      h("button", { type: "submit" }, "Save the correction"));
    correct.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.value.trim()) rate(reply, group, { rating: "down", correction: input.value.trim() });
    });
    group.append(
      h("button", { type: "button", "aria-label": "Thumbs up: right answer", title: "Right answer",
                    onclick: () => rate(reply, group, { rating: "up" }) }, "👍"),
      h("button", { type: "button", "aria-label": "Thumbs down: wrong answer", title: "Wrong answer",
                    onclick: () => rate(reply, group, { rating: "down" }) }, "👎"),
      h("button", { type: "button", "aria-expanded": "false",
                    onclick: (e) => { correct.hidden = !correct.hidden;
                                      e.target.setAttribute("aria-expanded", String(!correct.hidden));
                                      if (!correct.hidden) input.focus(); } }, "Correct it"),
      correct);
    return group;
  }

  async function rate(reply, group, body) {
    group.querySelectorAll("button, input").forEach((b) => { b.disabled = true; });
    try {
      const ack = await app.api.post(`/v1/sessions/${reply.session_id}/feedback`,
        { ...body, turn_id: reply.turn_id });
      group.append(h("p", { class: "meta" }, body.rating === "up" ? "You said: right." :
        body.correction ? `You corrected it: ${body.correction}.` : "You said: wrong."));
      messages.append(h("li", { class: "msg assistant ack" },
        h("span", { class: "visually-hidden" }, "Assistant: "), h("p", { class: "text" }, ack.text)));
    } catch (err) {
      group.querySelectorAll("button, input").forEach((b) => { b.disabled = false; });
      fail(`Feedback not saved: ${err.message}`);
    }
  }

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim() || (chat.photo ? DEFAULT_QUESTION : "");
    if (!text) {
      fail("Write a question, or add a photo.");
      $("text").focus();
      return;
    }
    const photo = chat.photo;
    $("text").value = "";
    clearPhoto();
    send(text, photo);
  });

  // ------------------------------------------------------------------ conversations
  async function newConversation(user) {
    if (chat.sessionId) {
      try {
        const closed = await app.api.post(`/v1/sessions/${chat.sessionId}/close`);
        const n = closed.events.length;
        status(`The last conversation is closed: ${n} ${n === 1 ? "thing" : "things"} learnt.`);
      } catch (err) {
        status(`The last conversation could not be closed: ${err.message}`);
      }
    } else {
      status("");
    }
    chat.sessionId = null;
    app.conversationUser = user;
    $("conversation-user").value = user;
    messages.replaceChildren();
    clearPhoto();
    $("profile-status").textContent = "";
    app.profile?.refresh();
    $("text").focus();
  }

  $("conversation-bar").addEventListener("submit", (e) => {
    e.preventDefault();
    newConversation($("conversation-user").value.trim());
  });

  return { newConversation, closeCamera };
}
