// skiplock dashboard: list and job shortcuts. Pages work without it.
//
//   j / k   highlight the next / previous row of the page's lists (rows with a link)
//   Enter   open the highlighted row's first link
//   r       on a job's page, retry the job when its Retry button is shown
//
// `/` and `?` are dashboard.js's. Live regions replace rows while a list is shown, so
// the highlight is kept as a position and put back whenever the page's rows change.
"use strict";

(function () {
  const CURRENT = "current";
  let index = -1;

  function rows() {
    return Array.from(document.querySelectorAll("main table tbody tr")).filter((row) =>
      row.querySelector("a[href]"),
    );
  }

  function mark() {
    const all = rows();
    for (const row of document.querySelectorAll("main tr." + CURRENT)) {
      row.classList.remove(CURRENT);
      row.removeAttribute("aria-current");
    }
    if (index < 0 || all.length === 0) return null;
    index = Math.min(index, all.length - 1);
    const row = all[index];
    row.classList.add(CURRENT);
    row.setAttribute("aria-current", "true");
    return row;
  }

  function move(step) {
    const count = rows().length;
    if (count === 0) return;
    index = index < 0 ? (step > 0 ? 0 : count - 1) : Math.max(0, Math.min(count - 1, index + step));
    const row = mark();
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    return (
      target instanceof HTMLInputElement ||
      target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement ||
      (target instanceof HTMLElement && target.isContentEditable)
    );
  }

  document.addEventListener("keydown", (event) => {
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      move(event.key === "j" ? 1 : -1);
    } else if (event.key === "Enter") {
      // a focused link or button does what Enter does to it
      if (event.target instanceof HTMLAnchorElement || event.target instanceof HTMLButtonElement) {
        return;
      }
      const row = index < 0 ? null : mark();
      const link = row && row.querySelector("a[href]");
      if (link) {
        event.preventDefault();
        window.location.assign(link.href);
      }
    } else if (event.key === "r") {
      const retry = document.querySelector('main form[action$="/retry"][data-retry-job]');
      if (retry) {
        event.preventDefault();
        retry.requestSubmit();
      }
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const main = document.querySelector("main");
    if (!main) return;
    new MutationObserver(() => {
      if (index >= 0 && !main.querySelector("tr." + CURRENT)) mark();
    }).observe(main, { childList: true, subtree: true });
  });
})();
