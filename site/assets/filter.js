/* bnb-matrix: the filter box on the All cells page. Every whitespace-separated word typed must occur (case-
   insensitively) somewhere in a row for the row to stay visible. Works with and without Material's instant loading. */
(function () {
  function setup() {
    var input = document.getElementById("cell-filter");
    if (!input || input.dataset.ready) return;
    input.dataset.ready = "1";
    var table = document.querySelector(".md-typeset table:not(.heatmap)");
    var count = document.getElementById("cell-filter-count");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        var ok = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (count) count.textContent = shown + " of " + rows.length + " cells";
    }
    input.addEventListener("input", apply);
    var query = new URLSearchParams(window.location.search).get("q");
    if (query) input.value = query;
    apply();
  }
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(setup);
  } else if (document.readyState !== "loading") {
    setup();
  } else {
    document.addEventListener("DOMContentLoaded", setup);
  }
})();
