"use strict";
// Sortable tables: click a header to sort by that column; click again to reverse.
// Numeric cells carry their exact value in data-value; others sort by text.
(function () {
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
  });
}());
