// The vehicle registry: the form registers a vehicle (POST) or, after "Edit" on a row, changes
// it (PUT); "Delete" takes one off; the import form sends the chosen CSV file as the body of
// /api/v1/registry/import. A refused import shows its rows, columns and reasons in the page's
// language; every value is set as text, never as markup.
"use strict";
(() => {
  const words = JSON.parse(document.getElementById("page-words").textContent);
  const main = document.querySelector("main");
  const done = main.querySelector(".page-done");
  const lang = document.documentElement.lang === "en" ? "en" : "zh-CN";
  const form = document.getElementById("vehicle-form");
  const title = document.querySelector("#vehicle-edit h2");
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ""));

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

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { site_id: form.dataset.siteId };
    for (const name of ["plate", "category", "building", "unit", "owner_name", "phone"]) {
      body[name] = String(data.get(name) || "").trim();
    }
    body.plate = body.plate.toUpperCase();
    const id = form.dataset.vehicleId;
    const url = id ? `/api/v1/registry/vehicles/${encodeURIComponent(id)}` : "/api/v1/registry/vehicles";
    run(form.querySelectorAll("button"), () => CW.api(url, { method: id ? "PUT" : "POST", json: body }), words.saved);
  });
  form.addEventListener("reset", () => {
    delete form.dataset.vehicleId;
    title.textContent = words.add;
  });

  main.addEventListener("click", (event) => {
    const row = event.target.closest("tr.vehicle");
    if (!row) return;
    if (event.target.closest("button.vehicle-edit")) {
      form.dataset.vehicleId = row.dataset.vehicleId;
      form.elements.plate.value = row.dataset.plate;
      form.elements.category.value = row.dataset.category;
      form.elements.building.value = row.dataset.building;
      form.elements.unit.value = row.dataset.unit;
      form.elements.owner_name.value = row.dataset.ownerName;
      form.elements.phone.value = row.dataset.phone;
      title.textContent = `${words.edit} ${row.dataset.plate}`;
      form.scrollIntoView();
    } else if (event.target.closest("button.vehicle-delete")) {
      if (!window.confirm(words.confirm_delete)) return;
      const url = `/api/v1/registry/vehicles/${encodeURIComponent(row.dataset.vehicleId)}`;
      run([event.target], () => CW.api(url, { method: "DELETE" }), words.deleted);
    }
  });

  const importForm = document.getElementById("import-form");
  const report = document.getElementById("import-report");
  importForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = importForm.elements.file.files[0];
    if (!file) return;
    const button = importForm.querySelector("button");
    button.disabled = true;
    report.hidden = true;
    CW.showError(main, null);
    try {
      const url = `/api/v1/registry/import?site_id=${encodeURIComponent(importForm.dataset.siteId)}`;
      const response = await fetch(url, {
        method: "POST",
        headers: { "X-Requested-With": "civicwatch", Accept: "application/json", "Content-Type": "text/csv" },
        body: file,
        credentials: "same-origin",
      });
      const data = await response.json().catch(() => null);
      if (response.ok) {
        sessionStorage.setItem("page-done", fill(words.import_done, data));
        location.reload();
        return;
      }
      if (data && data.code === "csv_rows_invalid") {
        showReport(data);
      } else {
        const code = data && typeof data.code === "string" ? data.code : "";
        CW.showError(main, new Error(CW.refusalText(code, (data && data.params) || {}, response.status)));
      }
    } catch (error) {
      CW.showError(main, error);
    }
    button.disabled = false;
  });

  function showReport(data) {
    const body = report.querySelector("tbody");
    body.replaceChildren();
    report.querySelector(".import-summary").textContent =
      `${words.import_errors} ${CW.refusalText("csv_rows_invalid", data.params || {}, 422)}`;
    for (const problem of data.errors) {
      const tr = document.createElement("tr");
      tr.className = "import-error";
      const column = words.columns[problem.column] || problem.column;
      for (const text of [problem.row, column, problem.message[lang], problem.value]) {
        const td = document.createElement("td");
        td.textContent = String(text ?? "");
        tr.append(td);
      }
      body.append(tr);
    }
    report.hidden = false;
  }

  const message = sessionStorage.getItem("page-done");
  if (message) {
    sessionStorage.removeItem("page-done");
    done.textContent = message;
    done.hidden = false;
  }
})();
