// The operator view (admin keys): memory, review queue, forgetting, model versions, learning jobs, reports.
import { h, when } from "./api.js";
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const GATE = [["learning", "learning"], ["general", "forgetting (general set)"], ["bias", "bias"],
  ["specificity", "false naming"]];

export function setupOperator(app) {
  let inReview = new Set();
  let polling = null;

  // ------------------------------------------------------------------ memory
  function thumb(sha) {
    if (!sha) return "";
    const img = h("img", { class: "thumb small", alt: "The event's photo" });
    app.api.imageUrl(`/v1/images/${sha}`).then((url) => { img.src = url; }, () => img.remove());
    return img;
  }

  function eventRow(event, score) {
    const status = event.status === "quarantined" && inReview.has(event.id) ? "in review" : event.status;
    const forget = h("button", { type: "button", class: "link",
      "aria-label": `Forget the user ${event.user} of ${event.robot}`,
      onclick: () => askForget(event.robot, event.user) }, "forget");
    return h("tr", { "data-event": event.id },
      h("td", {}, thumb(event.image_sha256)),
      h("td", {}, event.question),
      h("td", {}, h("strong", {}, event.answer || "—"),
        event.rejected.length ? h("div", { class: "meta" }, `not: ${event.rejected.join("; ")}`) : ""),
      h("td", {}, h("span", { class: `badge ${status.replace(" ", "-")}` }, status),
        event.supersedes ? h("div", { class: "meta" }, `corrects ${event.supersedes}`) : ""),
      h("td", {}, `${event.user} `, h("span", { class: "meta" }, `(${event.robot})`), " ", forget),
      h("td", {}, event.scope),
      h("td", {}, score == null ? "" : score.toFixed(3)),
      h("td", {}, when(event.created)));
  }

  async function loadEvents() {
    const text = $("memory-text").value.trim();
    const image = $("memory-image").files[0];
    const status = $("memory-status").value;
    let rows;
    if (text || image) {
      const form = new FormData();
      form.append("text", text);
      if (image) form.append("image", image, image.name);
      const found = await app.api.post("/v1/events/search", form);
      rows = found.hits.filter((hit) => !status || hit.event.status === status);
      $("memory-note").textContent = `${rows.length} found${image ? " (by photo, best first)" : ""}.`;
    } else {
      const listed = await app.api.get(`/v1/events?limit=500${status ? `&status=${status}` : ""}`);
      rows = listed.events.map((event) => ({ event, score: null })).reverse();
      $("memory-note").textContent = `${rows.length} events, newest first.`;
    }
    $("events").tBodies[0].replaceChildren(...rows.map((r) => eventRow(r.event, r.score)));
  }

  $("memory-search").addEventListener("submit", (e) => { e.preventDefault(); guard(loadEvents, "memory-note"); });
  $("memory-reset").addEventListener("click", () => {
    $("memory-text").value = "";
    $("memory-image").value = "";
    $("memory-status").value = "";
    guard(loadEvents, "memory-note");
  });

  // ------------------------------------------------------------------ forgetting a user
  function askForget(robot, user) {
    $("forget-robot").value = robot;
    $("forget-user").value = user;
    $("forget-title").scrollIntoView({ block: "center" });
    confirmForget();
  }

  function confirmForget() {
    const robot = $("forget-robot").value.trim();
    const user = $("forget-user").value.trim();
    $("forget-question").textContent = `Delete everything ${user} of ${robot} said and taught?`;
    $("forget-confirm").hidden = false;
    $("forget-yes").focus();
  }

  $("forget").addEventListener("submit", (e) => { e.preventDefault(); confirmForget(); });
  $("forget-no").addEventListener("click", () => { $("forget-confirm").hidden = true; $("forget-ask").focus(); });
  $("forget-yes").addEventListener("click", () => guard(async () => {
    const robot = $("forget-robot").value.trim();
    const user = $("forget-user").value.trim();
    const out = await app.api.delete(`/v1/robots/${encodeURIComponent(robot)}/users/${encodeURIComponent(user)}`);
    $("forget-confirm").hidden = true;
    const models = out.retired_versions.length ? ` Model versions retired: ${out.retired_versions.join(", ")};` +
      ` serving ${out.served ?? "unchanged"}.` : "";
    $("forget-status").textContent = `Forgot ${out.user} of ${out.robot}: ${out.deleted_events} events deleted.` +
      models + (out.note ? ` ${out.note}` : "");
    await loadEvents();
  }, "forget-status"));

  // ------------------------------------------------------------------ review queue
  async function loadReview() {
    const queue = await app.api.get("/v1/review");
    inReview = new Set(queue.items.map((item) => item.event.id));
    const list = $("review");
    if (!queue.items.length) {
      list.replaceChildren(h("li", { class: "meta" }, "Nothing waits for review."));
      return;
    }
    list.replaceChildren(...queue.items.map(({ event, disputes }) => h("li", { class: "card" },
      thumb(event.image_sha256),
      h("p", {}, `${event.user} (${event.robot}) says “${event.question}” is `, h("strong", {}, event.answer)),
      h("p", { class: "meta" }, disputes.length ? `against ${disputes.map((d) => `${d.answer} (${d.user})`).join(", ")}`
        : "against nothing shared now"),
      h("div", { role: "group", "aria-label": `Decide on ${event.answer}` },
        h("button", { type: "button", onclick: () => decide(event.id, "accept") }, "Accept"),
        h("button", { type: "button", onclick: () => decide(event.id, "reject") }, "Reject")))));
  }

  function decide(id, decision) {
    guard(async () => {
      await app.api.post(`/v1/review/${id}`, { decision });
      await loadReview();
      await loadEvents();
    }, "memory-note");
  }

  // ------------------------------------------------------------------ model versions
  function gateFigures(metrics) {
    const gate = metrics?.gate;
    if (!gate) return "";
    const items = GATE.filter(([name]) => gate[name]).map(([name, label]) => {
      const fig = gate[name];
      const diff = fig.candidate - fig.active;
      return h("li", {}, `${label}: ${fig.active.toFixed(3)} → ${fig.candidate.toFixed(3)} (${diff >= 0 ? "+" : ""}${diff.toFixed(3)})`);
    });
    return h("div", {}, h("ul", { class: "figures" }, items),
      h("p", { class: "meta" }, gate.promote ? "gate: promote" : "gate: keep the active model"));
  }

  async function loadVersions() {
    const out = await app.api.get("/v1/model-versions");
    $("serving").textContent = `Serving: ${out.serving}`;
    const rows = out.versions.map((v) => h("tr", { "data-version": v.id },
      h("th", { scope: "row" }, v.id, v.parent ? h("div", { class: "meta" }, `from ${v.parent}`) : ""),
      h("td", {}, v.id === out.serving ? h("strong", {}, "serving") : v.status),
      h("td", {}, v.recipe),
      h("td", {}, String(v.events)),
      h("td", {}, gateFigures(v.metrics)),
      h("td", {}, v.id === out.serving ? "" : h("button", { type: "button",
        onclick: () => guard(async () => { await app.api.post(`/v1/model-versions/${v.id}/promote`); await loadVersions(); }, "serving") },
      "Promote"))));
    if (out.serving !== "base") {
      rows.push(h("tr", {}, h("th", { scope: "row" }, "base"), h("td", {}, "untrained"), h("td", {}), h("td", {}),
        h("td", {}), h("td", {}, h("button", { type: "button", onclick: () => guard(async () => {
          await app.api.post("/v1/model-versions/base/promote"); await loadVersions(); }, "serving") }, "Promote"))));
    }
    if (!out.versions.length) {
      rows.unshift(h("tr", {}, h("td", { colspan: 6, class: "meta" }, "No trained version yet: the base model serves.")));
    }
    $("versions").tBodies[0].replaceChildren(...rows);
  }

  $("rollback").addEventListener("click", () => guard(async () => {
    await app.api.post("/v1/model-versions/rollback");
    await loadVersions();
  }, "serving"));

  // ------------------------------------------------------------------ learning jobs
  async function loadJobs() {
    const out = await app.api.get("/v1/learn");
    const now = Date.now() / 1000;
    const rows = out.jobs.slice().reverse().map((job) => {
      const took = job.started ? ((job.finished || now) - job.started) : 0;
      const outcome = job.error ? job.error : job.outcome
        ? `${job.outcome.decision}${job.outcome.version ? ` ${job.outcome.version}` : ""}; ${job.outcome.train_events} events trained, ${job.outcome.heldout_events} held out`
        : "";
      return h("tr", {}, h("th", { scope: "row" }, job.id),
        h("td", {}, h("span", { class: `badge ${job.status}` }, job.status), progress(job)),
        h("td", {}, job.started ? `${took.toFixed(0)} s` : "waiting"),
        h("td", {}, outcome, job.outcome?.reasons?.length ? h("ul", { class: "figures" },
          job.outcome.reasons.map((r) => h("li", {}, r))) : ""));
    });
    $("jobs").tBodies[0].replaceChildren(...rows);
    const active = out.jobs.some((job) => !job.finished);
    clearTimeout(polling);
    if (active && !$("operator").hidden) polling = setTimeout(() => guard(loadJobs, "serving"), 1000);
    else if (!active && polling !== null) { polling = null; await loadVersions(); }
  }

  function progress(job) {
    // a running job: its phase (distilling, training step i of n, gating) and the fraction done; a failed one:
    // where it stopped
    if (job.status === "running") {
      const detail = job.detail || "starting";
      const percent = Math.round(job.progress * 100);
      return h("div", { class: "job-progress" },
        h("progress", { max: 1, value: job.progress, "aria-label": `${job.id}: ${detail}, ${percent}% done` }),
        h("span", { class: "meta" }, `${detail} (${percent}%)`));
    }
    if (job.status === "failed" && job.phase) return h("span", { class: "meta" }, ` while ${job.detail}`);
    return "";
  }

  $("learn").addEventListener("submit", (e) => {
    e.preventDefault();
    guard(async () => {
      await app.api.post("/v1/learn", { promote: $("learn-promote").checked, general: $("learn-general").checked });
      await loadJobs();
    }, "serving");
  });

  // ------------------------------------------------------------------ reports
  async function loadReports() {
    const out = await app.api.get("/v1/reports");
    $("reports-note").textContent = out.reports.length ? "Choose a report."
      : "No reports: start the server with --reports FOLDER (a folder of `ilearn experiment` outputs).";
    $("reports").replaceChildren(...out.reports.map((name) => h("li", {},
      h("button", { type: "button", onclick: () => guard(() => openReport(name), "reports-note") }, name))));
  }

  async function openReport(name) {
    const report = await app.api.get(`/v1/reports/${encodeURIComponent(name)}`);
    const image = (src, alt) => {
      const img = h("img", { class: "plot", alt: alt || src });
      if (report.files.includes(src)) {
        app.api.imageUrl(`/v1/reports/${encodeURIComponent(name)}/files/${encodeURIComponent(src)}`)
          .then((url) => { img.src = url; }, () => img.replaceWith(`[${alt || src}]`));
      }
      return img;
    };
    $("report").replaceChildren(h("h4", {}, name), renderMarkdown(report.markdown, image));
  }

  // ------------------------------------------------------------------ all
  async function guard(task, where) {
    try {
      await task();
    } catch (err) {
      $(where).textContent = `Failed: ${err.message}`;
    }
  }

  async function refresh() {
    await guard(loadReview, "memory-note");
    await Promise.all([guard(loadEvents, "memory-note"), guard(loadVersions, "serving"),
      guard(loadJobs, "serving"), guard(loadReports, "reports-note")]);
  }

  return { refresh };
}
