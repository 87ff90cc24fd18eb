// The reports page's form. A change made with the session cookie must carry the CSRF header
// (dispatch/auth.py), which a plain form cannot send: post it with fetch, then open the report
// or show the server's one-line refusal above the form.
"use strict";

(() => {
  const form = document.getElementById("report-form");
  if (!form) {
    return;
  }
  const button = document.getElementById("report-generate");

  function showError(text) {
    let line = document.getElementById("report-error");
    if (!line) {
      line = document.createElement("p");
      line.id = "report-error";
      line.className = "report-error";
      line.setAttribute("role", "alert");
      form.before(line);
    }
    line.textContent = text;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action + window.location.search, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-Requested-With": "civicwatch" },
        credentials: "same-origin",
      });
      if (response.ok && response.redirected) {
        window.location.assign(response.url);
        return;
      }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const refusal = page.getElementById("report-error");
      showError(refusal ? refusal.textContent : form.dataset.failed);
    } catch (error) {
      showError(form.dataset.failed);
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
})();
