"use strict";
// Sortable tables: click a header to sort by that column; click again to reverse.
// Numeric cells carry their exact value in data-value; others sort by text.
// A long table (more than SHOWN + SLACK rows) shows its first SHOWN rows, the biggest (the order they are written
// in), and a button "N more" after it that shows the rest in place (and then the first SHOWN again). A sort orders
// every row, shown or not, and then shows the first SHOWN of that order: the page's totals are every row's.
// SHOWN and SLACK are the page's: its body's data-rows-shown and data-rows-slack, written from
// usageledger.report.folding (the terminal report's rule too); a SHOWN of 0 folds no table, and a button never
// stands for one row alone (that row is shown).
(function () {
  var SHOWN = Number(document.body.getAttribute("data-rows-shown")) || 0;
  var SLACK = Number(document.body.getAttribute("data-rows-slack")) || 0;
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) { return { num: false, text: "" }; }
    var raw = cell.getAttribute("data-value");
    if (raw !== null && raw !== "") {
      var n = Number(raw);
      if (!Number.isNaN(n)) { return { num: true, value: n }; }
    }
    return { num: false, text: cell.textContent.trim().toLowerCase() };
  }
  function compare(a, b) {
    if (a.num && b.num) { return a.value - b.value; }
    if (a.num !== b.num) { return a.num ? -1 : 1; }
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }
  function fold(table) {
    var button = table.moreButton;
    if (!button) { return; }
    var open = button.getAttribute("aria-expanded") === "true";
    var rows = table.tBodies[0].rows, hidden = rows.length - SHOWN;
    for (var i = 0; i < rows.length; i += 1) { rows[i].hidden = !open && i >= SHOWN; }
    button.textContent = open ? "Show the first " + SHOWN : hidden.toLocaleString("en-US") + " more";
  }
  function foldable(table) {
    if (SHOWN <= 0 || table.tBodies[0].rows.length <= SHOWN + Math.max(SLACK, 1)) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "more-rows";
    button.setAttribute("aria-expanded", "false");
    if (table.id) { button.id = table.id + "-more"; button.setAttribute("aria-controls", table.id); }
    button.addEventListener("click", function () {
      button.setAttribute("aria-expanded", button.getAttribute("aria-expanded") === "true" ? "false" : "true");
      fold(table);
    });
    table.parentNode.insertBefore(button, table.nextSibling);
    table.moreButton = button;
    fold(table);
  }
  function sortBy(table, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var c = compare(cellKey(r1, index), cellKey(r2, index));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    fold(table);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "Sort by " + th.textContent.trim());
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, index); }
      });
    });
    foldable(table);
  });
}());
