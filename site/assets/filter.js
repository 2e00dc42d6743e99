/* bnb-matrix: the All cells page. Its rows are made from cells/index.js (window.bnbMatrixCells, the compact index
   of every cell that matrix/publish/cellsite.py writes) with textContent only, so no record text is ever parsed as
   HTML. Every whitespace-separated word typed must occur (case-insensitively) somewhere in a row, its error
   signatures included, for the row to stay visible. Works with and without Material's instant loading. */
(function () {
  function cell(row, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }
  function row(r, col, labels) {
    var tr = document.createElement("tr");
    cell(tr, "open", r[col.path] + "index.html");
    cell(tr, r[col.runner], "../" + r[col.runner_path] + "index.html");
    ["hardware", "torch", "bnb", "transformers"].forEach(function (name) { cell(tr, r[col[name]]); });
    var span = document.createElement("span");
    span.className = "verdict verdict-" + r[col.verdict];
    span.textContent = labels[r[col.verdict]] || r[col.verdict];
    cell(tr, "").appendChild(span);
    ["fixes", "signatures", "last_measured"].forEach(function (name) { cell(tr, r[col[name]]); });
    return tr;
  }
  /* A big site has thousands of cells: the words are matched against the index, and only the first SHOWN
     matching rows become table rows, so the first result shows at once. */
  var SHOWN = 500;
  function setupIndex(input, body, index, count) {
    var col = {};
    index.columns.forEach(function (name, i) { col[name] = i; });
    var texts = index.rows.map(function (r) {
      return r.join(" ").toLowerCase() + " " + (index.labels[r[col.verdict]] || "").toLowerCase();
    });
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var frag = document.createDocumentFragment(), shown = 0, matched = 0;
      texts.forEach(function (text, i) {
        if (!words.every(function (w) { return text.indexOf(w) !== -1; })) return;
        matched += 1;
        if (shown < SHOWN) { frag.appendChild(row(index.rows[i], col, index.labels)); shown += 1; }
      });
      body.textContent = "";
      body.appendChild(frag);
      if (count) count.textContent = matched + " of " + index.rows.length + " cells" +
        (matched > shown ? " (the first " + shown + " shown: add words to narrow)" : "");
      if (window.bnbMatrixSortTables) window.bnbMatrixSortTables();
    }
    input.addEventListener("input", apply);
    var query = new URLSearchParams(window.location.search).get("q");
    if (query) input.value = query;
    apply();
  }
  function setup() {
    var input = document.getElementById("cell-filter");
    if (!input || input.dataset.ready) return;
    input.dataset.ready = "1";
    var body = document.getElementById("cells-body");
    var count = document.getElementById("cell-filter-count");
    if (body && window.bnbMatrixCells) return setupIndex(input, body, window.bnbMatrixCells, count);
    var table = document.querySelector(".md-typeset table:not(.heatmap)");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
    function apply() {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row, i) {
        var ok = words.every(function (w) { return texts[i].indexOf(w) !== -1; });
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
