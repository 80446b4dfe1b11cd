// The account page: plain JavaScript, no inline script (the page's Content-Security-Policy forbids it). It talks
// only to the API; the session cookie is HttpOnly, so nothing here can read it — the browser sends it.
"use strict";

const $ = (id) => document.getElementById(id);
const messages = {
  invalid_credentials: "Wrong username or password.",
  too_many_attempts: "Too many attempts. Try again later.",
  cross_origin_request: "That request came from another site and was refused.",
  store_unavailable: "The service is unavailable. Try again in a moment.",
  account_disabled: "This account is disabled.",
  invalid_request: "The new password does not meet the rules (8 to 256 characters).",
};
// On the signed-in page, a wrong password is the current one (the change-password form).
const signedInMessages = { invalid_credentials: "The current password is wrong." };

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(method, path) {
  const response = await fetch(path, { method, credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  return { status: response.status, body };
}

function when(text) {
  const date = new Date(text);
  return isNaN(date) ? text : date.toLocaleString();
}

// "2 minutes ago", "just now", "3 days ago".
function ago(text) {
  const seconds = Math.max(0, Math.round((Date.now() - new Date(text)) / 1000));
  if (isNaN(seconds)) return text;
  if (seconds < 45) return "just now";
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [unit, size] of units) {
    const count = Math.round(seconds / size);
    if (count >= 1 && seconds >= size * 0.75) return count + " " + unit + (count === 1 ? "" : "s") + " ago";
  }
  return "just now";
}

function renderSessions(sessions) {
  const list = $("sessions");
  list.replaceChildren();
  for (const session of sessions) {
    const item = document.createElement("li");
    item.dataset.sessionId = session.session_id;
    const info = document.createElement("div");
    const device = document.createElement("span");
    device.className = "device";
    device.textContent = session.device || "Unknown device";
    device.title = session.user_agent || "";
    info.append(device);
    if (session.current) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "this device";
      info.append(badge);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = (session.ip ? session.ip + " · " : "") + "last seen " + ago(session.last_seen_at) +
      " · signed in " + when(session.created_at);
    info.append(meta);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary sign-out-session";
    button.textContent = session.current ? "Sign out here" : "Sign out";
    button.addEventListener("click", async () => {
      const result = await api("DELETE", "/v1/sessions/" + encodeURIComponent(session.session_id));
      if (result.status === 204 && session.current) return show();
      if (result.status !== 204) status(messages[result.body && result.body.error] || "Could not sign that session out.", true);
      await show();
    });
    item.append(info, button);
    list.append(item);
  }
}

async function show() {
  const error = new URLSearchParams(location.search).get("error");
  const me = await api("GET", "/v1/session");
  if (me.status === 200) {
    $("signed-out").hidden = true;
    $("signed-in").hidden = false;
    $("who").textContent = me.body.username;
    const list = await api("GET", "/v1/sessions");
    renderSessions(list.status === 200 ? list.body.sessions : []);
    const changed = new URLSearchParams(location.search).get("password") === "changed";
    if (error) status(signedInMessages[error] || messages[error] || "That did not work.", true);
    else status(changed ? "Your password was changed." : "");
  } else if (me.status === 401) {
    $("signed-in").hidden = true;
    $("signed-out").hidden = false;
    status(error ? messages[error] || "Sign-in failed." : "You are signed out.", Boolean(error));
  } else {
    status(messages[me.body && me.body.error] || "The service is unavailable.", true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-out-everywhere").addEventListener("click", async () => {
    const result = await api("DELETE", "/v1/sessions");
    if (result.status !== 204) return status(messages[result.body && result.body.error] || "Could not sign out everywhere.", true);
    await api("POST", "/v1/browser/logout");  // clears this browser's cookie too
    await show();
  });
  show();
});
