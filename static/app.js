// Stevedore: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  function openDialog(d) {
    if (!d) return;
    if (d.open) d.close();
    if (typeof d.showModal === "function") d.showModal(); else d.setAttribute("open", "");
    var focus = d.querySelector("[autofocus], input:not([type=hidden]), select, button");
    if (focus) focus.focus();
  }

  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open]");
    if (opener) {
      var d = document.getElementById(opener.getAttribute("data-open"));
      if (d) { e.preventDefault(); openDialog(d); }
      return;
    }
    var closer = e.target.closest("[data-close]");
    if (closer) {
      var dlg = closer.closest("dialog");
      if (dlg) { e.preventDefault(); dlg.close(); }
      return;
    }
    // A click on the backdrop (the dialog element itself) closes it.
    if (e.target.tagName === "DIALOG") e.target.close();
    var toggle = e.target.closest("[data-nav-toggle]");
    if (toggle) {
      var nav = document.getElementById("sidebar");
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
  });

  // A section with data-poll="ms" reloads itself in place while it has work in progress
  // (the export list): the page's other parts, and any open dialog, stay as they are.
  var polled = document.querySelector("[data-poll]");
  if (polled && window.fetch && window.DOMParser) {
    var every = parseInt(polled.getAttribute("data-poll"), 10) || 3000;
    var tick = function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(polled.id);
          if (!fresh) return;
          polled.innerHTML = fresh.innerHTML;
          var refresh = document.querySelector("[data-refresh]");
          if (!fresh.hasAttribute("data-poll")) {
            polled.removeAttribute("data-poll");
            if (refresh) refresh.remove();
            return;
          }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    };
    setTimeout(tick, every);
  }

  // Menus (<details>) close on Escape and on a click elsewhere.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (m) { m.removeAttribute("open"); });
  });
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.menu[open]").forEach(function (m) {
      if (!m.contains(e.target)) m.removeAttribute("open");
    });
  });

  document.addEventListener("change", function (e) {
    if (e.target.matches("select[data-autosubmit]")) e.target.form.requestSubmit();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-hide-with-js]").forEach(function (el) { el.hidden = true; });
    // Dialogs the server rendered open (no-JS links) become real modals.
    document.querySelectorAll("dialog[data-modal][open]").forEach(openDialog);
  });
})();
