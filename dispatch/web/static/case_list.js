// The console's case list: filter bar, row keys, selection and bulk actions, saved views and
// keyboard shortcuts. The filter lives in the URL; the list itself is redrawn by console.js.
"use strict";
(() => {
  const cases = document.getElementById("cases");
  if (!cases) return;
  const words = JSON.parse(document.getElementById("list-i18n").textContent);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
  const say = (key, values = {}) => fill((words.list && words.list[key]) || key, values);

  // A refusal in the page's language: its code's message, else a translated generic failure
  // (never the API's English detail on a Chinese page).
  function refusal(result) {
    const template = result.code && words.error && words.error[result.code];
    return template ? fill(template, result.params || {}) : CW.refusalText(result.code, result.params);
  }

  // --- the filter: submitted as a clean URL (no empty fields), so it can be linked ---------
  const filter = document.getElementById("case-filter");
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    const defaults = new Set([...filter.querySelectorAll("[data-default]")].map(
      (field) => `${field.name}=${field.dataset.default}`));
    for (const [name, value] of new FormData(filter).entries()) {
      // Blanks and defaults stay out: the URL says only what narrows or orders the list.
      if (String(value).trim() === "" || defaults.has(`${name}=${value}`)) continue;
      query.append(name, value);
    }
    const lang = new URLSearchParams(location.search).get("lang");
    if (lang) query.append("lang", lang);
    const text = query.toString();
    location.assign(text ? `/console?${text}` : "/console");
  });

  // --- rows: Enter or Space on a focused row opens its case ---------------------------------
  const rows = () => [...cases.querySelectorAll("tr.case-row")];
  const openRow = (row) =>
    document.dispatchEvent(new CustomEvent("cw:open-case", { detail: row.dataset.caseId }));
  cases.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr.case-row");
    if (!row || event.target !== row) return; // a key on the row's checkbox or link is theirs
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openRow(row);
    }
  });

  // --- selection, kept across the list's live redraws --------------------------------------
  const selected = new Set();
  const count = document.getElementById("bulk-count");
  function showSelection() {
    for (const box of cases.querySelectorAll("input.pick-case")) box.checked = selected.has(box.value);
    const all = document.getElementById("select-all");
    const boxes = [...cases.querySelectorAll("input.pick-case")];
    if (all) all.checked = boxes.length > 0 && boxes.every((box) => box.checked);
    count.textContent = say("selected", { count: selected.size });
  }
  function pick(box, on) {
    if (on) selected.add(box.value);
    else selected.delete(box.value);
  }
  cases.addEventListener("change", (event) => {
    const box = event.target;
    if (box.id === "select-all") {
      for (const one of cases.querySelectorAll("input.pick-case")) pick(one, box.checked);
    } else if (box.classList.contains("pick-case")) {
      pick(box, box.checked);
    }
    showSelection();
  });
  document.addEventListener("cw:list-drawn", showSelection);

  // --- bulk actions -------------------------------------------------------------------------
  const bulk = document.getElementById("bulk-form");
  const action = document.getElementById("bulk-action");
  const department = document.getElementById("bulk-department");
  const person = document.getElementById("bulk-person");
  const results = document.getElementById("bulk-results");
  function showFields() {
    for (const field of bulk.querySelectorAll("[data-for]")) {
      field.hidden = !field.dataset.for.split(" ").includes(action.value);
    }
  }
  async function loadPeople() {
    person.replaceChildren();
    if (action.value !== "assign" || !department.value) return;
    let people = [];
    try {
      people = await CW.api(`/api/v1/departments/${encodeURIComponent(department.value)}/people`);
    } catch (error) {
      CW.showError(bulk, error);
      return;
    }
    if (!people.length) person.append(new Option(say("bulk_no_people"), ""));
    for (const one of people) {
      person.append(new Option(one.display_name || one.username, one.username));
    }
  }
  action.addEventListener("change", () => {
    showFields();
    loadPeople();
  });
  department.addEventListener("change", loadPeople);
  showFields();

  function showResults(answers) {
    results.replaceChildren();
    let ok = 0;
    for (const answer of answers) {
      const item = document.createElement("li");
      item.dataset.caseId = answer.case_id;
      item.className = answer.ok ? "ok" : "refused";
      const text = answer.ok ? say("bulk_ok") : `${say("bulk_refused")}: ${refusal(answer)}`;
      item.textContent = `#${answer.case_id} ${text}`;
      results.append(item);
      if (answer.ok) ok += 1;
    }
    const summary = document.createElement("li");
    summary.className = "summary";
    summary.textContent = say("bulk_done", { ok, refused: answers.length - ok });
    results.prepend(summary);
  }

  bulk.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!selected.size) {
      CW.showError(bulk, new Error(say("bulk_none_selected")));
      return;
    }
    const body = { case_ids: [...selected].map(Number), action: action.value };
    const reason = document.getElementById("bulk-reason").value.trim();
    if (action.value === "assign") body.assignee = person.value;
    if (action.value === "transfer") body.department = department.value;
    if (action.value === "close") body.close_reason = document.getElementById("bulk-close-reason").value;
    if (reason && action.value !== "assign") body.reason = reason;
    const button = document.getElementById("bulk-run");
    button.disabled = true;
    try {
      const answer = await CW.api("/api/v1/cases/bulk", { method: "POST", json: body });
      CW.showError(bulk, null);
      showResults(answer.results || answer);
      selected.clear();
      document.dispatchEvent(new CustomEvent("cw:list-changed"));
    } catch (error) {
      CW.showError(bulk, error.code ? new Error(refusal(error)) : error);
    } finally {
      button.disabled = false;
      showSelection();
    }
  });

  // --- saved views --------------------------------------------------------------------------
  const views = document.getElementById("saved-views");
  const saveForm = document.getElementById("save-view");
  if (saveForm) {
    saveForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const meta = document.getElementById("list-meta");
      const name = document.getElementById("view-name").value.trim();
      try {
        await CW.api("/api/v1/views", { method: "POST", json: { name, query: meta.dataset.query } });
        location.reload(); // the chips are the server's: one list, drawn one way
      } catch (error) {
        CW.showError(saveForm, error.code ? new Error(refusal(error)) : error);
      }
    });
  }
  views.addEventListener("click", async (event) => {
    const button = event.target.closest("button.delete-view");
    if (!button) return;
    try {
      await CW.api(`/api/v1/views/${button.dataset.viewId}`, { method: "DELETE" });
      button.closest(".view-chip").remove();
    } catch (error) {
      if (saveForm) CW.showError(saveForm, error);
    }
  });

  // --- keyboard shortcuts (? shows them) ----------------------------------------------------
  const help = document.getElementById("shortcuts");
  const openHelp = () => {
    help.hidden = false;
    document.getElementById("shortcuts-close").focus();
  };
  const closeHelp = () => {
    help.hidden = true;
  };
  document.getElementById("shortcuts-button").addEventListener("click", openHelp);
  document.getElementById("shortcuts-close").addEventListener("click", closeHelp);
  help.addEventListener("click", (event) => {
    if (event.target === help) closeHelp();
  });

  const typing = (target) =>
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  let current = -1; // the row j/k last moved to
  function focusRow(step) {
    const list = rows();
    if (!list.length) return;
    const at = list.indexOf(document.activeElement);
    const from = at >= 0 ? at : current;
    current = Math.max(0, Math.min(list.length - 1, from < 0 ? 0 : from + step));
    list[current].focus();
  }
  function currentRow() {
    const list = rows();
    const focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest("tr.case-row") : null;
    return focused || list[current] || null;
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      if (!help.hidden) closeHelp();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (!help.hidden) return;
    switch (event.key) {
      case "j":
        focusRow(1);
        break;
      case "k":
        focusRow(-1);
        break;
      case "/":
        document.getElementById("list-q").focus();
        break;
      case "x": {
        const row = currentRow();
        const box = row && row.querySelector("input.pick-case");
        if (!box) return;
        box.checked = !box.checked;
        pick(box, box.checked);
        showSelection();
        break;
      }
      case "a":
        action.value = "assign";
        showFields();
        department.focus();
        break;
      case "?":
        openHelp();
        break;
      default:
        return;
    }
    event.preventDefault();
  });
})();
