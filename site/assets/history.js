/* bnb-matrix: a cell page's History table, made from the cell's history.js (window.bnbMatrixHistory: one row per
   record, newest first: timestamp, run, recipe, shape, budget, outcome) with textContent only. */
(function () {
  function setup() {
    var table = document.getElementById("cell-history");
    var rows = window.bnbMatrixHistory;
    if (!table || !rows || table.dataset.ready) return;
    table.dataset.ready = "1";
    var body = table.tBodies[0];
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) {
      var row = document.createElement("tr");
      r.forEach(function (value, i) {
        var td = document.createElement("td");
        if (i === 4) {
          td.textContent = value ? value + " GiB" : "whole card";
          td.setAttribute("data-sort", value || "1000000");
        } else if (i === 5) {
          var span = document.createElement("span");
          span.className = "outcome outcome-" + value;
          span.textContent = value;
          td.appendChild(span);
        } else {
          td.textContent = value;
        }
        row.appendChild(td);
      });
      frag.appendChild(row);
    });
    body.innerHTML = "";
    body.appendChild(frag);
  }
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(setup);
  } else if (document.readyState !== "loading") {
    setup();
  } else {
    document.addEventListener("DOMContentLoaded", setup);
  }
})();
