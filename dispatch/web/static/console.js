// The dispatch console: live feed, case list and SLA board refreshed on each change, case panel.
"use strict";
(() => {
  const panel = document.getElementById("panel");
  const consoleRoot = document.getElementById("console");
  let shownCase = panel && panel.querySelector(".case-panel")
    ? panel.querySelector(".case-panel").dataset.caseId : null;

  async function showCase(caseId) {
    shownCase = String(caseId);
    await CW.swap(`/console/cases/${caseId}/panel`, null, panel);
    panel.scrollIntoView({ block: "nearest" });
  }

  if (panel) CW.bindActionForms(panel, (caseId) => showCase(caseId));
  if (!consoleRoot) return;

  consoleRoot.addEventListener("click", (event) => {
    const link = event.target.closest("a.open-case");
    if (!link || link.closest("#panel")) return;
    event.preventDefault();
    showCase(link.dataset.caseId);
  });
  // The list's keyboard (Enter on a row) and a desktop notification's click open a case here.
  document.addEventListener("cw:open-case", (event) => showCase(event.detail));

  const feed = document.getElementById("feed");
  const status = document.getElementById("live-status");
  let refreshTimer = null;
  // The list keeps the page's filter and page (its query string); ?lang= is the page's own.
  const refreshList = async () => {
    const query = new URLSearchParams(location.search);
    query.delete("lang");
    const cases = document.getElementById("cases");
    await CW.swap(`/console/fragments/cases?${query}`, null, cases);
    document.dispatchEvent(new CustomEvent("cw:list-drawn"));
  };
  const refresh = () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      refreshList();
      CW.swap("/console/fragments/sla", null, document.getElementById("sla"));
    }, 150);
  };
  document.addEventListener("cw:list-changed", refresh);

  function feedItem(entry) {
    const item = document.createElement("li");
    item.className = "feed-item new";
    item.dataset.seq = entry.seq;
    item.dataset.caseId = entry.case_id;
    const time = document.createElement("time");
    time.textContent = new Date(entry.at).toLocaleTimeString(document.documentElement.lang, {
      hour12: false, timeZone: CW.zoneOf(entry.case.site_id),
    });
    const link = document.createElement("a");
    link.href = `/console/cases/${entry.case_id}`;
    link.className = "open-case";
    link.dataset.caseId = entry.case_id;
    link.textContent = `#${entry.case_id}`;
    const c = entry.case;
    const text = document.createTextNode(" " + [
      CW.t("action", entry.action), CW.t("kind", c.kind), CW.t("state", c.state),
      CW.t("department", c.department || "none"),
    ].join(" · "));
    item.append(time, " ", link, text);
    return item;
  }

  CW.openFeed(consoleRoot.dataset.feedSeq, (entry) => {
    const item = feedItem(entry);
    feed.prepend(item);
    while (feed.children.length > 100) feed.lastElementChild.remove();
    if (typeof CWAlerts !== "undefined") CWAlerts.onEntry(entry, item);
    refresh();
    if (shownCase === String(entry.case_id)) showCase(entry.case_id);
  }, (live) => {
    status.textContent = CW.t("ui", live ? "live_connected" : "live_reconnecting");
    status.classList.toggle("live", live);
  });
})();
