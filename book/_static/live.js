/* qrnn book: the study's trained PTB-char language models, run in the reader's browser.
 *
 * window.qrnnLiveAsset (written at build time by book/_ext/qrnn_live.py) holds every model:
 * float tensors as float32, quantized tensors as their integer codes (qrnn/codes.py). A
 * quantized matrix-vector product never multiplies by a weight: per output, the inputs whose
 * weight is +1 are added, those whose weight is -1 subtracted, zeros skipped, then one scale
 * per matrix (binary, ternary); exponential weights are a sign and an exponent, so the inputs
 * are summed per exponent and each sum is shifted by it; pow2-ternary's n 2^-f likewise.
 * Arithmetic is float64; PyTorch runs the same model in float32 (tests/test_live.py compares
 * the two).
 *
 * No library, no request: the page works from file://. window.qrnnLive is the programmatic
 * face (probs, sample, weights, symbols) used by the tests. */
"use strict";
(function () {
  const B85 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
  const B85_VALUE = new Int16Array(128).fill(-1);
  for (let i = 0; i < B85.length; i++) B85_VALUE[B85.charCodeAt(i)] = i;
  const MAX_SYMBOLS = 2000; // longer texts are cut (each character costs every model a step)
  const CHECKPOINT = 32; // the state is kept every 32 characters: an edit recomputes from there

  /* ------------------------------------------------------------------ decoding the asset */
  function b85bytes(s, nbytes) {
    // Python's base64.b85encode: 5 digits (most significant first) per big-endian 4 bytes
    if (s.length % 5) throw new Error("live models: base85 text of bad length");
    const out = new Uint8Array((s.length / 5) * 4);
    for (let i = 0, o = 0; i < s.length; i += 5, o += 4) {
      let v = 0;
      for (let k = 0; k < 5; k++) {
        const d = B85_VALUE[s.charCodeAt(i + k)];
        if (d < 0) throw new Error("live models: bad base85 digit");
        v = v * 85 + d;
      }
      out[o] = v >>> 24; out[o + 1] = (v >>> 16) & 255; out[o + 2] = (v >>> 8) & 255; out[o + 3] = v & 255;
    }
    return out.subarray(0, nbytes);
  }

  function floats(t) { // float32 little-endian -> Float64Array
    const b = b85bytes(t.f32, t.nbytes), dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out = new Float64Array(t.nbytes / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }

  function codes(t) { // code i at stream bits [i*b, (i+1)*b), least significant bit first
    const b = b85bytes(t.codes, t.nbytes), bits = t.bits, n = t.shape.reduce((a, c) => a * c, 1);
    const out = new Uint8Array(n);
    for (let i = 0, pos = 0; i < n; i++) {
      let c = 0;
      for (let k = 0; k < bits; k++, pos++) c |= ((b[pos >> 3] >> (pos & 7)) & 1) << k;
      out[i] = c;
    }
    return out;
  }

  /* The levels of a method's codes: value(code) = scale * (+mag for pos[k], -mag for neg[k]);
   * every other code is zero (ternary's code 0, pow2's n = 0). As in qrnn/codes.py. */
  function levels(t) {
    const o = t.options || {}, pos = [], neg = [], mag = [];
    const pair = (p, n, m) => { pos.push(p); neg.push(n); mag.push(m); };
    let scale = Math.fround(t.scale);
    if (t.scheme === "binary") pair(0, 1, 1); // the bit is the sign
    else if (t.scheme === "ternary") pair(1, 3, 1); // two's complement n in {-1, 0, 1}
    else if (t.scheme === "pow2-ternary") { // two's complement n, value n 2^-f
      const nmax = 2 ** (o.integer_bits + o.fractional_bits) - (o.clip === "grid" ? 1 : 0);
      for (let n = 1; n <= nmax; n++) pair(n, 2 ** t.bits - n, n);
      scale = 2 ** -o.fractional_bits;
    } else if (t.scheme === "exponential") { // top bit the sign, low bits u: 2^(min_exp + u)
      const half = 2 ** (t.bits - 1);
      for (let u = 0; u <= o.max_exp - o.min_exp; u++) pair(u, u + half, 2 ** (o.min_exp + u));
      scale = 1;
    } else throw new Error(`live models: unknown scheme ${t.scheme}`);
    return { pos: Int32Array.from(pos), neg: Int32Array.from(neg), mag: Float64Array.from(mag),
      scale, size: 2 ** t.bits };
  }

  function values(t) { // decoded weights of any tensor (float64 holds float32 values exactly)
    if (t.f32 !== undefined) return floats(t);
    const c = codes(t), L = levels(t), table = new Float64Array(L.size);
    for (let k = 0; k < L.pos.length; k++) {
      table[L.pos[k]] = L.scale * L.mag[k]; table[L.neg[k]] = -L.scale * L.mag[k];
    }
    return Float64Array.from(c, (x) => table[x]);
  }

  /* A quantized matrix as index lists into the signed input [x, -x]: per row and per level
   * (magnitude) it uses, the columns whose weight is +level (j) or -level (cols + j); zero
   * weights are in no list. */
  function matrix(t) {
    const [rows, cols] = t.shape;
    if (t.f32 !== undefined) return { rows, cols, w: floats(t) };
    const c = codes(t), L = levels(t), nlev = L.pos.length;
    const level = new Int32Array(L.size).fill(-1), sign = new Int32Array(L.size);
    L.pos.forEach((p, k) => { level[p] = k; level[L.neg[k]] = k; sign[L.neg[k]] = cols; });
    const n = c.length, idx = new Uint16Array(n), runs = [], rowRuns = new Int32Array(rows + 1);
    const count = new Int32Array(nlev), at = new Int32Array(nlev);
    let used = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      count.fill(0);
      for (let j = 0; j < cols; j++) { const k = level[c[o + j]]; if (k >= 0) count[k]++; }
      for (let k = 0; k < nlev; k++) {
        if (!count[k]) continue;
        at[k] = used;
        runs.push(k, used, used + count[k]); // (level, first, end)
        used += count[k];
      }
      for (let j = 0; j < cols; j++) {
        const code = c[o + j], k = level[code];
        if (k >= 0) idx[at[k]++] = j + sign[code];
      }
      rowRuns[r + 1] = runs.length / 3;
    }
    return { rows, cols, idx: idx.slice(0, used), runs: Int32Array.from(runs), rowRuns,
      mag: L.mag, scale: L.scale, xs: new Float64Array(2 * cols) };
  }

  /* y = M x. Float: dot products. Quantized: per row and level, add up the signed inputs of
   * its columns (add for +1, subtract for -1, zeros skipped), weigh the sum by the level (1
   * for binary and ternary; 2^e for exponential, a shift of the exponent), then one scale per
   * matrix. No weight is multiplied. */
  function mv(m, x, y) {
    const { rows, cols } = m;
    if (m.w) {
      const w = m.w;
      for (let r = 0, o = 0; r < rows; r++, o += cols) {
        let s0 = 0, s1 = 0, j = 0; // two sums: independent additions run in parallel
        for (; j + 1 < cols; j += 2) { s0 += w[o + j] * x[j]; s1 += w[o + j + 1] * x[j + 1]; }
        if (j < cols) s0 += w[o + j] * x[j];
        y[r] = s0 + s1;
      }
      return;
    }
    const { idx, runs, rowRuns, mag, scale, xs } = m;
    for (let j = 0; j < cols; j++) { xs[j] = x[j]; xs[cols + j] = -x[j]; }
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let q = 3 * rowRuns[r], end = 3 * rowRuns[r + 1]; q < end; q += 3) {
        let s0 = 0, s1 = 0, p = runs[q + 1];
        const e = runs[q + 2];
        for (; p + 1 < e; p += 2) { s0 += xs[idx[p]]; s1 += xs[idx[p + 1]]; }
        const sum = p < e ? s0 + s1 + xs[idx[p]] : s0 + s1;
        const k = runs[q];
        s += mag[k] === 1 ? sum : mag[k] * sum;
      }
      y[r] = scale === 1 ? s : scale * s; // one scale per matrix
    }
  }

  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  /* embedding (float) -> one-layer LSTM (gate order i, f, g, o as torch) -> linear (float) */
  class Model {
    constructor(spec, vocab) {
      const t = spec.tensors;
      this.meta = spec; this.V = vocab.length; this.H = spec.hidden; this.E = spec.embed;
      this.emb = floats(t["embed.weight"]); // (V, E)
      this.wih = matrix(t["rnn.weight_ih_l0"]); // (4H, E)
      this.whh = matrix(t["rnn.weight_hh_l0"]); // (4H, H)
      const bih = values(t["rnn.bias_ih_l0"]), bhh = values(t["rnn.bias_hh_l0"]);
      this.bih = bih; this.bhh = bhh; // (4H,) each, quantized like the matrices
      this.wout = matrix(t["out.weight"]); // (V, H)
      this.bout = floats(t["out.bias"]); // (V,)
      this.gi = new Float64Array(4 * this.H); this.gh = new Float64Array(4 * this.H);
    }

    zero() { return { h: new Float64Array(this.H), c: new Float64Array(this.H) }; }

    /* one character: the state moves in place; returns the logits of the next character */
    step(state, id, logits) {
      const H = this.H, E = this.E, gi = this.gi, gh = this.gh, h = state.h, c = state.c;
      mv(this.wih, this.emb.subarray(id * E, (id + 1) * E), gi);
      mv(this.whh, h, gh);
      const bi = this.bih, bh = this.bhh;
      for (let u = 0; u < H; u++) {
        // pre-activations W_ih x + b_ih + W_hh h + b_hh of the four gate blocks
        const a = u, b = H + u, q = 2 * H + u, d = 3 * H + u;
        const i = sigmoid(gi[a] + bi[a] + gh[a] + bh[a]), f = sigmoid(gi[b] + bi[b] + gh[b] + bh[b]);
        const g = Math.tanh(gi[q] + bi[q] + gh[q] + bh[q]), o = sigmoid(gi[d] + bi[d] + gh[d] + bh[d]);
        c[u] = f * c[u] + i * g;
        h[u] = o * Math.tanh(c[u]);
      }
      const out = logits || new Float64Array(this.V);
      mv(this.wout, h, out);
      for (let v = 0; v < this.V; v++) out[v] += this.bout[v];
      return out;
    }
  }

  function softmax(logits, temperature) {
    const T = temperature || 1, p = new Float64Array(logits.length);
    let mx = -Infinity, z = 0;
    for (const l of logits) mx = Math.max(mx, l / T);
    for (let v = 0; v < p.length; v++) { p[v] = Math.exp(logits[v] / T - mx); z += p[v]; }
    for (let v = 0; v < p.length; v++) p[v] /= z;
    return p;
  }

  /* a 32-bit counter-based generator (Weyl sequence + murmur3 finalizer): same seed, same
   * draws in every browser */
  function generator(seed) {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
    };
  }

  function draw(p, u) { // the first symbol whose cumulative probability exceeds u
    let acc = 0;
    for (let v = 0; v < p.length; v++) { acc += p[v]; if (u < acc) return v; }
    return p.length - 1;
  }

  /* ------------------------------------------------------------------ the models, loaded */
  const asset = window.qrnnLiveAsset;
  if (!asset) return; // the page has no models (the build writes them)
  const vocab = asset.vocab, index = new Map(vocab.map((s, i) => [s, i]));
  const NL = index.get("\n"); // a PTB line ends with "\n": the text starts as a new sentence
  const models = asset.models.map((m) => new Model(m, vocab));

  /* the reader's text as the models' symbols: letters lower-cased, a space is PTB's word
   * separator "_", anything else outside the 50 symbols is kept for display and skipped */
  function symbols(text) {
    const items = [];
    for (const ch of text) {
      if (ch === "\r") continue;
      const s = ch === " " || ch === "\t" ? "_" : ch.toLowerCase();
      items.push({ ch, sym: s, id: index.has(s) ? index.get(s) : -1 });
    }
    return items;
  }

  function idsOf(text) { return symbols(text).filter((x) => x.id >= 0).map((x) => x.id); }

  /* probabilities of every next symbol: row j follows "\n" and the first j symbols */
  function probs(k, text) {
    const m = models[k], st = m.zero(), out = [];
    let logits = m.step(st, NL);
    for (const id of idsOf(text)) { out.push(softmax(logits)); logits = m.step(st, id); }
    out.push(softmax(logits));
    return out;
  }

  /* a continuation: n symbols drawn at a temperature, one call of next() per symbol */
  function sampler(m, state, logits, n, temperature, seed) {
    const st = { h: Float64Array.from(state.h), c: Float64Array.from(state.c) };
    const rnd = generator(seed);
    let l = Float64Array.from(logits);
    const out = { s: "", n, done: () => out.s.length >= n, next() {
      const id = draw(softmax(l, temperature), rnd());
      out.s += vocab[id];
      if (!out.done()) l = m.step(st, id);
    } };
    return out;
  }

  function sample(k, text, n, temperature, seed) {
    const m = models[k], st = m.zero();
    let logits = m.step(st, NL);
    for (const id of idsOf(text)) logits = m.step(st, id);
    const g = sampler(m, st, logits, n, temperature, seed);
    while (!g.done()) g.next();
    return g.s;
  }

  window.qrnnLive = {
    vocab, symbols, probs, sample, generator,
    models: () => asset.models.map(({ tensors, ...meta }) => meta),
    weights: (k, name) => values(asset.models[k].tensors[name]),
  };
  if (typeof document === "undefined") return; // node (the tests): no page

  /* ------------------------------------------------------------------ incremental runs */
  // Per model: the symbols fed so far, the surprisal of each, checkpoints of the state.
  const newRuns = () => models.map((m) => ({ m, ids: [], done: 0, state: null, logits: null,
    surprisal: new Float64Array(MAX_SYMBOLS), ckpt: [], ms: 0, steps: 0 }));

  function reset(run) {
    run.state = run.m.zero();
    run.logits = run.m.step(run.state, NL);
    run.done = 0;
    run.ckpt = [save(run)];
  }
  function save(run) {
    return { done: run.done, h: Float64Array.from(run.state.h), c: Float64Array.from(run.state.c),
      logits: Float64Array.from(run.logits) };
  }
  function restore(run, cp) {
    run.state = { h: Float64Array.from(cp.h), c: Float64Array.from(cp.c) };
    run.logits = Float64Array.from(cp.logits); run.done = cp.done;
  }

  function retarget(run, ids) { // keep the work shared with the new text
    let same = 0;
    while (same < run.done && same < ids.length && run.ids[same] === ids[same]) same++;
    run.ids = ids;
    if (!run.state) reset(run);
    if (same < run.done) {
      run.ckpt = run.ckpt.filter((cp) => cp.done <= same);
      restore(run, run.ckpt[run.ckpt.length - 1]);
    }
  }

  function advance(run) { // one character
    const id = run.ids[run.done], t0 = performance.now();
    const p = softmax(run.logits);
    run.surprisal[run.done] = -Math.log2(p[id]);
    run.logits = run.m.step(run.state, id, run.logits);
    run.done++;
    run.ms += performance.now() - t0; run.steps++;
    if (run.done % CHECKPOINT === 0) run.ckpt.push(save(run));
  }

  /* ------------------------------------------------------------------ the widget */
  const fmt = (x, d) => x.toFixed(d);
  const show = (s) => (s === "_" ? "\u2423" : s === "\n" ? "\u23ce" : s); // space, return
  const text = (s) => s.replace(/_/g, " ");
  function el(tag, attrs, parent, content) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (content !== undefined) e.textContent = content;
    if (parent) parent.appendChild(e);
    return e;
  }
  function rgba(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a.toFixed(3)})`;
  }
  const SCALE_BITS = 10; // surprisal at which the shade is full
  const SHADE = "#dd8452"; // the book's palette (qrnn.js), one shade for every model

  let uid = 0;
  function widget(root) {
    const compact = root.dataset.variant === "compact", id = `qrnn-live-${uid++}`;
    const models_href = root.dataset.models || "", runs = newRuns();
    root.textContent = "";
    el("label", { for: `${id}-text`, class: "qrnn-live-label" }, root,
      "Type or paste text (the models read it one character at a time):");
    const area = el("textarea", { id: `${id}-text`, rows: compact ? 2 : 3, spellcheck: "false",
      autocomplete: "off", class: "qrnn-live-text" }, root);
    area.value = root.dataset.text || "the company said it expects to report a loss for the third quarter";
    const status = el("p", { class: "qrnn-note qrnn-live-status", "aria-live": "polite" }, root);
    let nIn, tIn, sIn;
    if (!compact) {
      const ctl = el("div", { class: "qrnn-controls qrnn-live-controls" }, root);
      const num = (label, attrs) => {
        const l = el("label", {}, ctl, label + " ");
        return el("input", { type: "number", ...attrs }, l);
      };
      nIn = num("continue", { value: 60, min: 0, max: 400, step: 1, class: "qrnn-live-n" });
      tIn = num("characters at temperature", { value: 0.8, min: 0.1, max: 3, step: 0.1,
        class: "qrnn-live-temp" });
      sIn = num("with seed", { value: 1, min: 0, max: 4294967295, step: 1,
        class: "qrnn-live-seed" });
      const again = el("button", { type: "button", class: "qrnn-live-again" }, ctl, "another sample");
      again.addEventListener("click", () => { sIn.value = (+sIn.value || 0) + 1; schedule(); });
      for (const i of [nIn, tIn, sIn]) i.addEventListener("input", () => schedule());
      const legend = el("p", { class: "qrnn-note qrnn-live-legend" }, root,
        "Under each model, every typed character is shaded by its surprisal, -log2 p (bits): ");
      for (const b of [0, 2, 4, 6, 8, 10]) {
        el("span", { class: "qrnn-live-key", style: `background:${rgba(SHADE, b / SCALE_BITS * 0.85)}` },
          legend, b === 10 ? "10+" : String(b));
      }
      legend.appendChild(document.createTextNode(" bits (hover a character for its value)."));
      const src = asset.source;
      el("p", { class: "qrnn-note" }, root, `The models: one run per method of experiment `
        + `${src.experiment} in ${src.results}, seed ${src.seed}; each was trained on PTB-char.`);
    }
    if (compact) {
      el("p", { class: "qrnn-note" }, root, "Each bar is a model's BPC on your text, from 0 to 8 "
        + "bits (shorter is better), beside its test BPC and the five characters it expects next.");
    }
    const grid = el("div", { class: compact ? "qrnn-live-rows" : "qrnn-live-grid" }, root);
    const cards = runs.map((run) => card(grid, run.m.meta, compact, models_href));

    let pending = null, items = [], sampled = new Map();
    function schedule() {
      if (pending) clearTimeout(pending);
      pending = setTimeout(work, 0);
    }
    function work() { // at most ~12 ms at a time: the page stays responsive while typing
      pending = null;
      const t0 = performance.now();
      let busy = false;
      for (const run of runs) {
        while (run.done < run.ids.length && performance.now() - t0 < 12) advance(run);
        busy = busy || run.done < run.ids.length;
      }
      if (!busy && !compact) busy = !sampleStep(t0);
      render(busy);
      if (busy) pending = setTimeout(work, 0);
    }
    function sampleKey() { return [run0ids(), +nIn.value, +tIn.value, +sIn.value >>> 0].join("|"); }
    function run0ids() { return runs[0].ids.join(","); }
    function sampleStep(t0) { // the continuations, a symbol at a time; true when all done
      const key = sampleKey();
      for (let k = 0; k < runs.length; k++) {
        let g = sampled.get(k);
        if (!g || g.key !== key) {
          const run = runs[k], n = Math.max(0, Math.min(400, Math.floor(+nIn.value || 0)));
          const T = Math.max(0.05, Math.min(5, +tIn.value || 1));
          g = sampler(run.m, run.state, run.logits, n, T, +sIn.value >>> 0);
          g.key = key;
          sampled.set(k, g);
        }
        while (!g.done()) {
          if (performance.now() - t0 > 12) return false;
          g.next();
        }
      }
      return true;
    }
    let lastRender = 0;
    function render(busy) {
      const now = performance.now();
      if (busy && now - lastRender < 150) return;
      lastRender = now;
      const skipped = items.filter((x) => x.id < 0).length, n = runs[0].ids.length;
      status.textContent = `${n} characters read` + (skipped ? `; ${skipped} outside the models' `
        + `${vocab.length} symbols (struck through, skipped)` : "") + (cut ? `; only the first ${MAX_SYMBOLS} are read` : "")
        + (busy ? "; computing\u2026" : ".");
      runs.forEach((run, k) => cards[k].update(run, items, compact ? null : sampled.get(k)));
    }
    let cut = false;
    function onInput() {
      items = symbols(area.value);
      const kept = items.filter((x) => x.id >= 0);
      cut = kept.length > MAX_SYMBOLS;
      if (cut) { let seen = 0; items = items.filter((x) => x.id < 0 || ++seen <= MAX_SYMBOLS); }
      const ids = items.filter((x) => x.id >= 0).map((x) => x.id);
      for (const run of runs) retarget(run, ids);
      schedule();
    }
    area.addEventListener("input", onInput);
    onInput();
  }

  function card(grid, meta, compact, models_href) {
    const c = el("div", { class: "qrnn-live-card", "data-method": meta.method }, grid);
    c.style.setProperty("--qrnn-live-color", meta.color);
    const head = el("div", { class: "qrnn-live-head" }, c);
    el("span", { class: "qrnn-live-swatch", "aria-hidden": "true" }, head);
    el("b", {}, head, meta.method);
    el("span", { class: "qrnn-note" }, head, ` test ${fmt(meta.test_bpc, 3)} BPC`);
    const bits = meta.weight_bits === 32 ? "float32 weights" : `${meta.weight_bits}-bit recurrent weights`;
    if (!compact) {
      const info = el("div", { class: "qrnn-note qrnn-live-info" }, c);
      const run = models_href ? el("a", { href: `${models_href}${meta.run_id}.npz` }, null, meta.run_id)
        : el("code", {}, null, meta.run_id);
      info.append("run ", run, `; ${bits}, ${fmt(meta.bits_per_weight, 2)} bits per weight over the `
        + `whole model; ${meta.packed_bytes.toLocaleString("en")} bytes packed, `
        + `${meta.fp32_bytes.toLocaleString("en")} as fp32 (${fmt(meta.fp32_bytes / meta.packed_bytes, 1)}x)`);
    } else {
      c.title = `${meta.run_id}: ${bits}, ${meta.packed_bytes.toLocaleString("en")} bytes packed`;
    }
    const bpc = el("div", { class: "qrnn-live-bpc" }, c);
    const bar = compact ? el("div", { class: "qrnn-live-bar", "aria-hidden": "true" }, c) : null;
    const strip = compact ? null : el("div", { class: "qrnn-live-strip", role: "img" }, c);
    const next = el("div", { class: "qrnn-live-next" }, c);
    const cont = compact ? null : el("div", { class: "qrnn-live-cont" }, c);
    const speed = compact ? null : el("div", { class: "qrnn-note qrnn-live-speed" }, c);
    let stripKey = "";
    return {
      update(run, items, sampled) {
        const n = run.ids.length, ready = run.done === n;
        let sum = 0;
        for (let j = 0; j < run.done; j++) sum += run.surprisal[j];
        const mean = run.done ? sum / run.done : NaN;
        bpc.textContent = run.done ? `this text: ${fmt(mean, 3)} BPC over ${run.done} characters`
          + (ready ? "" : ` (of ${n})`) : "this text: type something";
        bpc.dataset.bpc = run.done ? mean.toFixed(6) : "";
        if (bar) bar.style.width = `${Math.min(100, (run.done ? mean : 0) / 8 * 100)}%`;
        if (strip) {
          const key = `${run.done}|${items.length}|${items.map((x) => x.ch).join("")}`;
          if (key !== stripKey) { stripKey = key; drawStrip(strip, run, items); }
        }
        next.textContent = "";
        if (ready) {
          const p = softmax(run.logits), top = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 5);
          el("span", { class: "qrnn-note" }, next, "next: ");
          for (const v of top) {
            const s = el("span", { class: "qrnn-live-cand" }, next);
            el("code", {}, s, show(vocab[v]));
            s.append(` ${fmt(p[v], 3)}`);
          }
        }
        if (cont) {
          cont.textContent = "";
          if (ready && sampled && sampled.done()) {
            el("span", { class: "qrnn-note" }, cont, "continues: ");
            el("span", { class: "qrnn-live-sample" }, cont, text(sampled.s));
          }
        }
        if (speed && run.steps) speed.textContent = `${fmt(run.ms / run.steps, 2)} ms per character in this browser`;
      },
    };
  }

  function drawStrip(strip, run, items) {
    strip.textContent = "";
    let j = 0;
    const said = []; // for screen readers: the strip as one label, character and bits
    for (const x of items) {
      if (x.id < 0) {
        el("span", { class: "qrnn-live-oov", title: `${JSON.stringify(x.ch)}: not one of the symbols, skipped` },
          strip, x.ch === "\n" ? "\n" : x.ch);
        continue;
      }
      const s = j < run.done ? run.surprisal[j] : NaN;
      j++;
      const sp = el("span", {}, strip, x.ch === "\n" ? "\u23ce\n" : x.ch);
      if (isFinite(s)) {
        sp.style.background = rgba(SHADE, Math.min(1, s / SCALE_BITS) * 0.85);
        sp.title = `${JSON.stringify(x.sym)}: ${fmt(s, 2)} bits`;
        if (said.length < 200) said.push(`${show(x.sym)} ${fmt(s, 1)}`);
      }
    }
    strip.setAttribute("aria-label", `surprisal in bits per character: ${said.join(", ")}`);
  }

  function init() { document.querySelectorAll("div.qrnn-live").forEach(widget); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
