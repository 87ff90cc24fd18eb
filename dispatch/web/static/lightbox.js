// The evidence lightbox: a frame full size, zoom (wheel, pinch, buttons, + - 0) and pan (drag),
// ← → between frames, Esc to close, and a before/after view (the first frame beside the latest).
// The markup, in the page's language, comes from the _macros.html lightbox() macro; the panel can
// be swapped in after this script ran, so everything is found from the click (delegation).
"use strict";
const CWLightbox = (() => {
  const MIN = 1;
  const MAX = 8;
  let box = null; // the open .lightbox
  let frames = []; // [{full, caption}]
  let index = 0;
  let comparing = false;
  let scale = 1;
  let x = 0;
  let y = 0;
  const pointers = new Map(); // pointerId -> {x, y}
  let pinch = null; // {distance, scale}
  let lastFocus = null;

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  function apply() {
    if (!box) return;
    for (const img of box.querySelectorAll(".lb-pane img")) {
      img.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    }
    box.querySelector(".lb-scale").textContent = `${Math.round(scale * 100)}%`;
    box.dataset.scale = String(scale);
  }

  // Zoom to ``next`` keeping the point (cx, cy) of the stage (pixels from its centre) still.
  function zoomTo(next, cx = 0, cy = 0) {
    const target = clamp(next, MIN, MAX);
    const ratio = target / scale;
    x = cx - (cx - x) * ratio;
    y = cy - (cy - y) * ratio;
    scale = target;
    if (scale === 1) { x = 0; y = 0; }
    apply();
  }

  function setPane(pane, frame) {
    let img = pane.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.draggable = false;
      pane.prepend(img);
    }
    img.src = frame.full;
    img.alt = frame.caption;
    pane.querySelector(".lb-pane-caption").textContent = frame.caption;
  }

  function show() {
    const panes = box.querySelectorAll(".lb-pane");
    if (comparing) {
      setPane(panes[0], frames[0]);
      setPane(panes[1], frames[frames.length - 1]);
      panes[1].hidden = false;
      box.querySelector(".lightbox-caption").textContent =
        `${frames[0].caption} ⇄ ${frames[frames.length - 1].caption}`;
    } else {
      setPane(panes[0], frames[index]);
      panes[1].hidden = true;
      box.querySelector(".lightbox-caption").textContent =
        `${frames[index].caption} (${index + 1}/${frames.length})`;
    }
    box.classList.toggle("comparing", comparing);
    box.querySelector(".lb-prev").disabled = comparing || index === 0;
    box.querySelector(".lb-next").disabled = comparing || index === frames.length - 1;
    box.querySelector(".lb-compare").disabled = frames.length < 2;
    box.querySelector(".lb-compare").setAttribute("aria-pressed", String(comparing));
    scale = 1; x = 0; y = 0;
    apply();
  }

  function open(lightbox, list, start, compare = false) {
    if (!lightbox || !list.length) return;
    box = lightbox;
    frames = list;
    index = clamp(start, 0, list.length - 1);
    comparing = compare && list.length > 1;
    lastFocus = document.activeElement;
    box.hidden = false;
    document.body.classList.add("lightbox-open");
    show();
    box.querySelector(".lb-close").focus();
  }

  function close() {
    if (!box) return;
    box.hidden = true;
    document.body.classList.remove("lightbox-open");
    box = null;
    pointers.clear();
    pinch = null;
    if (lastFocus && lastFocus.focus) lastFocus.focus();
  }

  function step(delta) {
    if (!box || comparing) return;
    const next = clamp(index + delta, 0, frames.length - 1);
    if (next !== index) { index = next; show(); }
  }

  function framesOf(root) {
    return [...root.querySelectorAll("a.frame-open")].map((a) => ({
      full: a.dataset.full, caption: a.dataset.caption || "",
    }));
  }

  // The evidence a click belongs to, and the lightbox of its case panel.
  function scopeOf(element) {
    const evidence = element.closest(".evidence") || document;
    const panel = element.closest(".case-panel") || document;
    return { evidence, lightbox: panel.querySelector(".lightbox") };
  }

  function stagePoint(event) {
    const rect = box.querySelector(".lightbox-stage").getBoundingClientRect();
    return [event.clientX - rect.left - rect.width / 2, event.clientY - rect.top - rect.height / 2];
  }

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("a.frame-open");
    if (opener && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      const { evidence, lightbox } = scopeOf(opener);
      const links = [...evidence.querySelectorAll("a.frame-open")];
      open(lightbox, framesOf(evidence), links.indexOf(opener));
      return;
    }
    const compare = event.target.closest("button.compare-frames");
    if (compare) {
      const { evidence, lightbox } = scopeOf(compare);
      open(lightbox, framesOf(evidence), 0, true);
      return;
    }
    if (!box || !box.contains(event.target)) return;
    const button = event.target.closest("button");
    if (!button) {
      if (event.target.classList.contains("lightbox-stage")) close(); // the dark backdrop
      return;
    }
    if (button.classList.contains("lb-close")) close();
    else if (button.classList.contains("lb-prev")) step(-1);
    else if (button.classList.contains("lb-next")) step(1);
    else if (button.classList.contains("lb-zoom-in")) zoomTo(scale * 1.5);
    else if (button.classList.contains("lb-zoom-out")) zoomTo(scale / 1.5);
    else if (button.classList.contains("lb-reset")) zoomTo(1);
    else if (button.classList.contains("lb-compare")) { comparing = !comparing; show(); }
  });

  document.addEventListener("keydown", (event) => {
    if (!box) return;
    const actions = {
      Escape: close, ArrowLeft: () => step(-1), ArrowRight: () => step(1),
      "+": () => zoomTo(scale * 1.5), "=": () => zoomTo(scale * 1.5),
      "-": () => zoomTo(scale / 1.5), "0": () => zoomTo(1),
      c: () => { if (frames.length > 1) { comparing = !comparing; show(); } },
    };
    const action = actions[event.key];
    if (action) { event.preventDefault(); action(); }
  });

  document.addEventListener("wheel", (event) => {
    if (!box || !event.target.closest(".lightbox-stage")) return;
    event.preventDefault();
    const [cx, cy] = stagePoint(event);
    zoomTo(scale * Math.exp(-event.deltaY * 0.0015), cx, cy);
  }, { passive: false });

  // One pointer pans (once zoomed); two pinch.
  document.addEventListener("pointerdown", (event) => {
    if (!box || !event.target.closest(".lb-pane")) return;
    event.preventDefault();
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y), scale };
    }
  });
  document.addEventListener("pointermove", (event) => {
    if (!box || !pointers.has(event.pointerId)) return;
    const previous = pointers.get(event.pointerId);
    const now = { x: event.clientX, y: event.clientY };
    pointers.set(event.pointerId, now);
    if (pointers.size === 2 && pinch) {
      const [a, b] = [...pointers.values()];
      const distance = Math.hypot(a.x - b.x, a.y - b.y);
      if (pinch.distance > 0) zoomTo(pinch.scale * (distance / pinch.distance));
    } else if (pointers.size === 1 && scale > 1) {
      x += now.x - previous.x;
      y += now.y - previous.y;
      apply();
    }
  });
  const release = (event) => {
    pointers.delete(event.pointerId);
    if (pointers.size < 2) pinch = null;
  };
  document.addEventListener("pointerup", release);
  document.addEventListener("pointercancel", release);

  return { open, close, zoomTo };
})();
