// Herald's only script: times in the browser's time zone, and a confirmation before a
// form marked data-confirm is sent. Every page works without it (times then read in UTC).
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var t = new Date(el.getAttribute("datetime"));
  if (!isNaN(t)) {
    el.title = el.textContent;
    el.textContent = t.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }
});
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (e) {
    if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
  });
});
