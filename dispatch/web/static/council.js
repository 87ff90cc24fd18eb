// The council's consultation page: comments, proposals and votes go to the consultation API
// (CW.api adds the X-Requested-With header the session cookie needs); then the page reloads
// with the new thread and tallies. A refusal shows in the page's language (error.consultation_*).
"use strict";
(() => {
  const main = document.querySelector("main");
  const { id } = JSON.parse(document.getElementById("council-data").textContent);
  const base = `/api/v1/consultations/${id}`;

  async function send(button, url, json) {
    button.disabled = true;
    try {
      await CW.api(url, { method: "POST", json });
      CW.showError(main, null);
      location.reload();
    } catch (error) {
      CW.showError(main, error);
      button.disabled = false;
    }
  }

  for (const form of document.querySelectorAll("form.council-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = form.elements.body.value;
      send(form.querySelector("button"), `${base}/${form.dataset.kind}`, { body });
    });
  }
  // The countdown to the deadline, each minute.
  const left = document.getElementById("council-left");
  function tick() {
    const minutes = Math.floor((Date.parse(left.dataset.deadline) - Date.now()) / 60000);
    left.textContent =
      minutes <= 0
        ? left.dataset.up
        : left.dataset.left
            .replace("{hours}", String(Math.floor(minutes / 60)))
            .replace("{minutes}", String(minutes % 60));
  }
  if (left) {
    tick();
    setInterval(tick, 30000);
  }

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button.council-vote");
    if (!button) return;
    const url = `${base}/proposals/${button.dataset.proposal}/votes`;
    send(button, url, { choice: button.dataset.choice });
  });
})();
