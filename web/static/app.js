// Small progressive enhancements; every page works without them.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// For scripts on our pages that call the JSON API: the CSRF token of this session.
window.cunxiangCsrf = () => document.body.getAttribute("data-csrf") || "";

// The header's drop-down menus close when the user clicks elsewhere or presses Escape.
document.addEventListener("click", (event) => {
  for (const menu of document.querySelectorAll("header.top details.menu[open]")) {
    if (!menu.contains(event.target)) menu.removeAttribute("open");
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  for (const menu of document.querySelectorAll("header.top details.menu[open]")) {
    menu.removeAttribute("open");
    menu.querySelector("summary").focus();
  }
});

// A village list follows the township chosen in its form: only that township's villages are offered.
// ``data-follows-township`` holds the township meant while none is chosen (a case's own, on the triage form).
function followTownship(villages) {
  if (villages.hasAttribute("data-following")) return;
  villages.setAttribute("data-following", "");
  const township = villages.form && villages.form.querySelector("select[name=township_id]");
  if (!township) return;
  const meant = villages.getAttribute("data-follows-township") || "";
  const all = [...villages.options].map((option) => option.cloneNode(true));
  const offer = () => {
    const chosen = township.value || meant;
    const kept = villages.value;
    const fitting = all.filter((option) => !chosen || !option.dataset.township || option.dataset.township === chosen);
    villages.replaceChildren(...fitting.map((option) => option.cloneNode(true)));
    villages.value = fitting.some((option) => option.value === kept) ? kept : "";
  };
  township.addEventListener("change", offer);
  offer();
}
const followTownships = () => {
  for (const villages of document.querySelectorAll("select[data-follows-township]")) followTownship(villages);
};
document.addEventListener("DOMContentLoaded", followTownships);
document.addEventListener("cunxiang:refreshed", followTownships);
