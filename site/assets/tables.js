/* bnb-matrix: sortable tables with the vendored tablesort (as Material's docs show, re-run on every page load of
   instant navigation). Cells whose content carries a data-sort value (VRAM budgets: "12 GiB" -> 12) sort by it,
   and columns of plain numbers sort as numbers, so "12 GiB" comes after "8 GiB". */
(function () {
  if (typeof Tablesort === "undefined") return;
  Tablesort.extend("number-value", function (item) {
    return /^\s*[-+]?\d+(\.\d+)?\s*$/.test(item);
  }, function (a, b) {
    return parseFloat(b) - parseFloat(a);
  });
  function setup() {
    document.querySelectorAll("article table:not([class])").forEach(function (table) {
      if (table.dataset.sortable) return;
      table.dataset.sortable = "1";
      table.querySelectorAll("td [data-sort]").forEach(function (el) {
        var td = el.closest("td");
        if (td && !td.hasAttribute("data-sort")) td.setAttribute("data-sort", el.getAttribute("data-sort"));
      });
      new Tablesort(table);
    });
  }
  window.bnbMatrixSortTables = setup;  // for tables added later (and the browser test)
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(setup);
  } else if (document.readyState !== "loading") {
    setup();
  } else {
    document.addEventListener("DOMContentLoaded", setup);
  }
})();
