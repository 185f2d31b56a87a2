/* qrnn book: small interactive figures that work offline in the static site (no kernel).
 * A figure is <div class="qrnn-fig" data-kind="..." data-spec='JSON'>; this script renders it
 * as SVG with plain DOM controls. The quantizers below mirror qrnn/quantizers.py. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
    "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"];

  function el(tag, attrs, parent) {
    const e = tag === "svg" || parent instanceof SVGElement || ["g", "path", "line",
      "circle", "text", "rect", "title", "polyline"].includes(tag)
      ? document.createElementNS(NS, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    if (parent) parent.appendChild(e);
    return e;
  }

  function ticks(lo, hi, n) {
    const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) out.push(+t.toFixed(10));
    return out;
  }

  /* a marker shape at (x, y) (qrnn.viz.SCHEME_STYLES): tells methods apart beyond colour */
  function marker(shape, x, y, color, parent) {
    const r = 4.5, h = r * 0.87;
    const paths = {
      square: `M${x - r * 0.8},${y - r * 0.8}h${1.6 * r}v${1.6 * r}h${-1.6 * r}z`,
      triangle: `M${x},${y - r}L${x + h},${y + r / 2}L${x - h},${y + r / 2}z`,
      "triangle-down": `M${x},${y + r}L${x + h},${y - r / 2}L${x - h},${y - r / 2}z`,
      diamond: `M${x},${y - r}L${x + r},${y}L${x},${y + r}L${x - r},${y}z`,
      plus: `M${x - r},${y}h${2 * r}M${x},${y - r}v${2 * r}`,
      cross: `M${x - h},${y - h}L${x + h},${y + h}M${x - h},${y + h}L${x + h},${y - h}`,
      star: Array.from({ length: 10 }, (_, i) => {
        const a = -Math.PI / 2 + (i * Math.PI) / 5, rr = i % 2 ? r * 0.45 : r * 1.1;
        return `${i ? "L" : "M"}${(x + rr * Math.cos(a)).toFixed(1)},${(y + rr * Math.sin(a)).toFixed(1)}`;
      }).join("") + "z",
    };
    if (shape === "circle") return el("circle", { cx: x, cy: y, r: r * 0.9, fill: color }, parent);
    if (!paths[shape]) return null;
    const open = shape === "plus" || shape === "cross";
    return el("path", { d: paths[shape], fill: open ? "none" : color, stroke: color,
      "stroke-width": open ? 2 : 0 }, parent);
  }

  /* chart(svg, {series: [{name, x, y, err?, mode: "line"|"points"|"step", dash?, marker?}],
   *             xlabel, ylabel,
   *             categories?: [..] (categorical x), hlines: [{y, label}]}) */
  function chart(svg, spec) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    // narrow (a phone): the legend goes under the plot in two columns, the drawing is narrower
    // and shown at the column's width, so that it is read without scrolling sideways
    const below = !!spec.narrow, lh = below ? Math.ceil(spec.series.length / 2) * 18 + 8 : 0;
    const W = below ? 400 : 640, H = (below ? 300 : 360) + lh;
    const m = { l: 62, r: below ? 14 : 150, t: 14, b: (spec.categories ? 92 : 46) + lh };
    svg.classList.toggle("qrnn-narrow", below);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const cat = spec.categories;
    const xs = [], ys = [];
    for (const s of spec.series) {
      s.x.forEach((v, i) => {
        if (s.y[i] === null || !isFinite(s.y[i])) return;
        xs.push(cat ? cat.indexOf(v) : v);
        ys.push(s.y[i] - (s.err ? s.err[i] || 0 : 0), s.y[i] + (s.err ? s.err[i] || 0 : 0));
      });
    }
    for (const h of spec.hlines || []) ys.push(h.y);
    if (!xs.length) {
      el("text", { x: 20, y: 40, text: (spec.marks || []).length ? "no test result: every run "
        + "diverged" : "no data yet" }, svg);
      return;
    }
    let [x0, x1] = cat ? [-0.5, cat.length - 0.5] : [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (spec.ylim) [y0, y1] = spec.ylim;
    const pad = (y1 - y0) * 0.06 || 0.5; y0 -= pad; y1 += pad;
    const X = (v) => m.l + ((v - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
    const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
    const g = el("g", { class: "axes" }, svg);
    for (const t of ticks(y0, y1, 6)) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }, g);
      el("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end", text: t }, g);
    }
    const xt = cat ? cat.map((_, i) => i) : ticks(x0, x1, 8);
    for (const t of xt) {
      const lab = cat ? cat[t] : t;
      const tx = el("text", { x: X(t), y: H - m.b + 16, "text-anchor": cat ? "end" : "middle",
        text: lab }, g);
      if (cat) tx.setAttribute("transform", `rotate(-40 ${X(t)} ${H - m.b + 16})`);
    }
    el("text", { x: (m.l + W - m.r) / 2, y: H - lh - 6, "text-anchor": "middle", text: spec.xlabel || "",
      class: "label" }, g);
    el("text", { x: 14, y: (m.t + H - m.b) / 2, "text-anchor": "middle", text: spec.ylabel || "",
      class: "label", transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` }, g);
    el("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: "frame" }, g);
    // a category with no value to plot (every run diverged) is named, not left blank
    for (const k of spec.marks || []) {
      const t = el("text", { x: X(cat ? cat.indexOf(k.x) : k.x), y: m.t + 14 + (k.row || 0) * 14,
        "text-anchor": "middle", text: k.label, class: "qrnn-mark", fill: k.color || "#b00" }, g);
      if (k.tip) el("title", { text: k.tip }, t);
    }
    for (const h of spec.hlines || []) {
      el("line", { x1: m.l, x2: W - m.r, y1: Y(h.y), y2: Y(h.y), class: "hline" }, g);
      el("text", { x: W - m.r - 4, y: Y(h.y) - 4, "text-anchor": "end", text: h.label,
        class: "hlabel" }, g);
    }
    spec.series.forEach((s, k) => {
      // one colour per method (qrnn.viz.METHOD_COLORS), whatever the view
      const color = s.color || (spec.colors || {})[s.name] || COLORS[k % COLORS.length];
      const sg = el("g", { class: "series", "data-name": s.name, "data-color": color }, svg);
      const pts = s.x.map((v, i) => [cat ? cat.indexOf(v) + (s.offset || 0) : v, s.y[i], i])
        .filter((p) => p[1] !== null && isFinite(p[1]));
      if (s.mode === "points") {
        pts.forEach(([px, py, i]) => {
          const e = s.err ? s.err[i] || 0 : 0;
          if (e) el("line", { x1: X(px), x2: X(px), y1: Y(py - e), y2: Y(py + e), stroke: color,
            "stroke-width": 2 }, sg);
          // an open circle: a point without an interval (one seed)
          const open = s.open && s.open[i];
          const c = el("circle", { cx: X(px), cy: Y(py), r: s.r || 4.5,
            fill: open ? "white" : color, stroke: color, "stroke-width": open ? 2 : 0 }, sg);
          if (s.tips) el("title", { text: s.tips[i] }, c);
        });
      } else {
        let d = "";
        pts.forEach(([px, py], i) => {
          const cmd = i ? "L" : "M";
          if (s.mode === "step" && i) d += `L${X(px).toFixed(1)},${Y(pts[i - 1][1]).toFixed(1)}`;
          d += `${cmd}${X(px).toFixed(1)},${Y(py).toFixed(1)}`;
        });
        el("path", { d, fill: "none", stroke: color, "stroke-width": s.width || 2,
          "stroke-dasharray": s.dash || "none", class: "line" }, sg);
        if (s.marker) pts.forEach(([px, py]) => marker(s.marker, X(px), Y(py), color, sg));
      }
      const ly = below ? H - lh + 14 + Math.floor(k / 2) * 18 : m.t + 14 + k * 18;
      const lx = below ? 4 + (k % 2) * (W / 2) : W - m.r + 6;
      el("line", { x1: lx, x2: lx + 24, y1: ly - 4, y2: ly - 4, stroke: color,
        "stroke-width": 3, "stroke-dasharray": s.dash || "none" }, svg);
      if (s.marker) marker(s.marker, lx + 12, ly - 4, color, svg);
      el("text", { x: lx + 28, y: ly, text: s.name, class: "legend" }, svg);
    });
  }

  /* A figure in a column narrower than 560 px (a phone) is drawn for it: legend under the
   * plot, every label inside the screen without scrolling sideways. */
  function isNarrow(div) { return div.clientWidth < 560; }
  function redrawOnResize(div, draw) {
    let narrow = isNarrow(div);
    window.addEventListener("resize", () => {
      if (isNarrow(div) !== narrow) { narrow = isNarrow(div); draw(); }
    });
  }

  /* ---- quantizers (same rules as qrnn/quantizers.py) ---- */
  function quantize(method, w, o, u) {
    // u: uniform sample in [0,1) for the stochastic variant, or null (deterministic)
    const a = Math.abs(w);
    if (method === "binary") {
      const H = o.scale;
      const up = u === null ? w >= 0 : u < Math.min(1, Math.max(0, (w / H + 1) / 2));
      return up ? H : -H;
    }
    if (method === "ternary") {
      const W0 = o.scale;
      const keep = u === null ? a >= W0 / 2 : u < Math.min(1, a / W0);
      return keep ? Math.sign(w) * W0 : 0;
    }
    if (method === "pow2-ternary") {
      const step = Math.pow(2, -o.fbits), bound = Math.pow(2, o.ibits) - step;
      const x = Math.min(bound, Math.max(-bound, w)) / step;
      if (u === null) return Math.sign(x) * Math.floor(Math.abs(x) + 0.5) * step;
      const lo = Math.floor(x);
      return (lo + (u < x - lo ? 1 : 0)) * step;
    }
    // exponential
    if (a === 0) return -Math.pow(2, o.min_exp);
    const k = Math.floor(Math.log2(a)), p = a / Math.pow(2, k) - 1;
    const up = u === null ? p > 0.5 : u < p;
    const e = Math.min(o.max_exp, Math.max(o.min_exp, k + (up ? 1 : 0)));
    return (w > 0 ? 1 : -1) * Math.pow(2, e);
  }

  function expected(method, w, o) {
    // E[q(w)] for the stochastic variant, by exact two-point probabilities
    const n = 400;
    let s = 0;
    for (let i = 0; i < n; i++) s += quantize(method, w, o, (i + 0.5) / n);
    return s / n;
  }

  function mulberry32(seed) {
    return function () {
      let t = (seed += 0x6d2b79f5);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /* The explorer. Defaults are the library's (qrnn.quantizers._DEFAULTS): binary H = 1,
   * pow2-ternary Q0.1, exponential exponents [-22, 9]. Ternary's default W0 is the Glorot bound
   * of each matrix (about 0.15 for a 128-unit recurrent block); the slider sets it directly and
   * starts at 0.5 for the exercises. Controls that do not apply to a method are disabled. */
  const SCALED = { binary: "H", ternary: "W0" };
  function quantizerFigure(div, spec) {
    const controls = el("div", { class: "qrnn-controls" }, div);
    const svg = el("svg", { class: "qrnn-svg", role: "img",
      "aria-label": "Quantizer q(w) against the shadow weight w" }, div);
    const note = el("p", { class: "qrnn-note" }, div);
    const state = { method: "ternary", scaleOf: { binary: 1, ternary: 0.5 }, fbits: 1, ibits: 0,
      min_exp: -22, max_exp: 9, seed: 1 };
    const sel = el("select", { "aria-label": "method", class: "qrnn-method" }, el("label",
      { text: "method " }, controls));
    for (const m of ["binary", "ternary", "pow2-ternary", "exponential"]) {
      el("option", { value: m, text: m }, sel);
    }
    sel.value = state.method;
    const scaleLab = el("label", { class: "qrnn-scale-label" }, controls);
    const scaleName = el("span", { text: "W0 " }, scaleLab);
    const scaleIn = el("input", { type: "range", min: "0.1", max: "1.5", step: "0.05",
      value: 0.5, "aria-label": "scale H or W0", class: "qrnn-scale" }, scaleLab);
    const scaleOut = el("output", { class: "qrnn-scale-value", "aria-live": "polite" }, scaleLab);
    const fLab = el("label", { text: "fractional bits f " }, controls);
    const fIn = el("input", { type: "number", min: "1", max: "4", value: 1, class: "qrnn-fbits",
      "aria-label": "fractional bits" }, fLab);
    const btn = el("button", { type: "button", text: "new stochastic sample",
      class: "qrnn-resample" }, controls);
    function options() {
      return { scale: state.scaleOf[state.method], fbits: state.fbits, ibits: state.ibits,
        min_exp: state.min_exp, max_exp: state.max_exp };
    }
    function sync() {
      const m = state.method, scaled = m in SCALED;
      scaleIn.disabled = !scaled;
      fIn.disabled = m !== "pow2-ternary";
      scaleLab.classList.toggle("qrnn-disabled", !scaled);
      fLab.classList.toggle("qrnn-disabled", fIn.disabled);
      scaleName.textContent = (SCALED[m] || "H / W0") + " ";
      if (scaled) scaleIn.value = state.scaleOf[m];
      scaleOut.textContent = scaled ? (+scaleIn.value).toFixed(2) : "n/a";
    }
    function draw() {
      sync();
      const o = options(), m = state.method, w = [], det = [], mean = [], samp = [];
      const rnd = mulberry32(state.seed);
      for (let i = 0; i <= 240; i++) {
        const x = -1.2 + (2.4 * i) / 240;
        w.push(+x.toFixed(4));
        det.push(quantize(m, x, o, null));
        mean.push(expected(m, x, o));
      }
      const ws = [];
      for (let i = 0; i <= 60; i++) {
        const x = -1.2 + (2.4 * i) / 60;
        ws.push(x);
        samp.push(quantize(m, x, o, rnd()));
      }
      chart(svg, {
        xlabel: "shadow weight w", ylabel: "quantized weight q(w)", narrow: isNarrow(div),
        series: [
          { name: "deterministic", x: w, y: det, mode: "step" },
          { name: "E[q(w)], stochastic", x: w, y: mean, dash: "5,4" },
          { name: "one stochastic draw", x: ws, y: samp, mode: "points", r: 3 },
        ],
      });
      const levels = Array.from(new Set(det.map((v) => +v.toPrecision(6)))).sort((a, b) => a - b);
      const shown = levels.length > 12 ? [...levels.slice(0, 4), "…", ...levels.slice(-4)] : levels;
      const setting = m in SCALED ? `${SCALED[m]} = ${o.scale.toFixed(2)}` : m === "pow2-ternary"
        ? `Q${o.ibits}.${o.fbits}` : `exponents ${o.min_exp}..${o.max_exp} (the default)`;
      note.textContent = `${m} (${setting}): deterministic levels on this range: ` +
        shown.map((v) => (typeof v === "number" ? +v.toPrecision(3) : v)).join(", ");
      div.dataset.scale = m in SCALED ? o.scale : "";
    }
    sel.addEventListener("change", () => { state.method = sel.value; draw(); });
    scaleIn.addEventListener("input", () => { state.scaleOf[state.method] = +scaleIn.value; draw(); });
    fIn.addEventListener("change", () => { state.fbits = Math.max(1, +fIn.value || 1); draw(); });
    btn.addEventListener("click", () => { state.seed += 1; draw(); });
    draw();
    redrawOnResize(div, draw);
  }

  /* results: spec = {rows: [{task, cell, method, test_mean, test_std, n, diverged, metric,
   *                          test_lo?, test_hi?}], baselines: {task: value}, methods: [...],
   *                  interval: "ci" (bars: 95% interval test_lo..test_hi) or "sd"} */
  function resultsFigure(div, spec) {
    const controls = el("div", { class: "qrnn-controls" }, div);
    const svg = el("svg", { class: "qrnn-svg", role: "img",
      "aria-label": "Test metric per method for the chosen task and cell" }, div);
    const tasks = [...new Set(spec.rows.map((r) => r.task))];
    const cells = [...new Set(spec.rows.map((r) => r.cell))];
    const tSel = el("select", { "aria-label": "task", class: "qrnn-task" },
      el("label", { text: "task " }, controls));
    tasks.forEach((t) => el("option", { value: t, text: t }, tSel));
    const cBox = el("span", {}, controls);
    const checks = cells.map((c) => {
      const lab = el("label", { text: ` ${c} ` }, cBox);
      const cb = el("input", { type: "checkbox", value: c, checked: "checked",
        "aria-label": c }, lab);
      lab.insertBefore(cb, lab.firstChild);
      return cb;
    });
    function draw() {
      const task = tSel.value;
      const rows = spec.rows.filter((r) => r.task === task);
      const on = checks.filter((c) => c.checked).map((c) => c.value);
      const ci = spec.interval === "ci";
      const half = (r) => (ci ? (r.test_hi !== null && isFinite(r.test_hi) ? r.test_hi - r.test_mean
        : 0) : r.test_std || 0);
      const marks = [];
      const series = on.map((cell, k) => {
        const rs = spec.methods.map((m) => rows.find((r) => r.cell === cell && r.method === m));
        rs.forEach((r) => {
          if (r && (r.test_mean === null || !isFinite(r.test_mean)) && r.diverged > 0) {
            marks.push({ x: r.method, row: k, label: "✕ diverged",
              color: (spec.colors || {})[cell] || COLORS[cells.indexOf(cell)],
              tip: `${cell} ${r.method}: ${r.diverged} of ${r.n} runs diverged, no test result` });
          }
        });
        return {
          name: cell, mode: "points", x: spec.methods, offset: (k - (on.length - 1) / 2) * 0.18,
          y: rs.map((r) => (r ? r.test_mean : null)), err: rs.map((r) => (r ? half(r) : 0)),
          open: rs.map((r) => Boolean(r && ci && !(r.test_hi !== null && isFinite(r.test_hi)))),
          tips: rs.map((r) => (r && r.test_mean !== null && isFinite(r.test_mean) ?
            `${cell} ${r.method}: ${r.test_mean.toFixed(3)} ` + (ci && !(r.test_hi !== null &&
            isFinite(r.test_hi)) ? `(n=${r.n}: no interval` : `± ${half(r).toFixed(3)} ` +
            `(${ci ? "95% interval" : "sd"}; ${r.n} runs`) + `, ${r.diverged} diverged)` : "")),
          color: (spec.colors || {})[cell] || COLORS[cells.indexOf(cell)],
        };
      });
      const metric = rows.length ? rows[0].metric : "";
      chart(svg, { categories: spec.methods, series, narrow: isNarrow(div),
        ylabel: (spec.ylabels || {})[metric] || `test ${metric}`, xlabel: "method", marks,
        hlines: spec.baselines[task] !== undefined ?
          [{ y: spec.baselines[task], label: "baseline" }] : [] });
    }
    tSel.addEventListener("change", draw);
    checks.forEach((c) => c.addEventListener("change", draw));
    draw();
    redrawOnResize(div, draw);
  }

  /* lines: spec = {groups: {name: [{name, x, y}]}, xlabel, ylabel, select: "label"} */
  function linesFigure(div, spec) {
    const controls = el("div", { class: "qrnn-controls" }, div);
    const svg = el("svg", { class: "qrnn-svg", role: "img", "aria-label": spec.alt || "" }, div);
    const sel = el("select", { "aria-label": spec.select || "group", class: "qrnn-group" },
      el("label", { text: (spec.select || "group") + " " }, controls));
    Object.keys(spec.groups).forEach((g) => el("option", { value: g, text: g }, sel));
    function draw() {
      chart(svg, { xlabel: spec.xlabel, ylabel: spec.ylabel, series: spec.groups[sel.value],
        hlines: spec.hlines || [], colors: spec.colors, narrow: isNarrow(div) });
    }
    sel.addEventListener("change", draw);
    draw();
    redrawOnResize(div, draw);
  }

  /* Wide content scrolls inside its own box; a box that overflows gets a visible cue. */
  const BOXES = ".bd-article table, .qrnn-scroll, .bd-article div.math, " +
    ".bd-article mjx-container[display=true], .bd-article div.highlight pre, .qrnn-inline-scroll, " +
    ".qrnn-fig";
  /* A static figure of several panels shrunk to a phone's width is unreadable: there it keeps
     80 % of its drawn size and scrolls sideways in its own box. */
  function widenFigures() {
    document.querySelectorAll(".bd-article .cell_output img").forEach((img) => {
      if (!img.complete || !img.naturalWidth) return;
      let box = img.parentElement;
      if (!box.classList.contains("qrnn-scroll")) {
        box = document.createElement("div");
        box.className = "qrnn-scroll qrnn-img-scroll";
        img.parentNode.insertBefore(box, img);
        box.appendChild(img);
      }
      const want = Math.round(img.naturalWidth * 0.8);
      // a phone, not a laptop: on a desktop a figure always fits its column, never cropped
      const narrow = window.innerWidth < 700 && box.clientWidth < 0.6 * img.naturalWidth;
      img.style.maxWidth = narrow ? "none" : "";
      img.style.width = narrow ? `${want}px` : "";
    });
  }
  function markOverflow() {
    widenFigures();
    // inline math wider than its line becomes a scroll box of its own
    // measured afresh each time (MathJax may still be laying out on an early call), and a cue
    // whose equation fits now goes away
    document.querySelectorAll(".bd-article mjx-container:not([display=true])").forEach((m) => {
      m.classList.remove("qrnn-inline-scroll");
      const host = m.parentElement.getBoundingClientRect(), r = m.getBoundingClientRect();
      if (r.width > host.width + 1 || r.right > host.right + 1) m.classList.add("qrnn-inline-scroll");
    });
    document.querySelectorAll("span.qrnn-scroll-cue").forEach((c) => {
      const next = c.nextElementSibling;
      if (!next || !next.classList.contains("qrnn-inline-scroll")) c.remove();
    });
    document.querySelectorAll(BOXES).forEach((box) => {
      if (box.closest(".qrnn-scroll") && box !== box.closest(".qrnn-scroll")) return;
      if (box.matches("div.math") && box.querySelector("mjx-container")) return;
      const over = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("qrnn-overflows", over);
      let cue = box.previousElementSibling;
      if (!(cue && cue.classList.contains("qrnn-scroll-cue"))) cue = null;
      if (over && !cue) {
        cue = document.createElement(box.matches(".qrnn-inline-scroll") ? "span" : "div");
        cue.className = "qrnn-scroll-cue";
        cue.textContent = "wider than the screen: scroll sideways →";
        box.parentNode.insertBefore(cue, box);
      }
      if (cue) cue.hidden = !over;
    });
  }
  function watchOverflow() {
    markOverflow();
    window.addEventListener("resize", markOverflow);
    document.querySelectorAll(".bd-article .cell_output img").forEach((img) =>
      img.addEventListener("load", markOverflow));
    [300, 1500, 4000].forEach((t) => setTimeout(markOverflow, t));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(markOverflow);
    }
  }
  window.qrnnMarkOverflow = markOverflow;  // for the browser test

  const KINDS = { quantizer: quantizerFigure, results: resultsFigure, lines: linesFigure };
  function init() {
    document.querySelectorAll("div.qrnn-fig").forEach((div) => {
      if (div.dataset.ready) return;
      div.dataset.ready = "1";
      const spec = div.dataset.spec ? JSON.parse(div.dataset.spec) : {};
      KINDS[div.dataset.kind](div, spec);
    });
  }
  window.qrnnQuantize = quantize;  // exposed for the browser test
  window.qrnnInitFigures = init;  // draws figures added after load (the browser test)
  function start() { init(); watchOverflow(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
