// Shared by every page: messages, API calls with the CSRF header, action forms, sign-out.
"use strict";
const CW = (() => {
  const messages = JSON.parse(document.getElementById("i18n").textContent);
  const t = (group, key) => (messages[group] && messages[group][key]) || key;
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
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const detail = data && data.detail;
      const message = typeof detail === "string" ? detail : JSON.stringify(detail);
      const error = new Error(message || response.statusText);
      error.status = response.status;
      error.response = response;
      throw error;
    }
    return data;
  }

  function showError(root, error) {
    const box = root.querySelector(".action-error");
    if (!box) return;
    box.textContent = error ? t("ui", "action_failed") + ": " + error.message : "";
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

  return { t, zoneOf, api, bindActionForms, openFeed, swap, showError, localTarget };
})();
