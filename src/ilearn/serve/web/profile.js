// What the robot keeps about the user it talks with: the profile (shown and corrected) and their own named
// things (renamed or forgotten one by one), through /v1/users/{user}/profile and /concepts.
import { h } from "./api.js";

const $ = (id) => document.getElementById(id);
const FIELDS = { name: "profile-name", occupation: "profile-occupation", language: "profile-language",
                 age_group: "profile-age", expertise: "profile-expertise", answer_length: "profile-length" };

export function setupProfile(app) {
  const status = (text) => { $("profile-status").textContent = text; };
  const base = () => `/v1/users/${encodeURIComponent(app.conversationUser)}`;

  function showProfile(profile) {
    for (const [field, id] of Object.entries(FIELDS)) $(id).value = profile[field] ?? "";
    for (const box of $("profile-needs").querySelectorAll("input")) box.checked = profile.accessibility.includes(box.value);
    $("profile-summary").textContent = profile.summary
      ? `It keeps: ${profile.summary}` : "It keeps nothing about you yet: tell it in the chat, or fill this in.";
  }

  function showThings(things) {
    const list = $("things");
    if (!things.length) {
      list.replaceChildren(h("li", { class: "help" }, "No things of yours yet (\"this is my mug, it's called Bobby\")."));
      return;
    }
    list.replaceChildren(...things.map((thing) => {
      const label = thing.name ? `${thing.name} (your ${thing.kind})` : `your ${thing.kind}`;
      const name = h("input", { type: "text", maxlength: "64", required: "", value: thing.name ?? "",
                                "aria-label": `New name of ${label}` });
      const rename = h("form", { class: "rename", hidden: "",
                                 onsubmit: (e) => { e.preventDefault(); renameThing(thing, label, name.value.trim()); } },
        name, " ", h("button", { type: "submit" }, "Save the name"));
      return h("li", { class: "card thing", "data-thing": thing.id },
        h("strong", {}, label), " ",
        h("span", { class: "meta" }, `${thing.views} ${thing.views === 1 ? "photo" : "photos"}`), " ",
        h("button", { type: "button", "aria-label": `Rename ${label}`,
                      onclick: () => { rename.hidden = !rename.hidden; if (!rename.hidden) name.focus(); } },
          "Rename"), " ",
        h("button", { type: "button", "aria-label": `Forget ${label}`, onclick: () => forget(thing, label) },
          "Forget this thing"),
        rename);
    }));
  }

  async function refresh() {
    if (!app.api || !app.conversationUser) return;
    const [profile, things] = await Promise.all([app.api.get(`${base()}/profile`), app.api.get(`${base()}/concepts`)]);
    showProfile(profile);
    showThings(things.concepts);
  }

  async function renameThing(thing, label, name) {
    if (!name) return;
    try {
      const out = await app.api.patch(`${base()}/concepts/${thing.id}`, { name });
      showThings(out.concepts);
      status(`Renamed ${label}: it is ${name} now.`);
    } catch (err) {
      status(`Not renamed: ${err.message}`);
    }
  }

  async function forget(thing, label) {
    try {
      const out = await app.api.delete(`${base()}/concepts/${thing.id}`);
      showThings(out.concepts);
      status(`Forgot ${label}.`);
    } catch (err) {
      status(`Not forgotten: ${err.message}`);
    }
  }

  $("profile-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { accessibility: [...$("profile-needs").querySelectorAll("input:checked")].map((b) => b.value) };
    for (const [field, id] of Object.entries(FIELDS)) body[field] = $(id).value.trim() || null;
    try {
      showProfile(await app.api.put(`${base()}/profile`, body));
      status("Your profile is saved.");
    } catch (err) {
      status(`Not saved: ${err.message}`);
    }
  });

  $("profile-clear").addEventListener("click", async () => {
    try {
      showProfile(await app.api.delete(`${base()}/profile`));
      status("Your profile is forgotten.");
    } catch (err) {
      status(`Not forgotten: ${err.message}`);
    }
  });

  $("about").addEventListener("toggle", () => { if ($("about").open) refresh().catch((err) => status(err.message)); });

  return { refresh: () => ($("about").open ? refresh().catch((err) => status(err.message)) : Promise.resolve()) };
}
