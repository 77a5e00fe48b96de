// queuert dashboard: small progressive enhancements. Every page works without it.
(function () {
  "use strict";

  // Confirm before a form changes anything.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var button = ev.submitter;
    var message = form.getAttribute("data-confirm");
    if (form.hasAttribute("data-bulk") && button && button.name === "action") {
      var n = form.querySelectorAll("input[name=selected]:checked").length;
      message = button.textContent.trim() + " " + n + " selected chain" + (n === 1 ? "" : "s") + "?";
    }
    if (message && !window.confirm(message)) ev.preventDefault();
  });

  // Selection on the chain list: select all, a count, buttons off when empty.
  function refreshSelection() {
    var form = document.querySelector("form[data-bulk]");
    if (!form) return;
    var n = form.querySelectorAll("input[name=selected]:checked").length;
    var count = form.querySelector("[data-selected-count]");
    if (count) count.textContent = n + " selected";
    form.querySelectorAll("[data-needs-selection]").forEach(function (b) { b.disabled = n === 0; });
  }
  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.matches && t.matches("[data-select-all]")) {
      document.querySelectorAll("form[data-bulk] input[name=selected]").forEach(function (c) { c.checked = t.checked; });
    }
    refreshSelection();
  });

  // Live refresh: re-read the page and swap its [data-live] part, unless
  // the user is in the middle of something (a selection, a focused field).
  var KEY = "queuert-live";
  var timer = null;
  function busy(region) {
    return region.querySelector("input[name=selected]:checked") !== null ||
      (document.activeElement && region.contains(document.activeElement) && document.activeElement.tagName !== "BODY");
  }
  function tick() {
    var region = document.querySelector("[data-live]");
    if (!region || busy(region) || document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "queuert-live" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live]");
        if (fresh && !busy(region)) {
          region.innerHTML = fresh.innerHTML;
          refreshSelection();
          var stamp = document.querySelector("[data-live-stamp]");
          if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  function setLive(on) {
    if (timer) { clearInterval(timer); timer = null; }
    if (on) {
      var ms = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 5000;
      timer = setInterval(tick, ms);
    }
    try { window.localStorage.setItem(KEY, on ? "1" : "0"); } catch (e) { /* private mode */ }
  }
  document.addEventListener("DOMContentLoaded", function () {
    refreshSelection();
    var toggle = document.querySelector("[data-live-toggle]");
    if (!toggle) return;
    var on = false;
    try { on = window.localStorage.getItem(KEY) === "1"; } catch (e) { on = false; }
    toggle.checked = on;
    setLive(on);
    toggle.addEventListener("change", function () { setLive(toggle.checked); });
  });
})();
