// The response templates' admin page: each form saves through /api/v1/templates, then the page
// reloads so the list shows what the server kept, by name. Names and texts go trimmed: the API
// refuses spaces at either end.
"use strict";
(() => {
  const words = JSON.parse(document.getElementById("templates-words").textContent);
  const main = document.querySelector("main");
  const done = main.querySelector(".templates-done");

  function payload(form) {
    const data = new FormData(form);
    return {
      name: String(data.get("name") || "").trim(),
      body: String(data.get("body") || "").trim(),
      department: data.get("department") || null,
    };
  }

  async function run(form, call, message) {
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await call();
      CW.showError(main, null);
      sessionStorage.setItem("templates-done", message);
      location.reload();
    } catch (error) {
      CW.showError(main, error);
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  main.addEventListener("submit", (event) => {
    const form = event.target.closest("form.template-form");
    if (!form) return;
    event.preventDefault();
    const id = form.dataset.templateId;
    const url = id ? `/api/v1/templates/${id}` : "/api/v1/templates";
    run(form, () => CW.api(url, { method: id ? "PUT" : "POST", json: payload(form) }), words.saved);
  });

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button.template-delete");
    if (!button) return;
    const form = button.closest("form.template-form");
    if (!window.confirm(words.confirm_delete)) return;
    const url = `/api/v1/templates/${form.dataset.templateId}`;
    run(form, () => CW.api(url, { method: "DELETE" }), words.deleted);
  });

  const message = sessionStorage.getItem("templates-done");
  if (message) {
    sessionStorage.removeItem("templates-done");
    done.textContent = message;
    done.hidden = false;
  }
})();
