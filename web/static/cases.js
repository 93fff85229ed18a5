// The case page: the recording player (seek, ±10 s, 0.75×/1×/1.25×) and live callback status.
// Progressive: without this script the browser's own audio element still works through the same URL.
"use strict";

function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds % 60);
  return `${minutes}:${rest < 10 ? "0" : ""}${rest}`;
}

// A token naming one listening: the server logs a play once per listening, not per request (seeks ask again).
function listeningToken() {
  const bytes = new Uint8Array(12);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function setUpPlayer(box) {
  if (box.hasAttribute("data-ready")) return;
  box.setAttribute("data-ready", "");
  const audio = box.querySelector("audio");
  const play = box.querySelector("button.play");
  const seek = box.querySelector("input.seek");
  const time = box.querySelector(".time");
  const rate = box.querySelector("select.rate");
  const source = box.getAttribute("data-src");
  const known = parseFloat(box.getAttribute("data-duration")) || 0;
  let dragging = false;
  let listening = false;  // nothing is fetched (or logged) until the person listens

  const duration = () => (Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : known);
  const listen = () => {
    if (listening) return;
    listening = true;
    audio.src = `${source}${source.includes("?") ? "&" : "?"}listening=${listeningToken()}`;
    audio.playbackRate = parseFloat(rate.value);
    audio.defaultPlaybackRate = audio.playbackRate;
  };
  const show = () => {
    if (!dragging) seek.value = String(audio.currentTime);
    time.textContent = `${clock(audio.currentTime)} / ${clock(duration())}`;
    play.textContent = audio.paused ? "播放" : "暂停";
    box.setAttribute("data-position", audio.currentTime.toFixed(2));
    box.setAttribute("data-state", audio.paused ? "paused" : "playing");
  };
  const jump = (to) => {
    listen();
    audio.currentTime = Math.min(Math.max(0, to), duration() || to);
    show();
  };

  play.addEventListener("click", () => {
    if (audio.paused) {
      listen();
      audio.play().catch(() => { play.textContent = "无法播放"; });
    } else {
      audio.pause();
    }
  });
  box.querySelector("button.back").addEventListener("click", () => jump(audio.currentTime - 10));
  box.querySelector("button.forward").addEventListener("click", () => jump(audio.currentTime + 10));
  seek.addEventListener("input", () => { dragging = true; time.textContent = `${clock(parseFloat(seek.value))} / ${clock(duration())}`; });
  seek.addEventListener("change", () => { dragging = false; jump(parseFloat(seek.value)); });
  rate.addEventListener("change", () => {
    audio.playbackRate = parseFloat(rate.value);
    audio.defaultPlaybackRate = audio.playbackRate;
  });
  audio.addEventListener("loadedmetadata", () => { seek.max = String(duration()); show(); });
  // Played to the end: playing again is another listening (and another play in the log).
  audio.addEventListener("ended", () => { listening = false; });
  for (const name of ["timeupdate", "play", "pause", "ended", "seeked"]) audio.addEventListener(name, show);
  show();
}

function pollCallbacks(section) {
  if (section.hasAttribute("data-polling")) return;
  section.setAttribute("data-polling", "");
  const url = section.getAttribute("data-callback-poll");
  const open = new Set(["requested", "placing", "ringing", "answered"]);
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      let running = false;
      for (const attempt of body.items) {
        const row = section.querySelector(`tr[data-callback="${attempt.id}"]`);
        if (row) {
          row.querySelector(".state").textContent = attempt.state_label;
          row.querySelector(".reason").textContent = attempt.reason || "";
        }
        if (open.has(attempt.state)) running = true;
      }
      if (running) {
        window.setTimeout(tick, 2000);
        return;
      }
      // "正在回拨" is no longer true: the call has ended, and its row above says how.
      for (const message of document.querySelectorAll(".flash.callback-under-way")) message.remove();
      if (document.body.getAttribute("data-live-state") !== "listening") {
        // The live page reloads its parts when the call's end is written; without it, reload the page.
        window.location.reload();
      }
    } catch (error) {
      window.setTimeout(tick, 5000);
    }
  };
  window.setTimeout(tick, 2000);
}

function setUp() {
  for (const box of document.querySelectorAll(".player")) setUpPlayer(box);
  const callbacks = document.querySelector("[data-callback-poll]");
  if (callbacks) {
    pollCallbacks(callbacks);
  } else {
    // The call asked for has already ended (its row says how): "正在回拨" would no longer be true.
    for (const message of document.querySelectorAll(".flash.callback-under-way")) message.remove();
  }
}

document.addEventListener("DOMContentLoaded", setUp);
// Parts of a live page replaced by their fresh copy (static/live.js) get their players and polls again.
document.addEventListener("cunxiang:refreshed", setUp);
