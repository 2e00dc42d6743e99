/* The check page: matrix/check/engine.py in JavaScript, over the same facts (check/data.js, written at build
   time). Inputs come from the form, the paste box or the URL's query (?gpu=T4&torch=2.6.0&bnb=0.45.5); the answer
   goes into #verdict. No server, no fetch: it works from file:// as from a static host. */
(function () {
  "use strict";
  var F = window.BNB_CHECK_FACTS;
  var FIELDS = ["gpu", "torch", "bnb", "transformers", "os", "machine", "glibc", "driver", "cuda_runtime", "env"];
  var WORDS = {"works": "works", "works-with-fix": "works with a fix", "fails": "fails", "unknown": "unknown"};
  var SOURCES = {"measured": "measured", "predicted": "predicted from the binaries",
                 "reported": "reported in an issue", "none": "no source"};
  var INDEX = "https://download.pytorch.org/whl/";
  var JETSON_REPORT = "https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1930";
  var MEASURED = {"works": "works", "works-with-fix": "works-with-fix", "fails": "fails",
                  "not-installable": "fails", "not-available": "fails"};

  function vparts(t) {
    var m = String(t || "").replace(/\.post(\d)/, ".$1").match(/^(\d+(?:\.\d+)*)(.*)$/);
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
  function base(t) { return String(t).split("+")[0]; }
  function local(t) { var i = String(t).indexOf("+"); return i < 0 ? "" : String(t).slice(i + 1).toLowerCase(); }
  function archNum(a) { return parseInt(String(a).replace(/\D/g, ""), 10) || 0; }
  function archOf(text) {
    var t = String(text).trim().toLowerCase(), m = t.match(/^(?:sm|compute)_?(\d{2,3})[a-z]?$/);
    if (m) return "sm_" + parseInt(m[1], 10);
    m = t.match(/^\(?(\d{1,2})\s*[.,]\s*(\d)\)?$/);
    return m ? "sm_" + m[1] + m[2] : null;
  }
  function normalise(text) {
    return String(text).toLowerCase().replace(/max-q/g, "maxq").split(/[^a-z0-9]+/).filter(function (w) {
      return w && F.noise.indexOf(w) < 0 && !/^\d+gb$/.test(w);
    }).join("");
  }
  function findGpu(text) {
    var arch = archOf(text);
    if (arch) return [arch, arch, F.jetson_archs.indexOf(arch) >= 0];
    var key = normalise(text), best = null;
    if (!key) return null;
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
  function cudaOfVariant(loc) {
    var d = loc.slice(2);
    return /^\d{2,}$/.test(d) ? d.slice(0, -1) + "." + d.slice(-1) : "";
  }
  function envValue(setup, name) { return (setup.env || {})[name] || ""; }
  function copy(o, extra) { var r = {}; Object.keys(o).forEach(function (k) { r[k] = o[k]; }); Object.keys(extra || {}).forEach(function (k) { r[k] = extra[k]; }); return r; }

  function resolve(setup) {
    var assumed = [], notes = [];
    var ctx = {gpu: "", arch: "", jetson: false, platform: "", torch: "", cuda: "", torch_archs: null,
               bnb: setup.bnb || "", transformers: setup.transformers || "", cuda_runtime: setup.cuda_runtime || ""};
    if (setup.gpu || setup.compute_capability) {
      var hit = setup.gpu ? findGpu(setup.gpu) : null, cc = setup.compute_capability ? archOf(setup.compute_capability) : null;
      if (hit) { ctx.gpu = hit[0]; ctx.arch = cc || hit[1]; ctx.jetson = !!hit[2]; }
      else if (cc) { ctx.gpu = setup.gpu || cc; ctx.arch = cc; ctx.jetson = F.jetson_archs.indexOf(cc) >= 0; }
      else notes.push("GPU '" + setup.gpu + "' is not one this site knows; give its architecture (--gpu sm_86)");
    }
    var torch = setup.torch || "", loc = local(torch);
    if (/\.nv\d\d|a0\+/.test(torch) || loc.indexOf("l4t") >= 0) ctx.jetson = true;
    var machine = setup.machine || (ctx.jetson ? "aarch64" : "");
    if (setup.os === "windows") ctx.platform = "windows-x86_64";
    else {
      ctx.platform = "linux-" + (machine || "x86_64");
      if (!setup.os && !ctx.jetson) assumed.push("OS not given: assumed Linux" + (machine ? "" : " x86_64"));
    }
    if (torch) {
      var table = F.torch[ctx.platform] || {}, defaults = F.torch_default[ctx.platform] || {};
      var b = base(torch), release = b, build;
      Object.keys(defaults).forEach(function (r) { if (release === b && vcmp(r, b) === 0) release = r; });
      var named = loc ? release + "+" + loc : release, twin = defaults[release];
      if (table[named]) build = named;
      else if (loc && twin && table[twin].cuda === cudaOfVariant(loc)) build = twin;
      else if (!loc && twin) { build = twin; if (ctx.platform === "windows-x86_64" && !table[twin].cuda) build = named; }
      else build = named;
      if (build !== torch && !loc) assumed.push("torch " + torch + ": PyPI's default wheel for " + ctx.platform + " (CUDA " + ((table[build] || {}).cuda || "unknown") + ")");
      ctx.torch = build;
      var known = table[build] || {};
      ctx.cuda = setup.torch_cuda || known.cuda || (loc.indexOf("cu") === 0 ? cudaOfVariant(loc) : "");
      ctx.cpu_torch = loc === "cpu";
      ctx.torch_archs = (setup.torch_archs && setup.torch_archs.length ? setup.torch_archs : null) || known.archs || null;
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
    var table = F.torch[ctx.platform] || {};
    var same = Object.keys(table).filter(function (b) { return table[b].cuda === ctx.cuda && table[b].archs; });
    var answers = {};
    same.forEach(function (b) { answers[torchRunsOn(table[b].archs, arch)] = 1; });
    var keys = Object.keys(answers);
    if (keys.length === 1) {
      assumed.push("torch " + ctx.torch + "'s arch list is not known: assumed like the CUDA " + ctx.cuda + " builds known (" +
                   same.slice(0, 3).join(", ") + (same.length > 3 ? ", ..." : "") + "), which " + (keys[0] === "yes" ? "all run" : "none runs") + " on " + arch);
      return keys[0];
    }
    return "unknown";
  }
  function driverFloor(cuda, platform, ptx) {
    var col = platform.indexOf("windows") === 0 ? 1 : 0, floor = F.driver.major[cuda.split(".")[0]];
    var shipped = ptx ? F.driver.toolkit[cuda.split(".").slice(0, 2).join(".")] : null;
    return (shipped && shipped[col]) || (floor ? floor[col] : "");
  }
  function driverBelow(driver, floor) {
    var have = driver.split(".").filter(function (x) { return /^\d+$/.test(x); }).map(Number);
    var need = floor.split(".").filter(function (x) { return /^\d+$/.test(x); }).map(Number);
    for (var i = 0; i < need.length; i++) {
      var h = have[i] === undefined ? -1 : have[i];
      if (h !== need[i]) return h < need[i];
    }
    return false;
  }
  function tupleCmp(a, b) { return a[0] - b[0] || a[1] - b[1]; }
  function libraryStem(entry, cuda, arch, override, system) {
    var rule = entry.rule;
    if (rule.template === "unknown" || rule.version_from === "unknown") return [null, "the release's loader rule could not be read from its source"];
    var note = "";
    if (rule.version_from === "system libcudart" && system) { cuda = system; note = "the system's CUDA runtime " + system + ", not torch's"; }
    else if (rule.version_from === "system libcudart") return [null, "this release picks its library by the CUDA runtime (libcudart.so) it finds on the system, not by torch: which one is not known from here (--cuda-runtime, or paste its output)"];
    var want = cuda.split(".").slice(0, 2).map(Number), have = entry.shipped.map(function (v) { return v.split(".").slice(0, 2).map(Number); });
    var hasWant = have.some(function (v) { return tupleCmp(v, want) === 0; });
    if (rule.selection === "nearest-same-major" && !override && !hasWant) {
      var lower = have.filter(function (v) { return v[0] === want[0] && tupleCmp(v, want) < 0; }).sort(tupleCmp);
      var higher = have.filter(function (v) { return v[0] === want[0] && tupleCmp(v, want) > 0; }).sort(tupleCmp);
      var picked = lower.length ? lower[lower.length - 1] : higher.length ? higher[0] : want;
      if (tupleCmp(picked, want) !== 0) note = "no CUDA " + want[0] + "." + want[1] + " library: it takes the nearest of the same major";
      want = picked;
    }
    var stem = "libbitsandbytes_cuda" + want[0] + want[1];
    if (rule.nocublaslt && archNum(arch) < 75) stem += "_nocublaslt";
    var style = rule.override;
    if (override) {
      if (style === "slice") return [(stem + ".so").slice(0, -6) + override, "BNB_CUDA_VERSION: the last 6 characters of the name are cut"];
      if (style === "rstrip") return [stem.replace(/[0-9]+$/, "") + override, "BNB_CUDA_VERSION replaces the trailing digits"];
      if (style === "re.sub") return [stem.replace(/cuda\d+/, "cuda" + override), "BNB_CUDA_VERSION replaces cudaXYZ"];
      if (style === "replace") {
        if (!/^\d+$/.test(override)) return [null, "BNB_CUDA_VERSION=" + override + " is refused (digits only)"];
        return ["libbitsandbytes_cuda" + override, "BNB_CUDA_VERSION names the library"];
      }
    }
    return [stem, note];
  }
  function overrideFix(entry, cuda, arch) {
    var major = cuda.split(".")[0], index = F.archs.indexOf(arch);
    var options = entry.shipped.slice().sort(vcmp).reverse();
    for (var i = 0; i < options.length; i++) {
      var option = options[i];
      if (option.split(".")[0] !== major || vcmp(option, cuda) >= 0) continue;
      var value = option.replace(".", ""), stem = libraryStem(entry, cuda, arch, value)[0];
      if (stem && entry.libs[stem] && entry.libs[stem][2][index] === "L") return "set BNB_CUDA_VERSION=" + value + " (loads " + stem + ", built for CUDA " + option + ")";
    }
    return "";
  }

  function predicted(ctx, setup, noMeasured) {
    var chain = [], assumed = [];
    var out = {verdict: "unknown", source: "none", facts: chain, assumed: assumed, fix: "", cell: "", library: ""};
    function done(v, source, fix) { return copy(out, {verdict: v, source: source || "predicted", fix: fix || ""}); }
    var platform = ctx.platform, bnb = ctx.bnb, arch = ctx.arch;
    if (ctx.cpu_torch) { chain.push("torch " + ctx.torch + " is a CPU-only build: bitsandbytes cannot use the GPU through it"); return done("fails"); }
    var entry = (F.wheels[platform] || {})[bnb];
    if (!entry) {
      if (F.releases.indexOf(bnb) >= 0) { chain.push("bitsandbytes " + bnb + " has no wheel for " + platform + " on PyPI (pip finds no matching distribution)"); return done("fails"); }
      chain.push("bitsandbytes " + bnb + " was not read here (the predicted layer reads releases " + F.releases[0] + " to " + F.releases[F.releases.length - 1] + ")");
      return out;
    }
    if (entry.foreign) { chain.push("bitsandbytes " + bnb + "'s only wheel is py3-none-any with Linux x86-64 libraries: pip installs it on " + platform + ", where they cannot load (CUDA setup fails at import)"); return done("fails"); }
    if (ctx.jetson && platform === "linux-aarch64" && arch !== "sm_110") {
      chain.push("PyPI's " + platform + " wheels are built for server Arm (SBSA), not for Jetson's L4T: the first CUDA kernel fails with 'named symbol not found' (reported: " + JETSON_REPORT + ")");
      return done("fails", "reported");
    }
    if (!ctx.torch) { chain.push("torch not given: which library bitsandbytes loads depends on torch's CUDA version"); return out; }
    if (!ctx.cuda) {
      var cpuDefault = ctx.torch.indexOf("+") < 0 && ((F.torch_cpu_default || {})[platform] || []).some(function (r) { return vcmp(r, base(ctx.torch)) === 0; });
      chain.push(cpuDefault ? "PyPI's torch " + base(ctx.torch) + " for " + platform + " is a CPU-only build (with it, GPU 4-bit fails); installed from PyTorch's index it is not: give the build torch.__version__ prints"
                 : "torch " + ctx.torch + "'s CUDA version is not known here (give the build, like " + base(ctx.torch) + "+cu124)");
      return out;
    }
    if (!arch || F.archs.indexOf(arch) < 0) return out;
    var measured = noMeasured ? [] : measuredRows(ctx);
    if (measured.length) {
      var rows = measured.filter(function (r) { return r[0] === ctx.transformers; }), matched = rows.length > 0;
      if (!matched) rows = measured;
      if (!ctx.transformers || !matched) assumed.push("transformers " + (ctx.transformers || "not given") + ": answered from the measured cell with transformers " + rows[0][0]);
      chain.push("measured on " + arch + ": torch " + ctx.torch + ", bitsandbytes " + bnb + ", transformers " + rows[0][0] + ": " + rows[0][1]);
      return copy(done(MEASURED[rows[0][1]] || "unknown", "measured", rows[0][1] === "works-with-fix" ? (rows[0][3] ? "measured to pass with: " + rows[0][3] + " (see the cell page)" : "the fix on the cell page") : ""), {cell: rows[0][2]});
    }
    var support = torchSupport(ctx, chain, assumed);
    if (support === "no") { chain.push("CUDA work fails before bitsandbytes runs: torch has no kernel for " + arch); return done("fails"); }
    var floor = driverFloor(ctx.cuda, platform, false);
    if (setup.driver && floor && driverBelow(setup.driver, floor)) { chain.push("driver " + setup.driver + " is below " + floor + ", the lowest for torch's CUDA " + ctx.cuda); return done("fails"); }
    var override = envValue(setup, "BNB_CUDA_VERSION"), named = libraryStem(entry, ctx.cuda, arch, override, ctx.cuda_runtime), stem = named[0], note = named[1];
    if (stem === null) { chain.push(note); return out; }
    out.library = stem;
    var how = note.indexOf("the system's") === 0 ? note : "torch's CUDA " + ctx.cuda + (note ? "; " + note : "");
    chain.push("bitsandbytes " + bnb + " loads " + stem + " (" + how + ")");
    var lib = entry.libs[stem];
    if (!lib) {
      var missing = entry.rule.missing;
      chain.push("the " + platform + " wheel does not ship " + stem + " (its CUDA libraries: " + (entry.shipped.join(", ") || "none") + "): " +
                 (missing === "cpu-fallback" ? "it falls back to the CPU library and GPU 4-bit fails" : missing === "setup-failed" || missing === "import-error" ? "the CUDA setup fails at import" : "the first native call fails"));
      if (override) {
        var plain = libraryStem(entry, ctx.cuda, arch, "", ctx.cuda_runtime)[0];
        var good = plain && entry.libs[plain] && "LJ".indexOf(entry.libs[plain][2][F.archs.indexOf(arch)]) >= 0;
        return good ? done("works-with-fix", "predicted", "unset BNB_CUDA_VERSION") : done("fails");
      }
      var alt = entry.rule.override !== "none found" ? overrideFix(entry, ctx.cuda, arch) : "";
      return alt ? done("works-with-fix", "predicted", alt) : done("fails");
    }
    var cuda = lib[0], glibc = lib[1], code = lib[2][F.archs.indexOf(arch)];
    if (glibc && setup.glibc && vcmp(setup.glibc, glibc) < 0) { chain.push(stem + " needs GLIBC_" + glibc + "; glibc " + setup.glibc + " cannot load it (version `GLIBC_" + glibc + "' not found)"); return done("fails"); }
    if (glibc && !setup.glibc && vcmp(glibc, "2.28") > 0) assumed.push("glibc not given: assumed at least " + glibc + ", which " + stem + " needs (Ubuntu 20.04 has 2.31)");
    if (code === "K") { chain.push(stem + " has no kernel for " + arch + " (neither SASS nor PTX it can JIT)"); return done("fails"); }
    if (code === "?") { chain.push(stem + ": part of its code could not be confirmed for " + arch); return out; }
    chain.push(stem + " carries " + (code === "L" ? "SASS for " + arch : "no SASS for " + arch + " but PTX JIT-compiled at the first launch (slow once)"));
    floor = driverFloor(cuda, platform, code === "J");
    if (setup.driver && floor && driverBelow(setup.driver, floor)) { chain.push("driver " + setup.driver + " is below " + floor + ", the lowest for " + stem + " (CUDA " + cuda + ")"); return done("fails"); }
    if (support === "unknown") { chain.push("torch " + ctx.torch + "'s arch list is not known"); return out; }
    if (override && override !== ctx.cuda.replace(".", "")) assumed.push("the CUDA " + cuda + " runtime libraries are on the library path (BNB_CUDA_VERSION)");
    return done("works");
  }

  function measuredRows(ctx) {
    var names = [ctx.torch].concat(ctx.torch.indexOf("+") < 0 ? [ctx.torch + "+cu" + ctx.cuda.replace(".", "")] : []);
    for (var i = 0; i < names.length; i++) {
      var rows = F.measured[ctx.arch + "|" + names[i] + "|" + ctx.bnb];
      if (rows) return rows;
    }
    return [];
  }

  function reported(ctx) {
    var b = base(ctx.torch);
    for (var i = 0; i < F.reports.length; i++) {
      var row = F.reports[i], arch = row[0], torch = row[2];
      if (row[1] !== ctx.bnb || row[3] !== ctx.platform) continue;
      var sameArch = !!(arch && ctx.arch) && arch === ctx.arch;
      var sameTorch = !!(torch && b) && vcmp(base(torch), b) === 0;
      if ((arch && ctx.arch && !sameArch) || (torch && b && !sameTorch)) continue;
      if (sameArch || sameTorch) return row;
    }
    return null;
  }
  function evaluate(ctx, setup) {
    var result = predicted(ctx, setup);
    if (result.source === "measured") {
      var binaries = predicted(ctx, setup, true);
      if (binaries.facts.length) return copy(result, {facts: result.facts.concat(["the binaries say " + binaries.verdict + ": " + binaries.facts[binaries.facts.length - 1]]), library: binaries.library});
    }
    if (result.verdict !== "unknown") return result;
    var row = reported(ctx);
    if (!row) return result;
    return copy(result, {verdict: row[4], source: "reported", facts: result.facts.concat(["reported (" + row[5] + "): " + row[6]])});
  }

  function closeness(current, candidates) {
    var cur = base(current || "0");
    var newer = candidates.filter(function (c) { return vcmp(base(c), cur) >= 0; }).sort(function (a, b) { return vcmp(base(a), base(b)); });
    var older = candidates.filter(function (c) { return vcmp(base(c), cur) < 0; }).sort(function (a, b) { return vcmp(base(b), base(a)); });
    return newer.concat(older);
  }

  function wayOut(ctx, setup, archs) {
    var found = [], i, pool = archs && archs.length ? archs : [ctx.arch];
    function works(alt) { return pool.every(function (a) { return evaluate(copy(alt, {arch: a}), setup).verdict === "works"; }); }
    var releases = Object.keys(F.wheels[ctx.platform] || {}).filter(function (r) { return r !== ctx.bnb; });
    var order = closeness(ctx.bnb, releases);
    for (i = 0; i < order.length; i++) {
      if (works(copy(ctx, {bnb: order[i]}))) {
        found.push({change: "bitsandbytes", to: order[i], command: "pip install bitsandbytes==" + order[i], uv: "uv pip install bitsandbytes==" + order[i]});
        break;
      }
    }
    var table = F.torch[ctx.platform] || {};
    var builds = Object.keys(table).filter(function (b) { return table[b].archs && table[b].cuda && b !== ctx.torch; });
    order = ctx.bnb ? closeness(ctx.torch, builds) : [];
    for (i = 0; i < order.length; i++) {
      var k = table[order[i]], alt = copy(ctx, {torch: order[i], cuda: k.cuda, torch_archs: k.archs, cpu_torch: false});
      if (works(alt)) {
        var variant = local(order[i]) || "cu" + k.cuda.replace(".", "");
        var pins = "torch==" + base(order[i]) + " --index-url " + INDEX + variant;
        found.push({change: "torch", to: order[i], command: "pip install " + pins, uv: "uv pip install " + pins});
        break;
      }
    }
    var rows = (archs && archs.length ? [] : measuredRows(ctx)).slice().sort(function (a, b) { return vcmp(b[0], a[0]); });
    for (i = 0; i < rows.length; i++) {
      if (rows[i][1] === "works" && rows[i][0] !== ctx.transformers) {
        found.push({change: "transformers", to: rows[i][0], command: "pip install transformers==" + rows[i][0], uv: "uv pip install transformers==" + rows[i][0], cell: rows[i][2]});
        break;
      }
    }
    return found;
  }

  function releasesThatWork(ctx, setup) {
    var releases = Object.keys(F.wheels[ctx.platform] || {}).sort(vcmp);
    var good = releases.filter(function (r) { return evaluate(copy(ctx, {bnb: r}), setup).verdict === "works"; });
    if (!good.length) return ["no bitsandbytes release read works plainly here (" + releases.length + " read)"];
    var runs = [];
    releases.forEach(function (r, i) {
      if (good.indexOf(r) < 0) return;
      if (runs.length && runs[runs.length - 1][runs[runs.length - 1].length - 1] === releases[i - 1]) runs[runs.length - 1].push(r);
      else runs.push([r]);
    });
    var spans = runs.map(function (run) { return run.length === 1 ? run[0] : run[0] + " to " + run[run.length - 1]; }).join(", ");
    return ["bitsandbytes releases that work here: " + spans + " (" + good.length + " of " + releases.length + " read)"];
  }

  function anyGpu(ctx, setup) {
    var archs = F.platform_archs[ctx.platform] || F.archs, answers = {};
    archs.forEach(function (a) { answers[a] = evaluate(copy(ctx, {arch: a}), setup); });
    var runs = ctx.torch_archs ? archs.filter(function (a) { return torchRunsOn(ctx.torch_archs, a) === "yes"; }) : [];
    var pools = [[runs, "every GPU torch " + ctx.torch + " runs on (" + runs.join(", ") + ")"], [archs, "every GPU architecture predicted"]];
    for (var p = 0; p < pools.length; p++) {
      var pool = pools[p][0], verdicts = {};
      pool.forEach(function (a) { verdicts[answers[a].verdict] = 1; });
      var keys = Object.keys(verdicts);
      if (keys.length === 1 && keys[0] !== "unknown") {
        var pick = pool.indexOf("sm_80") >= 0 ? "sm_80" : pool[Math.floor(pool.length / 2)];
        return [answers[pick], "GPU not given: the answer is the same for " + pools[p][1], pool];
      }
    }
    return [copy(answers[archs[0]], {verdict: "unknown", source: "none", facts: ["GPU not given, and the answer depends on it (--gpu T4, or paste nvidia-smi)"]}), "", []];
  }

  function check(setup) {
    var rs = resolve(setup), ctx = rs[0], assumed = rs[1], notes = rs[2], result;
    if (!ctx.bnb && F.releases.length) {
      var pool = Object.keys(F.wheels[ctx.platform] || {});
      if (!pool.length) pool = F.releases;
      ctx.bnb = pool.slice().sort(vcmp)[pool.length - 1];
      assumed.push("bitsandbytes not given: answered for the newest release read, " + ctx.bnb);
    }
    var chosen = !setup.bnb && ctx.arch ? releasesThatWork(ctx, setup) : [];
    var pool = [];
    if (ctx.arch) result = evaluate(ctx, setup);
    else {
      var any = anyGpu(ctx, setup);
      result = any[0];
      pool = any[2];
      if (any[1]) assumed.push(any[1]);
    }
    var outs = (result.verdict === "fails" || result.verdict === "works-with-fix") && (ctx.arch || pool.length) ? wayOut(ctx, setup, pool) : [];
    var resolved = {};
    ["gpu", "arch", "platform", "torch", "cuda", "bnb"].forEach(function (k) { if (ctx[k]) resolved[k] = ctx[k]; });
    if (result.library) resolved.library = result.library;
    var all = assumed.concat(result.assumed).filter(function (a, i, arr) { return arr.indexOf(a) === i; });
    return {verdict: result.verdict, source: result.source, facts: notes.concat(result.facts, chosen), assumed: all,
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
    if (g.cuda_runtime) s.cuda_runtime = g.cuda_runtime.indexOf(".") >= 0 ? g.cuda_runtime : g.cuda_runtime.slice(0, -1) + "." + g.cuda_runtime.slice(-1);
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
            esc(WORDS[v.verdict]) + "</strong> (" + esc(SOURCES[v.source]) + ")</p>";
    var r = v.resolved, what = [];
    if (r.gpu) what.push(r.gpu === r.arch ? r.gpu : r.gpu + " (" + r.arch + ")");
    if (r.torch) what.push("torch " + r.torch + (r.cuda ? " (CUDA " + r.cuda + ")" : ""));
    if (r.bnb) what.push("bitsandbytes " + r.bnb);
    if (r.platform) what.push(r.platform);
    h += '<p class="check-resolved">For ' + esc(what.join(", ")) + ':</p><ul class="check-facts">';
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
