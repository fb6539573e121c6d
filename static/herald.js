// Herald's only script: times in the browser's time zone, a confirmation before a form
// marked data-confirm is sent, and a portal link's page going on by itself. Every page works
// without it (times then read in UTC; the portal link's page has a button).
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
// A portal link's page goes on by itself (a click does it without script).
document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
  form.submit();
});
