// Refreshes the Status page from /api/status every 5 s, without reloading it.
"use strict";
(function () {
  const box = document.getElementById("status");
  const fallback = { broker: "none", site: "none (this door alone)" };
  async function refresh() {
    try {
      const response = await fetch(box.dataset.source, { credentials: "same-origin" });
      if (!response.ok) return;
      const status = await response.json();
      const state = document.getElementById("state");
      state.textContent = status.running
        ? "running"
        : status.door
          ? "not running (last report " + Math.round(status.report_age_s) + " s ago)"
          : "not running (no report yet)";
      state.className = "state " + (status.running ? "ok" : "no");
      for (const cell of box.querySelectorAll("dd[data-key]")) {
        const value = status.door ? status.door[cell.dataset.key] : null;
        cell.textContent = value === null || value === undefined || value === ""
          ? (fallback[cell.dataset.key] || "-")
          : String(value);
      }
    } catch (error) {
      // the page process is restarting: try again at the next tick
    }
  }
  setInterval(refresh, 5000);
})();
