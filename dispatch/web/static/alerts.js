// Urgent-case alerts at the console. An urgent case (a blocked fire lane, or priority urgent or
// high) arriving on the live feed flashes its feed item and list row; a person who opted in
// also hears a beep (WebAudio, no sound file) and gets a desktop notification.
"use strict";
const CWAlerts = (() => {
  const words = JSON.parse(document.getElementById("list-i18n").textContent);
  const say = (key, values = {}) =>
    ((words.list && words.list[key]) || key).replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
  const box = document.getElementById("alert-prefs");
  const soundBox = document.getElementById("alert-sound");
  const desktopBox = document.getElementById("alert-desktop");
  const denied = document.getElementById("alert-denied");
  const prefs = {
    sound: Boolean(box && box.dataset.sound === "true"),
    desktop: Boolean(box && box.dataset.desktop === "true"),
  };

  // Mirrors dispatch/web/case_list.py is_urgent: the fire-lane kind, or an urgent/high priority.
  const URGENT_KINDS = new Set(["fire_lane_blocking"]);
  const URGENT_PRIORITIES = new Set(["urgent", "high"]);
  const isUrgent = (c) => URGENT_KINDS.has(c.kind) || URGENT_PRIORITIES.has(c.priority);

  // Cases to flash when the list is next drawn (it refreshes a moment after the feed entry).
  const pending = new Map();
  const FLASH_MS = 15000;

  let audio = null;
  // Browsers start audio only after a gesture: the context is made (or resumed) on one.
  function wakeAudio() {
    if (!prefs.sound) return;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume();
  }
  document.addEventListener("pointerdown", wakeAudio, { capture: true });
  document.addEventListener("keydown", wakeAudio, { capture: true });

  function beep() {
    wakeAudio();
    if (!audio) return;
    const start = audio.currentTime;
    for (const offset of [0, 0.3]) {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "square";
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.001, start + offset + 0.2);
      tone.connect(gain).connect(audio.destination);
      tone.start(start + offset);
      tone.stop(start + offset + 0.22);
    }
  }

  function notify(entry) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const c = entry.case;
    const place = [c.site_id, c.camera_id, c.zone_id].filter(Boolean).join(" / ");
    const note = new Notification(say("alert_title", { case_id: entry.case_id }), {
      body: say("alert_body", { kind: CW.t("kind", c.kind), place }),
      tag: `civicwatch-case-${entry.case_id}`,
    });
    note.onclick = () => {
      window.focus();
      document.dispatchEvent(new CustomEvent("cw:open-case", { detail: entry.case_id }));
    };
  }

  function flash(element) {
    if (!element) return;
    element.classList.remove("urgent-flash");
    void element.offsetWidth; // restart the animation on an element that flashed before
    element.classList.add("urgent-flash");
  }

  function flashRows() {
    const now = Date.now();
    for (const [caseId, since] of pending) {
      if (now - since > FLASH_MS) {
        pending.delete(caseId);
        continue;
      }
      const row = document.querySelector(`#cases tr.case-row[data-case-id="${caseId}"]`);
      if (row && !row.classList.contains("urgent-flash")) flash(row);
    }
  }

  // A feed entry and its item: alerts when it is an urgent case just registered.
  function onEntry(entry, item) {
    const since = pending.get(String(entry.case_id));
    if (since !== undefined && Date.now() - since <= FLASH_MS) {
      flash(item); // the same case's next entries (its routing, at once) flash too, silently
      return false;
    }
    if (entry.action !== "register" || !isUrgent(entry.case)) return false;
    flash(item);
    pending.set(String(entry.case_id), Date.now());
    flashRows();
    if (prefs.sound) beep();
    if (prefs.desktop) notify(entry);
    return true;
  }

  async function save(change) {
    const stored = await CW.api("/api/v1/account/alerts", { method: "PUT", json: change });
    prefs.sound = stored.sound;
    prefs.desktop = stored.desktop;
    if (soundBox) soundBox.checked = stored.sound;
    if (desktopBox) desktopBox.checked = stored.desktop;
  }

  function showDenied() {
    if (denied) denied.hidden = !("Notification" in window) || Notification.permission !== "denied";
  }

  if (soundBox) {
    soundBox.addEventListener("change", async () => {
      prefs.sound = soundBox.checked;
      wakeAudio(); // this change is the gesture that lets the beep play later
      await save({ sound: soundBox.checked });
    });
  }
  if (desktopBox) {
    desktopBox.addEventListener("change", async () => {
      if (!desktopBox.checked) {
        await save({ desktop: false });
        return;
      }
      // The browser's question comes only now, after the person opted in.
      const answer = "Notification" in window ? await Notification.requestPermission() : "denied";
      showDenied();
      await save({ desktop: answer === "granted" });
    });
    showDenied();
  }

  document.addEventListener("cw:list-drawn", flashRows);

  return { onEntry, flashRows, isUrgent };
})();
