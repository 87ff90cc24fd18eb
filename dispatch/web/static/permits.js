// Temporary permits: the form issues one through /api/v1/exemptions/permits, each row's button
// revokes one (with a reason); then the page reloads. Times are the browser's local times, sent
// with their offset.
"use strict";
(() => {
  const words = JSON.parse(document.getElementById("page-words").textContent);
  const main = document.querySelector("main");
  const done = main.querySelector(".page-done");
  const iso = (value) => (value ? new Date(value).toISOString() : value);

  async function run(buttons, call, message) {
    buttons.forEach((b) => (b.disabled = true));
    try {
      await call();
      sessionStorage.setItem("page-done", message);
      location.reload();
    } catch (error) {
      CW.showError(main, error);
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  const form = document.getElementById("permit-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const body = {
        site_id: form.dataset.siteId,
        zone_id: data.get("zone_id") || null,
        plate: String(data.get("plate") || "").trim().toUpperCase(),
        valid_from: iso(data.get("valid_from")),
        valid_to: iso(data.get("valid_to")),
        reason: String(data.get("reason") || "").trim(),
      };
      const call = () => CW.api("/api/v1/exemptions/permits", { method: "POST", json: body });
      run(form.querySelectorAll("button"), call, words.issued);
    });
  }

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button.permit-revoke");
    if (!button) return;
    const reason = window.prompt(words.revoke_reason);
    if (!reason || !reason.trim()) return;
    const url = `/api/v1/exemptions/permits/${encodeURIComponent(button.dataset.ruleId)}/revoke`;
    run([button], () => CW.api(url, { method: "POST", json: { reason: reason.trim() } }), words.revoked);
  });

  const message = sessionStorage.getItem("page-done");
  if (message) {
    sessionStorage.removeItem("page-done");
    done.textContent = message;
    done.hidden = false;
  }
})();
