/* The check page: matrix/check/engine.py in JavaScript, over the same facts (check/data.js, written at build
   time). Inputs come from the form, the paste box or the URL's query (?gpu=T4&torch=2.6.0&bnb=0.45.5); the answer
   goes into #verdict. No server, no fetch: it works from file:// as from a static host. */
(function () {
  "use strict";
  var F = window.BNB_CHECK_FACTS;
  var FIELDS = ["gpu", "torch", "bnb", "transformers", "os", "machine", "glibc", "driver", "env"];
  var WORDS = {"works": "works", "works-with-fix": "works with a fix", "fails": "fails", "unknown": "unknown"};
  var SOURCES = {"measured": "measured", "predicted": "predicted from the binaries",
                 "reported": "reported in an issue", "none": "no source"};
  var INDEX = "https://download.pytorch.org/whl/";
  var JETSON_REPORT = "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1930";
  var NOISE = {"nvidia": 1, "geforce": 1, "tesla": 1, "quadro": 1};
  var MEASURED = {"works": "works", "works-with-fix": "works-with-fix", "fails": "fails",
                  "not-installable": "fails", "not-available": "fails"};

  function vparts(t) {
    var m = String(t || "").match(/^(\d+(?:\.\d+)*)(.*)$/);
    if (!m) return [[0], 0];
    return [m[1].split(".").map(Number), m[2] && !/^\+/.test(m[2]) && !/^\.post/.test(m[2]) ? -1 : 0];
  }
  function vcmp(a, b) {
    var x = vparts(a), y = vparts(b), n = Math.max(x[0].length, y[0].length);
    for (var i = 0; i < n; i++) {
      var d = (x[0][i] || 0) - (y[0][i] || 0);
      if (d) return d;
    }
    return x[1] - y[1];
  }
  function archNum(a) { return parseInt(String(a).replace(/\D/g, ""), 10) || 0; }
  function archOf(text) {
    var t = String(text).trim().toLowerCase(), m = t.match(/^(?:sm|compute)_?(\d{2,3})[a-z]?$/);
    if (m) return "sm_" + parseInt(m[1], 10);
    m = t.match(/^\(?(\d{1,2})\s*[.,]\s*(\d)\)?$/);
    return m ? "sm_" + m[1] + m[2] : null;
  }
  function normalise(text) {
    return String(text).toLowerCase().split(/[^a-z0-9]+/).filter(function (w) {
      return w && !NOISE[w] && !/^\d+gb$/.test(w);
    }).join("");
  }
  function findGpu(text) {
    var arch = archOf(text);
    if (arch) return [arch, arch, false];
    var key = normalise(text), best = null;
    if (F.gpus[key]) return F.gpus[key];
    Object.keys(F.gpus).forEach(function (k) {
      if (key.indexOf(k) === 0 && !/^\d/.test(key.slice(k.length)) && (!best || k.length > best.length)) best = k;
    });
    return best ? F.gpus[best] : null;
  }
  function torchRunsOn(archs, arch) {
    if (!archs || !archs.length) return "unknown";
    var g = archNum(arch);
    for (var i = 0; i < archs.length; i++) {
      var n = archNum(archs[i]);
      if (archs[i].indexOf("sm_") === 0 && Math.floor(n / 10) === Math.floor(g / 10) && n <= g) return "yes";
      if (archs[i].indexOf("compute_") === 0 && n <= g) return "yes";
    }
    return "no";
  }
  function cudaOfVariant(local) {
    var d = local.slice(2);
    return /^\d{2,}$/.test(d) ? d.slice(0, -1) + "." + d.slice(-1) : "";
  }
  function envValue(setup, name) { return (setup.env || {})[name] || ""; }

  function resolve(setup) {
    var assumed = [], notes = [];
    var ctx = {gpu: "", arch: "", jetson: false, platform: "", torch: "", cuda: "", torch_archs: null,
               bnb: setup.bnb || "", transformers: setup.transformers || ""};
    if (setup.gpu || setup.compute_capability) {
      var hit = setup.gpu ? findGpu(setup.gpu) : null, cc = setup.compute_capability ? archOf(setup.compute_capability) : null;
      if (hit) { ctx.gpu = hit[0]; ctx.arch = cc || hit[1]; ctx.jetson = !!hit[2]; }
      else if (cc) { ctx.gpu = setup.gpu || cc; ctx.arch = cc; }
      else notes.push("GPU '" + setup.gpu + "' is not one this site knows; give its architecture (--gpu sm_86)");
    }
    var torch = setup.torch || "", local = torch.split("+")[1] ? torch.split("+").slice(1).join("+").toLowerCase() : "";
    if (/\.nv\d\d|a0\+/.test(torch) || local.indexOf("l4t") >= 0) ctx.jetson = true;
    var machine = setup.machine || (ctx.jetson ? "aarch64" : "");
    if (setup.os === "windows") ctx.platform = "windows-x86_64";
    else {
      ctx.platform = "linux-" + (machine || "x86_64");
      if (!setup.os && !ctx.jetson) assumed.push("OS not given: assumed Linux" + (machine ? "" : " x86_64"));
    }
    if (torch) {
      var base = torch.split("+")[0], release = base, build;
      Object.keys(F.torch_default).forEach(function (r) { if (vcmp(r, base) === 0) release = r; });
      var named = local ? release + "+" + local : release;
      if (F.torch[named]) build = named;
      else if (!local && F.torch_default[release]) {
        build = F.torch_default[release];
        assumed.push("torch " + torch + " from PyPI is the build " + build + " (its wheel's torch/version.py says so)");
      } else build = named;
      ctx.torch = build;
      var known = F.torch[build];
      ctx.cuda = setup.torch_cuda || (known && known.cuda) || (local.indexOf("cu") === 0 ? cudaOfVariant(local) : "");
      ctx.cpu_torch = local === "cpu";
      ctx.torch_archs = (setup.torch_archs && setup.torch_archs.length ? setup.torch_archs : null) || (known && known.archs) || null;
    }
    return [ctx, assumed, notes];
  }

  function torchSupport(ctx, chain, assumed) {
    var arch = ctx.arch;
    if (ctx.torch_archs) {
      var s = torchRunsOn(ctx.torch_archs, arch);
      chain.push("torch " + ctx.torch + " is built for " + ctx.torch_archs.join(" ") + ": " + (s === "yes" ? "it runs on " : "no kernel for ") + arch);
      return s;
    }
    var same = Object.keys(F.torch).filter(function (b) { return F.torch[b].cuda === ctx.cuda && F.torch[b].archs; });
    var answers = {};
    same.forEach(function (b) { answers[torchRunsOn(F.torch[b].archs, arch)] = 1; });
    var keys = Object.keys(answers);
    if (keys.length === 1) {
      assumed.push("torch " + ctx.torch + "'s arch list was not read: assumed like the CUDA " + ctx.cuda + " builds read (" +
                   same.join(", ") + "), which " + (keys[0] === "yes" ? "all run" : "none runs") + " on " + arch);
      return keys[0];
    }
    return "unknown";
  }

  function plainCode(wheel, cuda, arch) {
    var libs = wheel.libs[cuda];
    return libs ? libs[1][F.archs.indexOf(arch)] : "?";
  }
  function overrideFix(wheel, cuda, arch) {
    var major = cuda.split(".")[0], best = null;
    Object.keys(wheel.libs).forEach(function (c) {
      if (c.split(".")[0] === major && vcmp(c, cuda) < 0 && plainCode(wheel, c, arch) === "L" && wheel.libs[c][0] &&
          (!best || vcmp(c, best) > 0)) best = c;
    });
    return best ? "set BNB_CUDA_VERSION=" + best.replace(".", "") + " (loads " + wheel.libs[best][0] + ", built for CUDA " + best + ")" : "";
  }

  function evaluate(ctx, setup) {
    var chain = [], assumed = [];
    var out = {verdict: "unknown", source: "none", facts: chain, assumed: assumed, fix: "", cell: "", library: ""};
    function done(v, source, fix) {
      return {verdict: v, source: source || "predicted", facts: chain, assumed: assumed, fix: fix || "", cell: "", library: out.library};
    }
    var platform = ctx.platform, bnb = ctx.bnb, arch = ctx.arch;
    if (ctx.cpu_torch) {
      chain.push("torch " + ctx.torch + " is a CPU-only build: bitsandbytes cannot use the GPU through it");
      return done("fails");
    }
    var wheel = (F.wheels[platform] || {})[bnb];
    if (!wheel) {
      if (F.releases.indexOf(bnb) >= 0) {
        chain.push("bitsandbytes " + bnb + " has no wheel for " + platform + " on PyPI (pip finds no matching distribution)");
        return done("fails");
      }
      chain.push("bitsandbytes " + bnb + " was not read here (the predicted layer reads releases " + F.releases[0] + " to " + F.releases[F.releases.length - 1] + ")");
      return out;
    }
    if (ctx.jetson) {
      chain.push("PyPI's " + platform + " wheels are built for server Arm (SBSA), not for Jetson's L4T: the first CUDA kernel fails with 'named symbol not found' (reported: " + JETSON_REPORT + ")");
      return done("fails", "reported");
    }
    if (!ctx.torch) { chain.push("torch not given: which library bitsandbytes loads depends on torch's CUDA version"); return out; }
    if (!ctx.cuda) { chain.push("torch " + ctx.torch + "'s CUDA version is not known here (give the build, like " + ctx.torch.split("+")[0] + "+cu124)"); return out; }
    var override = envValue(setup, "BNB_CUDA_VERSION"), cuda = ctx.cuda;
    if (override && wheel.override) {
      cuda = cudaOfVariant("cu" + override);
      chain.push("BNB_CUDA_VERSION=" + override + " makes bitsandbytes " + bnb + " load the CUDA " + cuda + " library instead of torch's CUDA " + ctx.cuda);
    }
    var libs = wheel.libs[cuda];
    if (!arch) return out;
    if (!libs || F.archs.indexOf(arch) < 0) { chain.push("no prediction for " + arch + " with CUDA " + cuda); return out; }
    var support = torchSupport(ctx, chain, assumed);
    var code = libs[1][F.archs.indexOf(arch)];
    out.library = libs[0] || "";
    var measured = F.measured[arch + "|" + ctx.torch + "|" + bnb];
    if (measured) {
      var rows = measured.filter(function (r) { return r[0] === ctx.transformers; });
      var matched = rows.length > 0;
      if (!matched) rows = measured;
      if (!ctx.transformers || !matched) assumed.push("transformers " + (ctx.transformers || "not given") + ": answered from the measured cell with transformers " + rows[0][0]);
      chain.push("measured on " + arch + ": torch " + ctx.torch + ", bitsandbytes " + bnb + ", transformers " + rows[0][0] + ": " + rows[0][1]);
      var r = done(MEASURED[rows[0][1]] || "unknown", "measured", rows[0][1] === "works-with-fix" ? "the fix on the cell page" : "");
      r.cell = rows[0][2];
      return r;
    }
    if (support === "no") { chain.push("CUDA work fails before bitsandbytes runs: torch has no kernel for " + arch); return done("fails"); }
    var lib = libs[0] || "its CUDA library", floor = F.driver_floor[cuda.split(".")[0]];
    if (setup.driver && floor && vcmp(setup.driver, floor) < 0) {
      chain.push("driver " + setup.driver + " is below " + floor + ", the lowest that runs CUDA " + cuda.split(".")[0] + ".x");
      return done("fails");
    }
    if (code === "L" || code === "J") {
      chain.push("bitsandbytes " + bnb + " loads " + lib + " (CUDA " + cuda + "), which carries " + (code === "L" ? "SASS for " + arch :
                 "no SASS for " + arch + " but PTX the driver JIT-compiles on first use (slow the first time)"));
      if (support === "unknown") { chain.push("torch " + ctx.torch + "'s arch list is not known"); return out; }
      if (override && override !== ctx.cuda.replace(".", "")) assumed.push("the CUDA " + cuda + " runtime libraries are on the library path (BNB_CUDA_VERSION)");
      return done("works");
    }
    if (code === "N") {
      chain.push("bitsandbytes " + bnb + " looks for " + lib + " (CUDA " + cuda + "); its wheel does not ship it" +
                 (wheel.missing === "cpu-fallback" ? " (it falls back to the CPU library: GPU 4-bit fails)" : ""));
      if (override) return "LJ".indexOf(plainCode(wheel, ctx.cuda, arch)) >= 0 ? done("works-with-fix", "predicted", "unset BNB_CUDA_VERSION") : done("fails");
      var alt = wheel.override ? overrideFix(wheel, cuda, arch) : "";
      return alt ? done("works-with-fix", "predicted", alt) : done("fails");
    }
    if (code === "K") { chain.push(lib + " in bitsandbytes " + bnb + " has no kernel for " + arch + " (neither SASS nor PTX it can JIT)"); return done("fails"); }
    chain.push(lib + ": the wheel reading is unknown for " + arch);
    return out;
  }

  function closeness(current, candidates) {
    var cur = (current || "0").split("+")[0];
    var newer = candidates.filter(function (c) { return vcmp(c.split("+")[0], cur) >= 0; }).sort(function (a, b) { return vcmp(a.split("+")[0], b.split("+")[0]); });
    var older = candidates.filter(function (c) { return vcmp(c.split("+")[0], cur) < 0; }).sort(function (a, b) { return vcmp(b.split("+")[0], a.split("+")[0]); });
    return newer.concat(older);
  }
  function copy(o, extra) { var r = {}; Object.keys(o).forEach(function (k) { r[k] = o[k]; }); Object.keys(extra).forEach(function (k) { r[k] = extra[k]; }); return r; }

  function wayOut(ctx, setup) {
    var found = [], i;
    var releases = Object.keys(F.wheels[ctx.platform] || {}).filter(function (r) { return r !== ctx.bnb; });
    var order = closeness(ctx.bnb, releases);
    for (i = 0; i < order.length; i++) {
      if (evaluate(copy(ctx, {bnb: order[i]}), setup).verdict === "works") {
        found.push({change: "bitsandbytes", to: order[i], command: "pip install bitsandbytes==" + order[i], uv: "uv pip install bitsandbytes==" + order[i]});
        break;
      }
    }
    var builds = Object.keys(F.torch).filter(function (b) { return F.torch[b].archs && b !== ctx.torch; });
    order = ctx.bnb ? closeness(ctx.torch, builds) : [];
    for (i = 0; i < order.length; i++) {
      var k = F.torch[order[i]], alt = copy(ctx, {torch: order[i], cuda: k.cuda, torch_archs: k.archs, cpu_torch: false});
      if (evaluate(alt, setup).verdict === "works") {
        var version = order[i].split("+")[0], variant = order[i].split("+")[1] || "cu" + k.cuda.replace(".", "");
        var pins = "torch==" + version + " --index-url " + INDEX + variant;
        found.push({change: "torch", to: order[i], command: "pip install " + pins, uv: "uv pip install " + pins});
        break;
      }
    }
    var rows = (F.measured[ctx.arch + "|" + ctx.torch + "|" + ctx.bnb] || []).slice().sort(function (a, b) { return vcmp(b[0], a[0]); });
    for (i = 0; i < rows.length; i++) {
      if (rows[i][1] === "works" && rows[i][0] !== ctx.transformers) {
        found.push({change: "transformers", to: rows[i][0], command: "pip install transformers==" + rows[i][0], uv: "uv pip install transformers==" + rows[i][0], cell: rows[i][2]});
        break;
      }
    }
    return found;
  }

  function check(setup) {
    var rs = resolve(setup), ctx = rs[0], assumed = rs[1], notes = rs[2], result;
    if (!ctx.bnb && F.releases.length) {
      var pool = Object.keys(F.wheels[ctx.platform] || {});
      if (!pool.length) pool = F.releases;
      ctx.bnb = pool.slice().sort(vcmp)[pool.length - 1];
      assumed.push("bitsandbytes not given: answered for the newest release read, " + ctx.bnb);
    }
    if (ctx.arch) result = evaluate(ctx, setup);
    else {
      var answers = F.archs.map(function (a) { return evaluate(copy(ctx, {arch: a}), setup); });
      var verdicts = {};
      answers.forEach(function (a) { verdicts[a.verdict] = 1; });
      result = answers[answers.length - 1];
      if (Object.keys(verdicts).length === 1 && result.verdict !== "unknown") assumed.push("GPU not given: the answer is the same for every GPU architecture predicted");
      else result = copy(answers[0], {verdict: "unknown", source: "none", facts: ["GPU not given, and the answer depends on it (--gpu T4, or paste nvidia-smi)"]});
    }
    var outs = (result.verdict === "fails" || result.verdict === "works-with-fix") && ctx.arch ? wayOut(ctx, setup) : [];
    var resolved = {};
    ["gpu", "arch", "platform", "torch", "cuda", "bnb"].forEach(function (k) { if (ctx[k]) resolved[k] = ctx[k]; });
    if (result.library) resolved.library = result.library;
    var all = assumed.concat(result.assumed).filter(function (a, i, arr) { return arr.indexOf(a) === i; });
    return {verdict: result.verdict, source: result.source, facts: notes.concat(result.facts), assumed: all,
            fix: result.fix, cell: result.cell, way_out: outs, resolved: resolved};
  }

  /* ---- reading a paste: the same patterns as matrix/check/paste.py ---- */
  function first(field, text) {
    var pats = F.patterns[field];
    for (var i = 0; i < pats.length; i++) {
      var m = new RegExp(pats[i], "im").exec(text);
      if (m) return m[1].trim();
    }
    return "";
  }
  function readPaste(text) {
    text = String(text).slice(-200000).replace(/\r\n/g, "\n");
    var g = {};
    Object.keys(F.patterns).forEach(function (f) { g[f] = first(f, text); });
    var s = {gpu: g.gpu, torch: g.torch, bnb: g.bnb, transformers: g.transformers, glibc: g.glibc, driver: g.driver, env: {}};
    if (g.os) {
      var low = g.os.toLowerCase();
      s.os = low === "windows" || low === "win_amd64" || low === ".dll" || /^[a-z]:\\$/.test(low) ? "windows" : "linux";
    }
    if (g.machine) s.machine = {amd64: "x86_64", arm64: "aarch64", x86_64: "x86_64", aarch64: "aarch64"}[g.machine.toLowerCase()] || "aarch64";
    if (g.env) s.env[g.env.split("=")[0]] = g.env.split("=")[1];
    if (g.torch_cuda) s.torch_cuda = g.torch_cuda.indexOf(".") >= 0 ? g.torch_cuda : g.torch_cuda.slice(0, -1) + "." + g.torch_cuda.slice(-1);
    if (g.torch_archs) s.torch_archs = g.torch_archs.split(/\s+/);
    if (g.compute_capability) {
      var a = archOf(g.compute_capability.replace(/ /g, ""));
      if (a) { var n = archNum(a); s.compute_capability = Math.floor(n / 10) + "." + (n % 10); }
    }
    return s;
  }

  /* ---- the page ---- */
  function esc(t) { return String(t).replace(/[&<>"']/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]; }); }
  function query(setup) {
    var q = [];
    FIELDS.forEach(function (f) {
      if (f === "env") Object.keys(setup.env || {}).forEach(function (k) { q.push("env=" + encodeURIComponent(k + "=" + setup.env[k])); });
      else if (setup[f]) q.push(f + "=" + encodeURIComponent(setup[f]));
    });
    return q.join("&");
  }
  function markdown(v, link) {
    var r = Object.keys(v.resolved).map(function (k) { return "`" + k + "=" + v.resolved[k] + "`"; }).join(", ");
    var lines = ["**" + WORDS[v.verdict] + "** (" + SOURCES[v.source] + ") for " + r, ""];
    v.facts.forEach(function (f) { lines.push("- " + f); });
    if (v.fix) lines.push("", "**Fix:** " + v.fix);
    if (v.assumed.length) lines.push("", "Assumed: " + v.assumed.join("; "));
    if (v.way_out.length) { lines.push("", "Nearest setups that work plainly:", ""); v.way_out.forEach(function (w) { lines.push("- " + w.change + " " + w.to + ": `" + w.command + "`"); }); }
    lines.push("", "[Check it yourself](" + link + ")");
    return lines.join("\n");
  }
  function show(setup) {
    var box = document.getElementById("verdict");
    if (!box) return;
    var v = check(setup), base = location.href.split("?")[0].split("#")[0], link = base + "?" + query(setup);
    var h = '<p class="check-answer check-' + v.verdict + '" data-verdict="' + v.verdict + '" data-source="' + v.source + '"><strong>' +
            esc(WORDS[v.verdict]) + "</strong> (" + esc(SOURCES[v.source]) + ")</p><ul class=\"check-facts\">";
    v.facts.forEach(function (f) { h += "<li>" + esc(f) + "</li>"; });
    h += "</ul>";
    if (v.fix) h += "<p><strong>Fix:</strong> " + esc(v.fix) + "</p>";
    if (v.cell) h += '<p><a href="../' + esc(v.cell) + 'index.html">The measured cell</a></p>';
    if (v.assumed.length) { h += "<p>Assumed:</p><ul class=\"check-assumed\">"; v.assumed.forEach(function (a) { h += "<li>" + esc(a) + "</li>"; }); h += "</ul>"; }
    if (v.way_out.length) {
      h += '<p>Nearest setups that work plainly (one change):</p><ul class="check-way-out">';
      v.way_out.forEach(function (w) { h += '<li data-change="' + esc(w.change) + '" data-to="' + esc(w.to) + '">' + esc(w.change + " " + w.to) + ": <code>" + esc(w.command) + "</code></li>"; });
      h += "</ul>";
    }
    box.innerHTML = h;
    box.setAttribute("data-verdict", v.verdict);
    box.setAttribute("data-link", link);
    box.setAttribute("data-markdown", markdown(v, link));
    window.BNB_CHECK_LAST = v;
  }
  function fromForm() {
    var s = {env: {}};
    FIELDS.forEach(function (f) {
      var el = document.getElementById("check-" + f);
      var val = el ? el.value.trim() : "";
      if (f === "env") { if (val) val.split(/\s+/).forEach(function (p) { var kv = p.split("="); if (kv.length === 2) s.env[kv[0]] = kv[1]; }); }
      else if (val) s[f] = val;
    });
    return s;
  }
  function toForm(s) {
    FIELDS.forEach(function (f) {
      var el = document.getElementById("check-" + f);
      if (!el) return;
      el.value = f === "env" ? Object.keys(s.env || {}).map(function (k) { return k + "=" + s.env[k]; }).join(" ") : (s[f] || "");
    });
  }
  function fromQuery() {
    var s = {env: {}}, any = false;
    location.search.replace(/^\?/, "").split("&").forEach(function (p) {
      if (!p) return;
      var kv = p.split("="), k = decodeURIComponent(kv[0]), val = decodeURIComponent((kv.slice(1).join("=") || "").replace(/\+/g, " "));
      if (k === "env") { var e = val.split("="); s.env[e[0]] = e.slice(1).join("="); any = true; }
      else if (FIELDS.indexOf(k) >= 0 && val) { s[k] = val; any = true; }
    });
    return any ? s : null;
  }
  function copyText(text, button) {
    var done = function () { button.setAttribute("data-copied", text); button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, done);
    else { var t = document.createElement("textarea"); t.value = text; document.body.appendChild(t); t.select(); try { document.execCommand("copy"); } catch (e) { /* shown below */ } document.body.removeChild(t); done(); }
  }
  function init() {
    if (!F || !document.getElementById("verdict")) return;
    var form = document.getElementById("check-form");
    if (form) form.addEventListener("submit", function (e) { e.preventDefault(); var s = fromForm(); history.replaceState(null, "", "?" + query(s)); show(s); });
    var read = document.getElementById("check-read-paste");
    if (read) read.addEventListener("click", function () {
      var s = readPaste(document.getElementById("check-paste").value), typed = fromForm();
      FIELDS.forEach(function (f) { if (f !== "env" && !s[f] && typed[f]) s[f] = typed[f]; });
      toForm(s); history.replaceState(null, "", "?" + query(s)); show(s);
    });
    var link = document.getElementById("check-copy-link");
    if (link) link.addEventListener("click", function () { copyText(document.getElementById("verdict").getAttribute("data-link") || location.href, link); });
    var md = document.getElementById("check-copy-markdown");
    if (md) md.addEventListener("click", function () { copyText(document.getElementById("verdict").getAttribute("data-markdown") || "", md); });
    var q = fromQuery();
    if (q) { toForm(q); show(q); }
  }
  window.bnbCheck = {check: check, readPaste: readPaste, show: show};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
