// skiplock dashboard: live regions and keyboard shortcuts. Pages work without it.
//
// Every element marked data-live is kept current. The page listens to its server-sent
// events (GET <dashboard>/events?page=<this page>): a job's page applies the status,
// attempt and progress an event carries, and re-reads its regions when the status
// changes; a list re-reads its regions when an event says its counts changed. When the
// stream cannot open (an old browser, a proxy that buffers, a page without events) the
// page polls every 2 s instead. A hidden tab does neither: it closes the stream and
// reopens it when shown again, and the stream's first event brings the page up to date.
// <html data-live="stream|poll|paused"> says which is in use.
"use strict";

(function () {
  const INTERVAL_MS = 2000;
  const script = document.currentScript;

  // The dashboard's root URL, from this script's own (…/dashboard/static/dashboard.js),
  // so a dashboard mounted under a prefix finds its events.
  function dashboardRoot() {
    if (!script || !script.src) return null;
    return new URL(script.src).pathname.replace(/\/static\/dashboard\.js$/, "");
  }

  async function refresh() {
    const regions = document.querySelectorAll("[data-live][id]");
    if (regions.length === 0) return;
    let response;
    try {
      response = await fetch(window.location.href, { credentials: "same-origin" });
    } catch (error) {
      return; // offline for a moment: the next event or tick tries again
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

  function setText(id, text) {
    const element = document.getElementById(id);
    if (element === null) return false;
    if (element.textContent !== text) element.textContent = text;
    return true;
  }

  // A job event: {id, status, attempt, max_attempts, progress, log_seq}. A new status
  // changes more than the fragment (result, errors, buttons, times), and new log lines
  // the log: the regions are re-read.
  let logSeq = null;
  function applyJob(job) {
    const status = document.getElementById("job-status");
    const newLines = logSeq !== null && job.log_seq !== logSeq;
    logSeq = job.log_seq;
    if (status === null || status.textContent !== job.status || newLines) {
      refresh();
      return;
    }
    setText("job-attempt", `${job.attempt} of ${job.max_attempts}`);
    const progress = job.progress || {};
    let complete = true;
    if (typeof progress.fraction === "number") {
      const bar = document.getElementById("job-progress");
      if (bar === null) {
        complete = false;
      } else {
        bar.value = progress.fraction;
        const percent = `${Math.round(progress.fraction * 100)}%`;
        bar.textContent = percent;
        setText("job-progress-percent", percent);
      }
    }
    if (progress.message) complete = setText("job-progress-message", String(progress.message)) && complete;
    if (!complete) refresh(); // progress the page did not show yet
  }

  function live() {
    const root = dashboardRoot();
    const here = window.location.pathname;
    const page = root !== null && here.startsWith(root) ? here.slice(root.length) || "/" : null;
    let source = null;
    let timer = null;

    const mode = (name) => {
      document.documentElement.dataset.live = name;
    };
    const startPoll = () => {
      if (timer === null) timer = window.setInterval(refresh, INTERVAL_MS);
      mode("poll");
    };
    const stopPoll = () => {
      if (timer !== null) window.clearInterval(timer);
      timer = null;
    };
    const close = () => {
      if (source !== null) source.close();
      source = null;
    };

    function open() {
      if (page === null || typeof window.EventSource !== "function") {
        startPoll();
        return;
      }
      const url = `${root}/events?page=${encodeURIComponent(page + window.location.search)}`;
      const stream = new EventSource(url, { withCredentials: true });
      source = stream;
      stream.addEventListener("open", () => {
        stopPoll();
        mode("stream");
      });
      stream.addEventListener("job", (event) => applyJob(JSON.parse(event.data)));
      stream.addEventListener("changed", () => refresh());
      stream.addEventListener("error", () => {
        // CONNECTING: the browser reconnects by itself (a stream ends every minute);
        // CLOSED: refused (logged out, a page without events). Poll meanwhile.
        if (stream.readyState === EventSource.CLOSED && source === stream) source = null;
        startPoll();
      });
    }

    if (document.querySelector("[data-live][id]") === null) return null;
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        close();
        stopPoll();
        mode("paused");
      } else if (source === null) {
        open();
      }
    });
    if (document.hidden) {
      mode("paused");
    } else {
      open();
    }
    return { close, stopPoll };
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
    window.skiplockLive = live();
    shortcuts();
  });
})();
