// The page: sign in with a key, then the chat, and for admin keys the operator view.
import { Api } from "./api.js";
import { setupChat } from "./chat.js";
import { setupOperator } from "./operator.js";
import { setupProfile } from "./profile.js";

const $ = (id) => document.getElementById(id);
const app = { api: null, user: "", conversationUser: "", admin: false, chat: null, operator: null, profile: null };

async function signIn(key, user) {
  const api = new Api(key);
  const [me, versions] = await Promise.all([api.get("/v1/key"), api.get("/v1/model-versions")]);
  const admin = me.role === "admin";
  Object.assign(app, { api, user, admin });
  sessionStorage.setItem("ilearn", JSON.stringify({ key, user }));
  $("signin").hidden = true;
  $("views").hidden = false;
  $("tab-operator").hidden = !admin;
  $("signed-in").hidden = false;
  $("signed-in").textContent = `Signed in as ${user} (${me.robot}${admin ? ", admin key" : ""})`;
  $("sign-out").hidden = false;
  $("model-version").textContent = `model ${versions.serving}`;
  show("chat");
  app.chat.newConversation(user);
}

function signOut() {
  sessionStorage.removeItem("ilearn");
  location.reload();
}

function show(view) {
  for (const name of ["chat", "operator"]) {
    $(name).hidden = name !== view;
    $(`tab-${name}`).setAttribute("aria-pressed", String(name === view));
  }
  if (view === "operator") app.operator.refresh();
  else app.chat.closeCamera?.();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    await signIn($("signin-key").value.trim(), $("signin-user").value.trim());
  } catch (err) {
    $("signin-error").textContent = err.status === 401 ? "That key is wrong or revoked." : `Cannot sign in: ${err.message}`;
    $("signin-key").focus();
  }
});
$("sign-out").addEventListener("click", signOut);
$("tab-chat").addEventListener("click", () => show("chat"));
$("tab-operator").addEventListener("click", () => show("operator"));

app.chat = setupChat(app);
app.operator = setupOperator(app);
app.profile = setupProfile(app);

const saved = JSON.parse(sessionStorage.getItem("ilearn") || "null");
if (saved) signIn(saved.key, saved.user).catch(() => sessionStorage.removeItem("ilearn"));
else $("signin-key").focus();
