// Live pages: the parts of a page marked data-live reload themselves when the case ledger changes.
//
// The server tells this page which cases changed (server-sent events from /cases/changes, only cases this
// user may see); a case page listens for its own case, a list or the home page's 待办 for any. The page is
// then fetched again and each data-live part replaced by its fresh copy — unless the person is busy in it
// (typing, a choice made but not sent, a recording playing): that part waits for the next change. What changed
// between the page's rendering and its stream's start is told too (the page's data-live-since). When the
// stream cannot be had (an old proxy, the service restarting), the page polls every 30 seconds instead.
"use strict";

(() => {
  const STREAM = "/cases/changes";
  const FALLBACK_POLL_MS = 30000;
  const parts = () => [...document.querySelectorAll("[data-live]")];
  if (!parts().length) return;
  const body = document.body;
  const ownCase = body.getAttribute("data-live-case");
  let timer = null;
  let busy = false;
  let again = false;
  let fallback = null;
  let connected = false;

  // Is the person in the middle of something here? Then this part is not replaced under their hands.
  const inUse = (part) => {
    const focused = document.activeElement;
    if (focused && focused !== body && part.contains(focused) && focused.matches("input, textarea, select")) {
      return true;
    }
    for (const field of part.querySelectorAll("input, textarea, select")) {
      if (field.type === "hidden") continue;
      if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked !== field.defaultChecked) return true;
      } else if (field.tagName === "SELECT") {
        const options = [...field.options];
        if (field.multiple) {
          if (options.some((option) => option.selected !== option.defaultSelected)) return true;
        } else if (options.length) {
          const chosenAtFirst = Math.max(0, options.findIndex((option) => option.defaultSelected));
          if (field.selectedIndex !== chosenAtFirst) return true;
        }
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    return [...part.querySelectorAll("audio")].some((audio) => !audio.paused);
  };

  const refresh = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(window.location.href, {
        headers: { Accept: "text/html", "X-Live-Refresh": "1" },
        credentials: "same-origin",
      });
      if (!response.ok || response.redirected) return; // signed out or gone: the next click says so
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const part of parts()) {
        const name = part.getAttribute("data-live");
        const replacement = fresh.querySelector(`[data-live="${name}"]`);
        if (!replacement) continue;
        if (inUse(part)) {
          part.setAttribute("data-live-waiting", "");
          continue;
        }
        part.replaceWith(document.importNode(replacement, true));
      }
      body.setAttribute("data-live-refreshed", String(Number(body.getAttribute("data-live-refreshed") || 0) + 1));
      document.dispatchEvent(new CustomEvent("cunxiang:refreshed"));
    } catch (error) {
      // The network blinked: the next change, or the next poll, tries again.
    } finally {
      busy = false;
      if (again) {
        again = false;
        soon();
      }
    }
  };
  // The first change reloads at once (an operator waits for it: no fixed delay); changes told while that reload
  // is under way — a burst of calls, a case and then its recording — make one more reload after it, not one each.
  const soon = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 0);
  };

  const poll = (on) => {
    if (on && fallback === null) fallback = window.setInterval(refresh, FALLBACK_POLL_MS);
    if (!on && fallback !== null) {
      window.clearInterval(fallback);
      fallback = null;
    }
    body.setAttribute("data-live-state", on ? "polling" : "listening");
  };

  if (!("EventSource" in window)) {
    poll(true);
    return;
  }
  // The page's mark of the ledger when it was rendered: the stream first tells what changed after it (a
  // callback that ended while this page loaded is published before the stream listens, to nobody).
  const since = body.getAttribute("data-live-since");
  const source = new EventSource(since ? `${STREAM}?since=${encodeURIComponent(since)}` : STREAM);
  source.addEventListener("ready", () => {
    if (connected || fallback !== null) soon(); // back after a gap: whatever changed meanwhile
    connected = true;
    poll(false);
  });
  source.addEventListener("cases", (event) => {
    if (ownCase) {
      const changed = JSON.parse(event.data);
      if (!changed.case_ids.includes(Number(ownCase))) return;
    }
    soon();
  });
  source.addEventListener("resync", soon);
  source.addEventListener("error", () => {
    // The browser reconnects by itself; until it has, and for good if the stream is refused, poll.
    poll(true);
  });
})();
