// Stevedore: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  function openDialog(d) {
    if (!d) return;
    if (d.open) d.close();
    if (typeof d.showModal === "function") d.showModal(); else d.setAttribute("open", "");
    // the element marked autofocus (Cancel, in confirmations) wins over the first field
    var focus = d.querySelector("[autofocus]") || d.querySelector("input:not([type=hidden]), select, button");
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

  // htmx refreshes a section in place while it has work in progress (hx-get, every 3s,
  // outerHTML). A row's dialog lives in that section: while one is open, the refresh waits
  // (the next turn asks again), so an open dialog is never swapped away.
  function holdsOpenDialog(el) {
    return !!(el && el.querySelector && el.querySelector("dialog[open]"));
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (holdsOpenDialog(e.detail.target)) e.preventDefault();
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    var d = e.detail;
    if (holdsOpenDialog(d.target)) { d.shouldSwap = false; return; }
    // Answered from another page (the session ended: the sign-in form): go there whole.
    var asked = d.pathInfo && d.pathInfo.requestPath, got = d.pathInfo && d.pathInfo.responsePath;
    if (asked && got && got.split("?")[0] !== asked.split("?")[0]) {
      d.shouldSwap = false;
      window.location.assign(got);
    }
  });

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

  // Run on the page, and on whatever htmx swaps in later.
  function enhance(root) {
    root.querySelectorAll("[data-hide-with-js]").forEach(function (el) { el.hidden = true; });
    // Dialogs the server rendered open (no-JS links) become real modals, once.
    root.querySelectorAll("dialog[data-modal][open]").forEach(function (d) {
      d.removeAttribute("data-modal");
      openDialog(d);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (e) {
    if (e.target && e.target.querySelectorAll) enhance(e.target);
  });
})();
