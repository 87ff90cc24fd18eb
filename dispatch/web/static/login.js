"use strict";
(() => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const homes = { worker: "/worker", council: "/council" };
  const homeOf = (role) => homes[role] || "/console";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = { username: form.username.value.trim(), password: form.password.value };
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "civicwatch" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    if (response.ok) {
      const data = await response.json();
      location.href = CW.localTarget(form.dataset.next) || homeOf(data.user.role);
      return;
    }
    if (response.status === 429) {
      const seconds = response.headers.get("Retry-After") || "60";
      error.textContent = CW.t("ui", "login_rate_limited").replace("{seconds}", seconds);
    } else {
      error.textContent = CW.t("ui", "login_failed");
    }
    error.hidden = false;
  });
})();
