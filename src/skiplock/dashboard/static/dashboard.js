// skiplock dashboard: live regions and keyboard shortcuts. Pages work without it.
//
// Every element marked data-live is re-read from the server: `refresh()` fetches the
// page again and swaps those regions in place, so forms being typed into elsewhere are
// left alone. What triggers a refresh is a source: for now a poll every 2 s while the
// tab is visible (document.hidden pauses it); a server-sent event stream can take its
// place by calling the same `refresh`.
"use strict";

(function () {
  const INTERVAL_MS = 2000;

  async function refresh() {
    const regions = document.querySelectorAll("[data-live][id]");
    if (regions.length === 0) return;
    let response;
    try {
      response = await fetch(window.location.href, { credentials: "same-origin" });
    } catch (error) {
      return; // offline for a moment: the next tick tries again
    }
    if (!response.ok || response.redirected) return; // logged out, or gone: leave the page as it is
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of regions) {
      const next = fresh.getElementById(region.id);
      if (next && next.innerHTML !== region.innerHTML) {
        region.innerHTML = next.innerHTML;
      }
    }
  }

  function poll(onTick) {
    let timer = null;
    const start = () => {
      if (timer === null) timer = window.setInterval(onTick, INTERVAL_MS);
    };
    const stop = () => {
      if (timer !== null) window.clearInterval(timer);
      timer = null;
    };
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        stop();
      } else {
        onTick();
        start();
      }
    });
    if (!document.hidden) start();
    return { stop };
  }

  function shortcuts() {
    document.addEventListener("keydown", (event) => {
      const target = event.target;
      const typing =
        target instanceof HTMLInputElement ||
        target instanceof HTMLTextAreaElement ||
        target instanceof HTMLSelectElement;
      if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "/") {
        const field = document.querySelector("[data-search]");
        if (field) {
          event.preventDefault();
          field.focus();
        }
      } else if (event.key === "?") {
        const help = document.getElementById("help");
        if (help && typeof help.showModal === "function") help.showModal();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    window.skiplockLive = poll(refresh);
    shortcuts();
  });
})();
