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
  invalid_request: "The new password does not meet the rules: 8 to 256 characters, not a common password, not your username.",
  invalid_code: "That code is wrong or was already used.",
  invalid_challenge: "That sign-in expired. Sign in with your password again.",
  reauthentication_required: "Please confirm it's you first.",
};
// On the signed-in page, a wrong password is the current one (the change-password form).
const signedInMessages = { invalid_credentials: "The current password is wrong." };

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(method, path, json) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, credentials: "same-origin", headers, body: json === undefined ? undefined : JSON.stringify(json),
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  return { status: response.status, body };
}

// A sensitive action answered 403 reauthentication_required: ask for the password (and a code), then run it again.
let afterReauthentication = null;
function askToReauthenticate(retry) {
  afterReauthentication = retry;
  $("reauthenticate").hidden = false;
  $("reauth-password").focus();
  status(messages.reauthentication_required, true);
}

// Runs a sensitive call; on 403 reauthentication_required asks first and runs it again after.
async function sensitive(call, onDone) {
  const result = await call();
  if (result.status === 403 && result.body && result.body.error === "reauthentication_required") {
    return askToReauthenticate(async () => onDone(await call()));
  }
  return onDone(result);
}

function showFactor(on) {
  $("totp-on").hidden = !on;
  $("totp-off").hidden = on;
  $("totp-enrol").hidden = true;
  $("totp-recovery").hidden = true;
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

// What each event says to its user; a new device is pointed out.
const happenings = {
  "session.created": (e) => e.new_device ? "Signed in from a new device" : "Signed in",
  "session.ended": (e) => ({
    logout: "Signed out", revoked: "Signed out a session", revoked_all: "Signed out everywhere", evicted: "Oldest session ended (too many sessions)",
    password_changed: "Session ended: password changed", account_disabled: "Session ended: account disabled",
    admin: "Session ended by an administrator", reauthenticated: "Confirmed it was you (new session)",
    introspection_revoke: "Session ended by an application",
  })[e.reason] || "Session ended",
  "login.failed": (e) => ({
    invalid_credentials: "Failed sign-in: wrong password", throttled: "Sign-in blocked: too many attempts",
    account_disabled: "Sign-in refused: account disabled", invalid_code: "Failed sign-in: wrong code",
  })[e.reason] || "Failed sign-in",
  "password.changed": () => "Password changed",
  "account.disabled": () => "Account disabled",
  "account.enabled": () => "Account enabled",
  "totp.enabled": () => "Two-step verification turned on",
  "totp.disabled": () => "Two-step verification turned off",
};

function renderActivity(events) {
  const list = $("activity");
  list.replaceChildren();
  for (const event of events) {
    const item = document.createElement("li");
    item.dataset.type = event.type;
    const what = document.createElement("span");
    what.className = "what" + (event.type === "login.failed" || event.new_device ? " notable" : "");
    what.textContent = (happenings[event.type] || (() => event.type))(event);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = [event.device, event.ip, ago(event.time)].filter(Boolean).join(" · ");
    meta.title = when(event.time);
    item.append(what, meta);
    list.append(item);
  }
  if (!events.length) list.textContent = "Nothing yet.";
}

async function show() {
  const query = new URLSearchParams(location.search);
  const error = query.get("error");
  const me = await api("GET", "/v1/session");
  if (me.status === 200) {
    $("signed-out").hidden = true;
    $("signed-in").hidden = false;
    $("who").textContent = me.body.username;
    $("reauthenticate").hidden = error !== "reauthentication_required";
    document.querySelectorAll(".needs-code").forEach((element) => { element.hidden = !me.body.totp; });
    if ($("totp-recovery").hidden) showFactor(me.body.totp);
    const list = await api("GET", "/v1/sessions");
    renderSessions(list.status === 200 ? list.body.sessions : []);
    const activity = await api("GET", "/v1/activity");
    renderActivity(activity.status === 200 ? activity.body.events : []);
    const changed = new URLSearchParams(location.search).get("password") === "changed";
    if (error) status(signedInMessages[error] || messages[error] || "That did not work.", true);
    else status(changed ? "Your password was changed." : "");
  } else if (me.status === 401) {
    $("signed-in").hidden = true;
    $("signed-out").hidden = false;
    // The password was right and the account has a second factor: the code step (the challenge leaves the address bar).
    const challenge = query.get("step") === "totp" ? query.get("challenge") : null;
    if (challenge) {
      $("challenge").value = challenge;
      history.replaceState(null, "", "/account?step=totp");
    }
    const codeStep = Boolean(challenge) && !error;
    $("login").hidden = codeStep;
    $("totp-login").hidden = !codeStep;
    if (codeStep) {
      $("login-code").focus();
      return status("Two-step verification");
    }
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
  $("reauthenticate").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { password: $("reauth-password").value };
    const code = $("reauth-code").value.trim();
    if (code) body[/^[0-9]{6}$/.test(code) ? "code" : "recovery_code"] = code;
    const result = await api("POST", "/v1/session/reauthenticate", body);
    $("reauth-password").value = "";
    $("reauth-code").value = "";
    if (result.status !== 200) return status(messages[result.body && result.body.error] || "That did not work.", true);
    $("reauthenticate").hidden = true;
    const retry = afterReauthentication;
    afterReauthentication = null;
    status("Thanks — you can go on.");
    if (location.search) history.replaceState(null, "", "/account");
    if (retry) await retry();
  });
  $("totp-enable").addEventListener("click", () => sensitive(() => api("POST", "/v1/totp"), (result) => {
    if (result.status !== 200) return status(messages[result.body && result.body.error] || "Could not start.", true);
    $("totp-secret").textContent = result.body.secret.replace(/(.{4})/g, "$1 ").trim();
    $("totp-uri").href = result.body.otpauth_uri;
    $("totp-off").hidden = true;
    $("totp-enrol").hidden = false;
    $("totp-confirm-code").focus();
    status("");
  }));
  $("totp-confirm").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("POST", "/v1/totp/confirm", { code: $("totp-confirm-code").value });
    $("totp-confirm-code").value = "";
    if (result.status !== 200) return status(messages[result.body && result.body.error] || "Could not confirm.", true);
    const list = $("recovery-codes");
    list.replaceChildren(...result.body.recovery_codes.map((code) => {
      const item = document.createElement("li");
      item.textContent = code;
      return item;
    }));
    $("totp-enrol").hidden = true;
    $("totp-recovery").hidden = false;
    status("Two-step verification is on.");
  });
  $("recovery-saved").addEventListener("click", () => {
    $("recovery-codes").replaceChildren();
    showFactor(true);
  });
  $("totp-disable").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("totp-disable-code").value.trim();
    const body = /^[0-9]{6}$/.test(value) ? { code: value } : { recovery_code: value };
    sensitive(() => api("DELETE", "/v1/totp", body), (result) => {
      $("totp-disable-code").value = "";
      if (result.status !== 204) return status(messages[result.body && result.body.error] || "Could not turn it off.", true);
      showFactor(false);
      status("Two-step verification is off.");
    });
  });
  show();
});
