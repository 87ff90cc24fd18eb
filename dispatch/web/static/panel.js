// The case panel and the worker's case page: "show all frames" and the response-template
// picker that fills a reason. The console swaps panels in
// after this script ran, so new forms are found as they appear (a MutationObserver).
"use strict";
(() => {
  const templatesByDepartment = new Map(); // department -> Promise<[{name, body}]>

  // A list from an API answer: a bare array, or the array under a usual key.
  const listOf = (data, ...keys) => {
    if (Array.isArray(data)) return data;
    for (const key of keys) if (data && Array.isArray(data[key])) return data[key];
    return [];
  };

  function cached(map, key, load) {
    if (!map.has(key)) map.set(key, load().catch(() => []));
    return map.get(key);
  }

  async function fillTemplates(select) {
    select.dataset.filled = "1";
    const department = select.dataset.department;
    const url = "/api/v1/templates" + (department ? `?department=${encodeURIComponent(department)}` : "");
    const templates = await cached(templatesByDepartment, department,
      async () => listOf(await CW.api(url), "templates", "items"));
    for (const template of templates) {
      if (typeof template.body !== "string") continue;
      const option = document.createElement("option");
      option.value = template.body;
      option.textContent = template.name || template.body.slice(0, 40);
      select.append(option);
    }
    const label = select.closest(".template-label");
    if (label) label.hidden = select.options.length < 2; // nothing to pick: no picker
  }

  function fill(root) {
    for (const select of root.querySelectorAll("select.template-picker:not([data-filled])")) {
      fillTemplates(select);
    }
  }

  document.addEventListener("change", (event) => {
    const picker = event.target.closest("select.template-picker");
    if (!picker || !picker.value) return;
    const reason = picker.closest("form").querySelector("textarea[name=reason]");
    if (reason) {
      reason.value = picker.value;
      reason.focus();
    }
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.show-all-frames");
    if (!button) return;
    const frames = button.closest(".evidence").querySelector(".frames");
    button.disabled = true;
    await CW.swap(button.dataset.url, ".all-frames", frames);
    button.remove();
  });

  fill(document);
  new MutationObserver(() => fill(document)).observe(document.body, { childList: true, subtree: true });
})();
