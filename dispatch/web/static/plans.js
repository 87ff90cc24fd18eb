// The admin's site plans: upload a plan image; click the plan (or drag a dot) to put the chosen
// camera there. Both go through CW.api, which sends the CSRF header.
"use strict";
(() => {
  const root = document.querySelector(".plan-admin main") || document.body;
  const done = document.querySelector(".plan-admin-done");
  const fail = (error) => CW.showError(root, error);
  const said = (key) => {
    CW.showError(root, null);
    done.textContent = CW.t("places", key);
    done.hidden = false;
  };

  for (const form of document.querySelectorAll("form.plan-upload")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new FormData(form);
      try {
        await CW.api(`/api/v1/sites/${encodeURIComponent(form.dataset.siteId)}/plan`,
          { method: "PUT", form: body });
        said("uploaded");
        location.reload();
      } catch (error) {
        fail(error);
      }
    });
  }

  // The point under the pointer as fractions of the plan (its viewBox), clamped to 0..1.
  function fractionAt(svg, event) {
    const point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const inPlan = point.matrixTransform(svg.getScreenCTM().inverse());
    const box = svg.viewBox.baseVal;
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp(inPlan.x / box.width), y: clamp(inPlan.y / box.height) };
  }

  async function place(cameraId, at) {
    try {
      await CW.api(`/api/v1/cameras/${encodeURIComponent(cameraId)}/placement`,
        { method: "PUT", json: at });
      said("placed");
      location.reload();
    } catch (error) {
      fail(error);
    }
  }

  for (const section of document.querySelectorAll(".site-plan-admin")) {
    const svg = section.querySelector("svg.plan");
    const select = section.querySelector("select.plan-camera");
    if (!svg || !select) continue;
    let dragging = null;
    svg.addEventListener("pointerdown", (event) => {
      const dot = event.target.closest(".camera-dot");
      if (dot) {
        dragging = dot.dataset.cameraId;
        select.value = dragging;
        svg.setPointerCapture(event.pointerId);
      }
    });
    svg.addEventListener("pointerup", (event) => {
      const cameraId = dragging || select.value;
      dragging = null;
      if (cameraId) place(cameraId, fractionAt(svg, event));
    });
  }
})();
