// The wall (大屏): a clock, and the body redrawn on each entry of the live feed (debounced), or
// every few seconds while the feed is down. Newly urgent cases flash.
"use strict";
(() => {
  const wall = document.getElementById("wall");
  if (!wall) return;
  const body = document.getElementById("wall-body");
  const live = document.getElementById("wall-live");
  const clock = document.getElementById("wall-clock");
  const words = JSON.parse(document.getElementById("wall-i18n").textContent);
  const zone = wall.dataset.zone || undefined;
  const fallbackMs = Number(wall.dataset.refreshSeconds || 30) * 1000;

  const tick = () => {
    clock.textContent = new Date().toLocaleTimeString(document.documentElement.lang, {
      hour12: false, timeZone: zone,
    });
  };
  tick();
  setInterval(tick, 1000);

  const urgentIds = () => new Set(
    [...body.querySelectorAll("#wall-urgent [data-case-id]")].map((li) => li.dataset.caseId));

  let timer = null;
  let busy = false;
  async function redraw() {
    if (busy) return;
    busy = true;
    const before = urgentIds();
    try {
      await CW.swap("/wall/fragment", null, body);
      for (const item of body.querySelectorAll("#wall-urgent [data-case-id]")) {
        if (!before.has(item.dataset.caseId)) item.classList.add("arrived");
      }
    } finally {
      busy = false;
    }
  }
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(redraw, 250);
  };

  let connected = false;
  setInterval(() => { if (!connected) redraw(); }, fallbackMs);
  // Even with the feed up, the deadlines count down: redraw once a minute.
  setInterval(redraw, 60000);

  CW.openFeed(wall.dataset.feedSeq, soon, (isLive) => {
    connected = isLive;
    live.textContent = isLive ? words.live : words.reconnecting;
    live.classList.toggle("live", isLive);
  });
})();
