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
    if (e.target.closest("[data-nav-toggle]")) {
      setNav(!navOpen());
    } else if (e.target.closest("[data-nav-close]")) {
      setNav(false);
    }
  });

  // The navigation drawer on small screens: a backdrop behind it, a close button in it,
  // Escape or a click outside closes it and gives the focus back to the toggle.
  function navOpen() {
    var nav = document.getElementById("sidebar");
    return !!(nav && nav.classList.contains("open"));
  }
  function setNav(open) {
    var nav = document.getElementById("sidebar");
    var toggle = document.querySelector("[data-nav-toggle]");
    var backdrop = document.querySelector(".nav-backdrop");
    if (!nav || !toggle) return;
    nav.classList.toggle("open", open);
    if (backdrop) backdrop.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.setAttribute("aria-label", open ? "Close navigation" : "Open navigation");
    var target = open ? nav.querySelector("[aria-current=page]") || nav.querySelector("a") : toggle;
    if (target) target.focus();
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && navOpen()) setNav(false);
  });

  // htmx refreshes a section in place while it has work in progress (hx-get, every 3s,
  // outerHTML). A row's dialog lives in that section: while one is open, the refresh waits
  // (the next turn asks again), so an open dialog is never swapped away.
  function holdsOpenDialog(el) {
    if (!el || !el.querySelector) return false;
    if (el.querySelector("dialog[open]")) return true;
    // a file chosen and not uploaded yet is not swapped away either
    return Array.prototype.some.call(el.querySelectorAll("input[type=file]"), function (f) {
      return f.files && f.files.length > 0;
    });
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

  // Menus (<details>) close on Escape (the focus back on their button) and on a click
  // elsewhere; the arrow keys move through their items (the menu button pattern): Down or Up
  // on the button opens the menu at its first or last item, Home and End jump.
  function menuItems(m) {
    return Array.prototype.slice.call(m.querySelectorAll(".menu-panel [role=menuitem]"));
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (m) {
        var inside = m.contains(document.activeElement);
        m.removeAttribute("open");
        if (inside) m.querySelector("summary").focus();
      });
      return;
    }
    var menu = e.target.closest && e.target.closest("details.menu");
    if (!menu || ["ArrowDown", "ArrowUp", "Home", "End"].indexOf(e.key) < 0) return;
    var items = menuItems(menu);
    if (!items.length) return;
    e.preventDefault();
    menu.setAttribute("open", "");
    var at = items.indexOf(document.activeElement);
    var next;
    if (e.key === "Home") next = 0;
    else if (e.key === "End") next = items.length - 1;
    else if (at < 0) next = e.key === "ArrowUp" ? items.length - 1 : 0;
    else next = (at + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
    items[next].focus();
  });
  document.addEventListener("click", function (e) {
    document.querySelectorAll("details.menu[open]").forEach(function (m) {
      if (!m.contains(e.target)) m.removeAttribute("open");
    });
  });

  document.addEventListener("change", function (e) {
    if (e.target.matches("select[data-autosubmit]")) e.target.form.requestSubmit();
    if (e.target.matches("[data-mapping-form] select")) mappingChanged(e.target);
  });

  // The mapping step: the values of the column just chosen show beside it, and the warning
  // about required fields without a column follows the choices (worded as the server does).
  function andList(items) {
    if (items.length < 2) return items.join("");
    return items.slice(0, -1).join(", ") + " and " + items[items.length - 1];
  }
  // A column picked for a date, datetime or decimal field: its format is proposed again from
  // that column's values (or asked, when they allow two readings), and an enum field's list
  // of unknown values, made for another column, steps aside until the next validation.
  function formatFollows(select, option) {
    var field = select.id.replace(/^map-/, "");
    var fmt = document.getElementById("fmt-" + field);
    if (fmt && option) {
      var kind = fmt.getAttribute("data-format-kind");
      var proposed = option.value ? option.getAttribute("data-" + kind) || "" : "";
      var ask = fmt.querySelector("option[data-ask]");
      var asking = proposed === "?";
      ask.hidden = ask.disabled = !asking;
      fmt.value = asking ? "" : proposed || (kind === "decimal" ? "" : "YYYY-MM-DD");
      var hint = document.getElementById("fmt-hint-" + field);
      hint.textContent = option.value ? option.getAttribute("data-" + kind + "-hint") || "" : "";
      hint.classList.toggle("hint-ask", asking);
    }
    var list = document.querySelector("[data-values-for='" + field + "']");
    if (list) {
      var madeFor = list.querySelector("input[name^='vcol.']").value;
      var stale = select.value !== madeFor;
      list.querySelector("table").hidden = stale;
      list.querySelector(".value-map-title").hidden = stale;
      list.querySelector("[data-values-stale]").hidden = !stale;
    }
  }
  function mappingChanged(select) {
    if (select.name.indexOf("map.") !== 0) return;
    var form = select.form;
    var option = select.options[select.selectedIndex];
    formatFollows(select, option);
    var sample = document.getElementById("sample-" + select.id.replace(/^map-/, ""));
    if (sample) {
      var values = (option && option.value && option.getAttribute("data-sample")) || "";
      // on a phone the cell is a card row: its content sits in .cell-value, hidden when empty
      (sample.querySelector(".cell-value") || sample).textContent = values;
      if (values) sample.removeAttribute("data-empty"); else sample.setAttribute("data-empty", "");
    }
    var missing = [];
    form.querySelectorAll("select[data-required]").forEach(function (s) {
      if (!s.value) missing.push(s.getAttribute("data-field-label"));
    });
    var box = form.parentElement.querySelector("[data-required-warning]");
    if (box) {
      box.hidden = !missing.length;
      box.querySelector("[data-required-text]").textContent = missing.length
        ? "Choose a column for " + andList(missing) + ": the file cannot be validated without " +
          (missing.length === 1 ? "it." : "them.") : "";
    }
    var anyChosen = Array.prototype.some.call(form.querySelectorAll("select"), function (s) { return !!s.value; });
    form.parentElement.querySelectorAll("[data-nothing-matched]").forEach(function (el) { el.hidden = anyChosen; });
  }

  // The grid of rows left out: a row is saved when one of its cells changes (or on Enter),
  // and comes back checked again; arrows move between cells, Escape puts a cell back.
  function saveRow(form, then) {
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, { method: "POST", body: body, headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (res) {
        if (!res.ok) throw new Error(res.status);
        var edited = res.headers.get("X-Edited-Rows");
        return res.text().then(function (html) { return { html: html, edited: edited }; });
      })
      .then(function (r) {
        var row = document.getElementById("grid-row-" + form.id.replace(/^grid-form-/, ""));
        var holder = document.createElement("tbody");
        holder.innerHTML = r.html.trim();
        var fresh = holder.firstElementChild;
        if (row && fresh) row.replaceWith(fresh);
        if (r.edited !== null) editedRows(parseInt(r.edited, 10));
        if (then) then(fresh);
      })
      .catch(function () { form.submit(); });
  }
  function editedRows(n) {
    var note = document.querySelector("[data-edited-note]");
    if (note) {
      note.hidden = n === 0;
      note.querySelector("[data-edited-count]").textContent = n + (n === 1 ? " row" : " rows");
    }
    var button = document.querySelector("[data-revalidate] button");
    if (button && n > 0) { button.classList.add("button-primary"); button.classList.remove("button-outline"); }
  }
  function gridCell(input, rowStep, colStep) {
    var td = input.closest("td"), tr = td.parentElement;
    var col = Array.prototype.indexOf.call(tr.children, td);
    var rows = Array.prototype.slice.call(tr.parentElement.children);
    var r = rows.indexOf(tr) + rowStep;
    if (r < 0 || r >= rows.length) return null;
    var cells = rows[r].children;
    for (var c = col + colStep; c >= 0 && c < cells.length; c += colStep || 1) {
      var next = cells[c].querySelector("input[form^='grid-form-']");
      if (next) return next;
      if (!colStep) break;
    }
    return null;
  }
  document.addEventListener("submit", function (e) {
    if (!e.target.matches("form[data-grid-form]")) return;
    e.preventDefault();
    saveRow(e.target);
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches("[data-edit-grid] input[form^='grid-form-']")) saveRow(e.target.form);
  });
  document.addEventListener("keydown", function (e) {
    var input = e.target;
    if (!input.matches || !input.matches("[data-edit-grid] input[form^='grid-form-']")) return;
    var atStart = input.selectionStart === 0 && input.selectionEnd === 0;
    var atEnd = input.selectionStart === input.value.length;
    var to = null;
    if (e.key === "ArrowDown") to = gridCell(input, 1, 0);
    else if (e.key === "ArrowUp") to = gridCell(input, -1, 0);
    else if (e.key === "ArrowLeft" && atStart) to = gridCell(input, 0, -1);
    else if (e.key === "ArrowRight" && atEnd) to = gridCell(input, 0, 1);
    else if (e.key === "Escape") { input.value = input.defaultValue; return; }
    else if (e.key === "Enter") {
      e.preventDefault();
      var name = input.name, below = gridCell(input, 1, 0);
      var belowRow = below && below.closest("tr").id;
      var focusBelow = function () {
        var target = belowRow && document.getElementById(belowRow);
        var cell = target && target.querySelector("input[name='" + name + "']");
        if (cell) cell.focus();
      };
      if (input.value !== input.defaultValue) saveRow(input.form, focusBelow); else focusBelow();
      return;
    }
    if (to) { e.preventDefault(); to.focus(); to.select(); }
  });

  // Run on the page, and on whatever htmx swaps in later.
  function enhance(root) {
    root.querySelectorAll("[data-hide-with-js]").forEach(function (el) { el.hidden = true; });
    // Tables become stacked cards on phones (CSS): each cell carries its column's name.
    root.querySelectorAll("table.table").forEach(function (t) {
      // its own rows only: a table inside a cell (the mapping step's value list) stays a table
      var heads = Array.prototype.map.call(t.querySelectorAll(":scope > thead > tr > th"), function (th) {
        return (th.getAttribute("data-label") || th.textContent).trim();
      });
      if (!heads.length) return;
      if (t.hasAttribute("data-stacked")) return;
      t.querySelectorAll(":scope > tbody > tr").forEach(function (tr) {
        Array.prototype.forEach.call(tr.children, function (cell, i) {
          // a cell across the row has no one column's name
          if (heads[i] && !cell.hasAttribute("colspan")) cell.setAttribute("data-label", heads[i]);
          if (!cell.textContent.trim() && !cell.querySelector("img, svg, input, button, a")) cell.setAttribute("data-empty", "");
          // the cell's content in one box, so the label and the value are the card row's two columns
          var value = document.createElement("div");
          value.className = "cell-value";
          while (cell.firstChild) value.appendChild(cell.firstChild);
          cell.appendChild(value);
        });
      });
      t.setAttribute("data-stacked", "");
    });
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
