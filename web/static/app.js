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
