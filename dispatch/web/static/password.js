"use strict";
// Change one's own password: the new one twice, then POST /api/v1/auth/password.
(() => {
  const form = document.getElementById("password-form");
  const error = document.getElementById("password-error");
  const homeOf = (role) => (role === "worker" ? "/worker" : "/console");
  const show = (key, values = {}) => {
    let text = CW.t("ui", key);
    for (const [name, value] of Object.entries(values)) text = text.replace(`{${name}}`, value);
    error.textContent = text;
    error.hidden = false;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (form.new.value !== form.confirm.value) {
      show("password_mismatch");
      return;
    }
    // minlength is the server's rule too; the server says which rule a refusal broke.
    const response = await fetch("/api/v1/auth/password", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "civicwatch" },
      credentials: "same-origin",
      body: JSON.stringify({ current_password: form.current.value, new_password: form.new.value }),
    });
    if (response.ok) {
      const me = await (await fetch("/api/v1/auth/me", { credentials: "same-origin" })).json();
      location.href = CW.localTarget(form.dataset.next) || homeOf(me.role);
      return;
    }
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      return;
    }
    if (response.status === 429) {
      show("login_rate_limited", { seconds: response.headers.get("Retry-After") || "60" });
      return;
    }
    const data = await response.json().catch(() => null);
    const code = data && data.detail && data.detail.code;
    const known = code && CW.t("ui", code) !== code;
    show(known ? code : "password_change_failed", { min: form.dataset.min });
  });
})();
