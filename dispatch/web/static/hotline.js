// The hotline form (12345 一键接办): one submit files the caller's report; the tracking code is
// shown large to read back, then the form starts afresh for the next call. Enter in any field
// but the description submits; Ctrl+Enter submits from the description too.
"use strict";
(() => {
  const words = JSON.parse(document.getElementById("hotline-i18n").textContent);
  const main = document.querySelector("main");
  const form = document.getElementById("hotline-form");
  const done = document.getElementById("hotline-done");
  // autofocus is skipped when the page is reached through a redirect that already moved focus.
  if (document.activeElement === document.body) form.elements.category.focus();

  function payload() {
    const data = new FormData(form);
    const text = (name) => String(data.get(name) || "").trim();
    return {
      category: text("category"),
      site_id: text("site_id"),
      building: text("building"),
      unit: text("unit"),
      description: text("description"),
      phone: text("phone"),
      contact_consent: data.get("contact_consent") === "on",
    };
  }

  async function submit() {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const receipt = await CW.api("/console/hotline", { method: "POST", json: payload() });
      CW.showError(main, null);
      document.getElementById("hotline-code").textContent = receipt.tracking_code;
      document.getElementById("hotline-where").textContent = (
        receipt.joined ? words.joined : words["tier_" + receipt.tier] || ""
      ).replace("{case_id}", receipt.case_id);
      document.getElementById("hotline-case").href = receipt.case_url;
      done.hidden = false;
      form.reset();
      form.elements.category.focus();
    } catch (error) {
      CW.showError(main, error);
    } finally {
      button.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.target.type === "submit") return;
    if (event.target.tagName === "TEXTAREA" && !event.ctrlKey) return;
    event.preventDefault();
    form.requestSubmit();
  });
})();
