// Shared by every page: messages, API calls with the CSRF header, action forms, sign-out.
"use strict";
const CW = (() => {
  const messages = JSON.parse(document.getElementById("i18n").textContent);
  const t = (group, key) => (messages[group] && messages[group][key]) || key;
  // "{name}" placeholders filled from values; a value that is an enum the page can name
  // (params {action: "resolve", state: "closed"}) shows by its name in the page's language.
  const fill = (text, values = {}) =>
    text.replace(/\{(\w+)\}/g, (_, name) => {
      const value = values[name];
      if (value === undefined || value === null || typeof value === "object") return "";
      const group = messages[name];
      return group && typeof group === "object" && group[value] ? group[value] : String(value);
    });

  // An API refusal ({detail, code, params}) in the page's language: its code's message, else a
  // generic failure with the HTTP status. Never the API's English detail on a Chinese page.
  function refusalText(code, params, status) {
    const template = code && messages.error && messages.error[code];
    if (template) return fill(template, params || {});
    return status ? fill(t("ui", "action_failed_status"), { status }) : t("ui", "action_failed");
  }
  // A site's IANA time zone (undefined: the browser's own) for showing its times.
  const zoneOf = (siteId) => (messages.zones && messages.zones[siteId]) || undefined;

  async function api(url, { method = "GET", json, form } = {}) {
    const headers = { "X-Requested-With": "civicwatch", Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new Error(t("ui", "login"));
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null; // a proxy's HTML error page: the status says enough
    }
    if (!response.ok) {
      // The older shape nested the code under detail; both are read.
      const shape = data && typeof data.detail === "object" && data.detail ? data.detail : data;
      const code = shape && typeof shape.code === "string" ? shape.code : "";
      const params = (shape && shape.params) || {};
      const error = new Error(refusalText(code, params, response.status));
      error.status = response.status;
      error.code = code;
      error.params = params;
      error.response = response;
      throw error;
    }
    return data;
  }

  function showError(root, error) {
    const box = root.querySelector(".action-error");
    if (!box) return;
    // api()'s errors and the pages' own carry a message in the page's language; fetch's
    // TypeError ("Failed to fetch") is in the browser's language: say the network failed.
    const text = error && (error instanceof TypeError ? t("ui", "network_failed") : error.message);
    box.textContent = error ? t("ui", "action_failed") + ": " + text : "";
    box.hidden = !error;
  }

  // Every .action-form under root posts to the case's actions endpoint; then done() runs.
  function bindActionForms(root, done) {
    root.addEventListener("submit", async (event) => {
      const form = event.target.closest("form.action-form");
      if (!form) return;
      event.preventDefault();
      const data = new FormData(form);
      const body = { action: form.dataset.action };
      for (const [key, value] of data.entries()) {
        if (value === "") continue;
        body[key] = key === "duplicate_of" ? Number(value) : value;
      }
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        await api(`/api/v1/cases/${form.dataset.caseId}/actions`, { method: "POST", json: body });
        showError(root, null);
        await done(form.dataset.caseId);
      } catch (error) {
        showError(root, error);
      } finally {
        button.disabled = false;
      }
    });
  }

  // Case changes as Server-Sent Events; the browser resumes from Last-Event-ID by itself.
  function openFeed(after, onCase, onStatus) {
    const source = new EventSource(`/api/v1/feed?after=${encodeURIComponent(after)}`);
    source.addEventListener("case", (event) => onCase(JSON.parse(event.data)));
    source.addEventListener("reset", () => location.reload());
    source.onopen = () => onStatus && onStatus(true);
    source.onerror = () => onStatus && onStatus(false);
    return source;
  }

  async function swap(url, selector, target) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.redirected && new URL(response.url).pathname === "/login") {
      location.href = response.url; // the session ended: sign in again
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    if (selector) {
      const page = new DOMParser().parseFromString(html, "text/html");
      const part = page.querySelector(selector);
      if (part) target.innerHTML = part.innerHTML;
    } else {
      target.innerHTML = html;
    }
  }

  // A URL on this origin for a server-checked ``next`` (dispatch/web/redirects.py), or "":
  // resolved as the browser would, so nothing that leaves the site gets through.
  function localTarget(next) {
    if (!next) return "";
    try {
      const url = new URL(next, location.origin);
      return url.origin === location.origin ? url.href : "";
    } catch {
      return "";
    }
  }

  // Forms that only script can send come with their submit buttons disabled
  // (data-needs-script): a tap, or Enter, while the page's scripts still load would submit
  // the form natively, reloading the page with its fields (a password too) in the URL and
  // losing the action. Armed once every page script has bound its handlers, and again for
  // panels swapped in later.
  function armScriptForms(root) {
    for (const button of root.querySelectorAll("button[data-needs-script]")) {
      button.removeAttribute("data-needs-script");
      button.disabled = false;
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    armScriptForms(document);
    new MutationObserver(() => armScriptForms(document)).observe(document.body, {
      childList: true,
      subtree: true,
    });
  });

  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try {
        await api("/api/v1/auth/logout", { method: "POST" });
      } finally {
        location.href = "/login";
      }
    });
  }

  return {
    t,
    fill,
    refusalText,
    zoneOf,
    api,
    bindActionForms,
    openFeed,
    swap,
    showError,
    localTarget,
  };
})();
