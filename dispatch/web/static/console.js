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

  const feed = document.getElementById("feed");
  const status = document.getElementById("live-status");
  let refreshTimer = null;
  const refresh = () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      CW.swap("/console/fragments/cases", null, document.getElementById("cases"));
      CW.swap("/console/fragments/sla", null, document.getElementById("sla"));
    }, 150);
  };

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
    feed.prepend(feedItem(entry));
    while (feed.children.length > 100) feed.lastElementChild.remove();
    refresh();
    if (shownCase === String(entry.case_id)) showCase(entry.case_id);
  }, (live) => {
    status.textContent = CW.t("ui", live ? "live_connected" : "live_reconnecting");
    status.classList.toggle("live", live);
  });
})();
