// The page of `cairun serve`: three views over the JSON API (docs/serve.md).
// Plain DOM and SVG, no libraries, nothing from the network. Text from the
// runs is only ever set as textContent.
"use strict";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
const CURVE_ORDER = ["loss", "eval_loss", "nll_loss", "rewards/margins", "rewards/accuracies", "rewards/chosen",
  "rewards/rejected", "learning_rate", "lr", "grad_norm", "logps/chosen", "logps/rejected"];

let overview = null;

// el("div", { class: "x", onclick: f }, child, "text", ...)
function el(tag, attrs, ...children) {
  const svg = ["svg", "g", "path", "line", "text", "rect", "circle", "polyline"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  let body;
  try { body = await res.json(); } catch (e) { body = { error: "the server's answer was not JSON" }; }
  if (!res.ok) throw new Error(body.error || ("HTTP " + res.status));
  return body;
}

// view.replaceChildren over a list that may hold arrays and nulls
function put(view, ...children) {
  view.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function pct(x) { return x === undefined || x === null ? "–" : (100 * x).toFixed(1) + "%"; }
function num(x) {
  if (typeof x !== "number") return "–";
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : String(parseFloat(x.toPrecision(4)));
}
function status(text) { document.getElementById("status").textContent = text || ""; }
function showError(view, err) { view.appendChild(el("p", { class: "error" }, String(err.message || err))); }

// "#/compare?criterion=x" -> { view: "compare", params: URLSearchParams }
function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [view, query] = h.split("?");
  return { view: view || "compare", params: new URLSearchParams(query || "") };
}
function go(view, params) {
  const q = params ? params.toString() : "";
  location.hash = "#/" + view + (q ? "?" + q : "");
}

// ---------------------------------------------------------------------------
// Compare

async function renderCompare(view, params) {
  const ov = overview;
  const q = new URLSearchParams();
  for (const k of ["criterion", "principle", "disagree", "model", "result", "offset", "limit"]) {
    if (params.get(k)) q.set(k, params.get(k));
  }
  const data = await api("/api/items?" + q.toString());
  const set = (k, v) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v); else p.delete(k);
    p.delete("offset");
    if (k === "criterion" || k === "model") { if (!p.get("criterion") || !p.get("model")) p.delete("result"); }
    go("compare", p);
  };
  const select = (id, label, key, values, allLabel) => el("label", {}, label + " ",
    el("select", { id, onchange: (e) => set(key, e.target.value) },
      el("option", { value: "" }, allLabel),
      values.map((v) => el("option", { value: v, selected: params.get(key) === v }, v))));
  const filters = el("div", { class: "filters" },
    select("f-criterion", "criterion", "criterion", ov.criteria, "any"),
    ov.principles.length ? select("f-principle", "principle", "principle", ov.principles, "any") : null,
    select("f-model", "model", "model", ov.models, "any"),
    el("label", {}, "result ", el("select", { id: "f-result", onchange: (e) => set("result", e.target.value),
      disabled: !(params.get("criterion") && params.get("model")) },
      el("option", { value: "" }, "any"),
      ["fail", "pass"].map((v) => el("option", { value: v, selected: params.get("result") === v }, v)))),
    el("label", {}, el("input", { type: "checkbox", id: "f-disagree", checked: params.get("disagree") === "1",
      onchange: (e) => set("disagree", e.target.checked ? "1" : "") }), " models disagree"),
    el("span", { class: "meta", id: "item-count" }, data.total + " prompts"));

  // The metric table: each cell links to the samples behind it (that model failing that criterion).
  const head = el("tr", {}, el("th", {}, "criterion"), data.models.map((m) => el("th", {}, m)));
  const rows = data.criteria.map((c) => el("tr", {}, el("th", {}, c), data.models.map((m) => {
    const r = data.rates[m][c];
    if (!r || !r.n) return el("td", { class: "num" }, "–");
    const p = new URLSearchParams({ criterion: c, model: m, result: "fail" });
    return el("td", { class: "num", title: `${r.pass}/${r.n} pass; 95% Wilson ${pct(r.lo)}–${pct(r.hi)}; click: the failing samples` },
      el("a", { href: "#/compare?" + p.toString(), "data-metric": c + "|" + m }, pct(r.rate), el("span", { class: "meta" }, ` ${r.pass}/${r.n}`)));
  })));
  const metrics = el("table", { class: "metrics" }, el("thead", {}, head), el("tbody", {}, rows));

  const focus = params.get("criterion");
  const cards = data.items.map((item) => {
    const cols = el("div", { class: "cols" });
    cols.style.gridTemplateColumns = `repeat(${Math.max(1, item.answers.length)}, 1fr)`;
    for (const a of item.answers) {
      const chips = data.criteria.map((c) => {
        const v = a.checks[c];
        const cls = "chip " + (v === true ? "pass" : v === false ? "fail" : "na") + (c === focus ? " focus" : "");
        return el("span", { class: cls, title: c + ": " + (v === true ? "pass" : v === false ? "fail" : "not evaluated") },
          (v === true ? "✓ " : v === false ? "✗ " : "· ") + c);
      });
      cols.appendChild(el("div", { class: "answer", "data-model": a.model }, el("h3", {}, a.model), el("pre", {}, a.text),
        el("div", { class: "chips" }, chips)));
    }
    return el("div", { class: "card", "data-item": item.id },
      el("div", { class: "prompt" }, el("b", {}, "#" + item.id + " "),
        item.principle ? el("span", { class: "tag" }, item.principle) : null,
        item.kind ? el("span", { class: "tag" }, item.kind) : null,
        item.disagree.length ? el("span", { class: "tag warn", title: "the answers disagree on these criteria" },
          "disagree: " + item.disagree.join(", ")) : null,
        el("pre", {}, item.instruction),
        item.reference ? el("div", { class: "ref" }, el("b", {}, "reference "), item.reference) : null),
      cols);
  });
  const more = [];
  if (data.offset + data.items.length < data.total) {
    more.push(el("button", { id: "more", onclick: () => {
      const p = new URLSearchParams(params);
      p.set("offset", String(data.offset + data.limit));
      go("compare", p);
    } }, `next ${data.limit} of ${data.total}`));
  }
  if (data.offset > 0) {
    more.unshift(el("button", { onclick: () => {
      const p = new URLSearchParams(params);
      p.set("offset", String(Math.max(0, data.offset - data.limit)));
      go("compare", p);
    } }, "previous"));
  }
  const checksNote = ov.checks.computed > 0
    ? `Verdicts: ${ov.checks.recorded} recorded by the run, ${ov.checks.computed} computed here by cai.eval.check from the prompt and reference.`
    : "Verdicts as the run recorded them.";
  put(view, el("h2", {}, "Compare"), el("p", { class: "meta" }, checksNote + " Click a rate to see the samples that fail it."),
    metrics, filters, cards.length ? cards : el("p", { class: "meta" }, "No prompt matches these filters."), el("div", {}, more));
}

// ---------------------------------------------------------------------------
// Judge

let judgeState = null;  // { annotator, pair, busy }

function annotatorId(params) {
  const fromUrl = params.get("annotator");
  if (fromUrl) { localStorage.setItem("cai.annotator", fromUrl); return fromUrl; }
  return localStorage.getItem("cai.annotator") || "";
}

async function renderJudge(view, params) {
  const annotator = annotatorId(params);
  const idInput = el("input", { id: "annotator", value: annotator, placeholder: "your name or id", size: 18 });
  const start = () => {
    const v = idInput.value.trim();
    if (!v) return;
    const p = new URLSearchParams(params);
    p.set("annotator", v);
    localStorage.setItem("cai.annotator", v);
    go("judge", p);
  };
  idInput.addEventListener("keydown", (e) => { if (e.key === "Enter") start(); e.stopPropagation(); });
  const who = el("div", { class: "filters" }, el("label", { for: "annotator" }, "annotator "), idInput,
    el("button", { onclick: start }, "start"),
    el("span", { class: "meta" }, "Answers are shown as A and B in a random order; the models stay hidden until the results below."));
  const pane = el("div", { id: "judge-pane" });
  const results = el("div", { id: "results" });
  put(view, el("h2", {}, "Judge (blind A/B)"), who, pane, results);
  judgeState = null;
  if (annotator) await loadPair(pane, annotator);
  else pane.appendChild(el("p", { class: "meta" }, "Enter an annotator id to start (your judgments resume where you stopped)."));
  await renderResults(results);
}

async function loadPair(pane, annotator, next) {
  const data = next || await api("/api/judge/next?annotator=" + encodeURIComponent(annotator));
  const prog = el("p", { class: "progress", id: "judge-progress", "data-judged": data.progress.judged,
    "data-total": data.progress.total }, `${annotator}: ${data.progress.judged} of ${data.progress.total} pairs judged`);
  if (data.done) {
    judgeState = null;
    put(pane, prog, el("p", { id: "judge-done" }, "All pairs judged. Thank you."));
    return;
  }
  judgeState = { annotator, pair: data.pair, busy: false };
  const note = el("textarea", { id: "note", placeholder: "optional note (n to focus, Esc to leave)" });
  note.addEventListener("keydown", (e) => { if (e.key === "Escape") note.blur(); e.stopPropagation(); });
  const button = (choice, key, label) => el("button", { "data-choice": choice, onclick: () => submit(choice) },
    el("kbd", {}, key), label);
  put(pane, prog,
    el("div", { class: "card judge", id: "pair", "data-pair": data.pair },
      el("div", { class: "prompt" }, el("b", {}, "Prompt"), el("pre", { id: "pair-prompt" }, data.instruction),
        data.reference ? el("div", { class: "ref" }, el("b", {}, "reference "), data.reference) : null),
      el("div", { class: "cols" },
        el("div", { class: "side" }, el("h3", {}, "A"), el("pre", { id: "answer-a" }, data.a)),
        el("div", { class: "side" }, el("h3", {}, "B"), el("pre", { id: "answer-b" }, data.b))),
      el("div", { class: "keys" }, button("A", "a", "A is better"), button("B", "b", "B is better"),
        button("tie", "t", "tie"), button("both_bad", "x", "both bad")),
      note));
}

async function submit(choice) {
  if (!judgeState || judgeState.busy) return;
  judgeState.busy = true;
  const pane = document.getElementById("judge-pane");
  const note = document.getElementById("note");
  document.querySelectorAll("[data-choice]").forEach((b) => { b.disabled = true; });
  try {
    const res = await api("/api/judge", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ annotator: judgeState.annotator, pair: judgeState.pair, choice, note: note ? note.value : "" }) });
    status("saved");
    await loadPair(pane, judgeState.annotator, res.next);
    await renderResults(document.getElementById("results"));
  } catch (err) {
    judgeState.busy = false;
    document.querySelectorAll("[data-choice]").forEach((b) => { b.disabled = false; });
    showError(pane, err);
  }
}

document.addEventListener("keydown", (e) => {
  if (route().view !== "judge" || !judgeState || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  const choice = { a: "A", b: "B", t: "tie", x: "both_bad", "1": "A", "2": "B", "3": "tie", "4": "both_bad" }[k];
  if (choice) { e.preventDefault(); submit(choice); }
  else if (k === "n") { e.preventDefault(); const n = document.getElementById("note"); if (n) n.focus(); }
});

async function renderResults(box) {
  let r;
  try { r = await api("/api/judge/results"); } catch (err) { box.replaceChildren(); showError(box, err); return; }
  // Closed by default, so that a judge is not swayed by the standings while judging.
  const details = el("details", { id: "results-box", open: localStorage.getItem("cai.results.open") === "1",
    ontoggle: (e) => localStorage.setItem("cai.results.open", e.target.open ? "1" : "0") },
  el("summary", {}, el("h2", {}, `Results (${r.judgments} judgments)`)));
  const parts = [
    el("p", { class: "meta" }, `${r.judgments} judgments (the latest per annotator and pair) in ${r.file}` +
      (r.unreadable ? `; ${r.unreadable} unreadable lines skipped` : ""))];
  if (r.pairs.length) {
    parts.push(el("table", { id: "winrates" },
      el("thead", {}, el("tr", {}, ["model A", "model B", "A wins", "B wins", "ties", "both bad", "win rate of A (decisive)", "95% Wilson"].map((h) => el("th", {}, h)))),
      el("tbody", {}, r.pairs.map((s) => el("tr", { "data-a": s.a, "data-b": s.b },
        el("td", {}, s.a), el("td", {}, s.b), el("td", { class: "num" }, s.wins_a), el("td", { class: "num" }, s.wins_b),
        el("td", { class: "num" }, s.ties), el("td", { class: "num" }, s.both_bad),
        el("td", { class: "num win-rate", "data-value": s.win_rate === undefined ? "" : s.win_rate }, pct(s.win_rate)),
        el("td", { class: "num" }, s.win_rate === undefined ? "–" : `${pct(s.lo)}–${pct(s.hi)}`))))));
    parts.push(el("p", { class: "meta" }, "Win rate: A's wins over the decisive judgments (ties and both-bad left out), with a 95% Wilson interval."));
  } else {
    parts.push(el("p", { class: "meta" }, "No judgments yet."));
  }
  if (r.bradley_terry) {
    const s = r.bradley_terry.strengths;
    const names = Object.keys(s).sort((a, b) => s[b] - s[a]);
    parts.push(el("h3", {}, "Bradley–Terry strengths"), el("table", { id: "bradley-terry" },
      el("tbody", {}, names.map((m) => el("tr", {}, el("td", {}, m), el("td", { class: "num" }, s[m].toFixed(3)))))),
      el("p", { class: "meta" }, r.bradley_terry.method + "; P(i beats j) = s_i / (s_i + s_j)."));
  }
  if (r.agreement.length) {
    parts.push(el("h3", {}, "Agreement between annotators (Cohen's κ)"), el("table", { id: "kappa" },
      el("thead", {}, el("tr", {}, ["annotator", "annotator", "pairs both judged", "agreement", "κ"].map((h) => el("th", {}, h)))),
      el("tbody", {}, r.agreement.map((k) => el("tr", {}, el("td", {}, k.a), el("td", {}, k.b), el("td", { class: "num" }, k.n),
        el("td", { class: "num" }, pct(k.observed)), el("td", { class: "num" }, num(k.kappa)))))));
  }
  if (r.annotators.length) {
    parts.push(el("p", { class: "meta" }, "Annotators: " + r.annotators.map((a) => `${a.annotator} ${a.judged}/${a.total}`).join(", ")));
  }
  for (const p of parts) details.appendChild(p);
  put(box, details);
}

// ---------------------------------------------------------------------------
// Runs: overlaid curves with smoothing, hover values and drag-to-zoom; settings diffed

function smooth(points, weight) {
  // exponential moving average, debiased as TensorBoard does
  if (!weight) return points;
  let last = 0, n = 0;
  return points.map(([x, y]) => {
    last = last * weight + (1 - weight) * y;
    n += 1;
    return [x, last / (1 - Math.pow(weight, n))];
  });
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; }
  const step0 = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function drawChart(key, series, colourOf, weight, zoom, onZoom) {
  const W = 460, H = 250, L = 58, R = 12, T = 24, B = 30;
  const lines = series.map((s) => ({ s, pts: smooth(s.points, weight) }));
  let x0 = Infinity, x1 = -Infinity;
  for (const { pts } of lines) for (const [x] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); }
  if (zoom) { x0 = zoom[0]; x1 = zoom[1]; }
  if (x1 <= x0) { x1 = x0 + 1; }
  let y0 = Infinity, y1 = -Infinity;
  for (const { s, pts } of lines) {
    for (const [x, y] of s.points.concat(pts)) if (x >= x0 && x <= x1) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  if (!isFinite(y0)) { y0 = 0; y1 = 1; }
  if (y1 <= y0) { y1 = y0 + Math.abs(y0) * 0.1 + 1e-9; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, "data-key": key });
  svg.appendChild(el("text", { x: L, y: 15, class: "ctitle" }, key + (weight ? ` (smoothed ${weight})` : "")));
  for (const t of niceTicks(y0, y1, 5)) {
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: "grid" }));
    svg.appendChild(el("text", { x: L - 4, y: sy(t) + 3, "text-anchor": "end", class: "tick" }, num(t)));
  }
  for (const t of niceTicks(x0, x1, 6)) {
    svg.appendChild(el("text", { x: sx(t), y: H - B + 14, "text-anchor": "middle", class: "tick" }, num(t)));
  }
  svg.appendChild(el("text", { x: W - R, y: H - 3, "text-anchor": "end", class: "tick" }, "step"));
  svg.appendChild(el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.appendChild(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  const clip = (pts) => pts.filter(([x]) => x >= x0 && x <= x1);
  const path = (pts) => pts.map(([x, y], i) => (i ? "L" : "M") + sx(x).toFixed(1) + " " + sy(y).toFixed(1)).join(" ");
  for (const { s, pts } of lines) {
    const colour = colourOf(s);
    if (weight) svg.appendChild(el("path", { d: path(clip(s.points)), class: "raw", stroke: colour }));
    const p = clip(pts);
    svg.appendChild(el("path", { d: path(p), class: "line", stroke: colour, "data-series": s.label }));
    if (p.length === 1) svg.appendChild(el("circle", { cx: sx(p[0][0]), cy: sy(p[0][1]), r: 3, fill: colour }));
  }
  const hover = el("line", { y1: T, y2: H - B, class: "hover", visibility: "hidden" });
  const box = el("rect", { y: T, height: H - T - B, class: "zoombox", visibility: "hidden" });
  svg.appendChild(hover); svg.appendChild(box);
  const wrap = el("div", { class: "chart" }, svg);
  const tip = el("div", { class: "tip" });
  wrap.appendChild(tip);
  const toX = (ev) => {
    const r = svg.getBoundingClientRect();
    const px = (ev.clientX - r.left) / r.width * W;
    return x0 + (px - L) / (W - L - R) * (x1 - x0);
  };
  let dragFrom = null;
  svg.addEventListener("mousemove", (ev) => {
    const x = toX(ev);
    if (x < x0 || x > x1) { hover.setAttribute("visibility", "hidden"); tip.style.display = "none"; return; }
    hover.setAttribute("x1", sx(x)); hover.setAttribute("x2", sx(x)); hover.setAttribute("visibility", "visible");
    const rows = [];
    for (const { s, pts } of lines) {
      let best = null;
      for (const p of pts) if (!best || Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
      if (best) rows.push(el("div", {}, el("b", {}, s.label), ` step ${num(best[0])}: ${num(best[1])}`));
    }
    tip.replaceChildren(...rows);
    tip.style.display = "block";
    const r = svg.getBoundingClientRect();
    tip.style.left = Math.min(ev.clientX - r.left + 12, r.width - 160) + "px";
    tip.style.top = (ev.clientY - r.top + 12) + "px";
    if (dragFrom !== null) {
      box.setAttribute("x", Math.min(sx(dragFrom), sx(x))); box.setAttribute("width", Math.abs(sx(x) - sx(dragFrom)));
      box.setAttribute("visibility", "visible");
    }
  });
  svg.addEventListener("mouseleave", () => { hover.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
  svg.addEventListener("mousedown", (ev) => { dragFrom = toX(ev); ev.preventDefault(); });
  svg.addEventListener("mouseup", (ev) => {
    const to = toX(ev);
    box.setAttribute("visibility", "hidden");
    if (dragFrom !== null && Math.abs(sx(to) - sx(dragFrom)) > 6) onZoom([Math.min(dragFrom, to), Math.max(dragFrom, to)]);
    dragFrom = null;
  });
  svg.addEventListener("dblclick", () => onZoom(null));
  return wrap;
}

async function renderRuns(view, params) {
  const [curves, settings] = await Promise.all([api("/api/curves"), api("/api/settings")]);
  const weight = Math.min(0.99, Math.max(0, parseFloat(params.get("smoothing") || "0") || 0));
  const zooms = {};
  const runNames = overview.runs.map((r) => r.name);
  const labels = [];
  for (const s of curves.series) {
    s.label = (curves.runs > 1 ? s.run : "") + (s.stage ? (curves.runs > 1 ? " · " : "") + s.stage : "") || s.run;
    if (!labels.includes(s.label)) labels.push(s.label);
  }
  const colourOf = (s) => COLOURS[labels.indexOf(s.label) % COLOURS.length];
  const byKey = {};
  for (const s of curves.series) (byKey[s.key] = byKey[s.key] || []).push(s);
  const keys = Object.keys(byKey).sort((a, b) => {
    const ia = CURVE_ORDER.indexOf(a), ib = CURVE_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  const grid = el("div", { class: "charts", id: "charts" });
  const draw = () => {
    grid.replaceChildren(...keys.map((k) => drawChart(k, byKey[k], colourOf, weight, zooms[k], (z) => {
      zooms[k] = z; draw();
    })));
  };
  draw();
  const slider = el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: weight, id: "smoothing",
    oninput: (e) => { label.textContent = e.target.value; },
    onchange: (e) => { const p = new URLSearchParams(params); p.set("smoothing", e.target.value); go("runs", p); } });
  const label = el("span", {}, String(weight));
  const legend = el("div", { class: "legend" }, labels.map((l) => {
    const i = el("i", {});
    i.style.background = COLOURS[labels.indexOf(l) % COLOURS.length];
    return el("span", {}, i, l);
  }));

  const onlyDiff = params.get("all") !== "1";
  const rows = settings.settings.filter((s) => s.differs || !onlyDiff || settings.runs.length === 1);
  const table = el("table", { id: "settings" },
    el("thead", {}, el("tr", {}, el("th", {}, "setting"), settings.runs.map((r) => el("th", {}, r)))),
    el("tbody", {}, rows.map((s) => el("tr", { class: s.differs ? "differs" : "" }, el("th", {}, s.key),
      s.values.map((v) => el("td", {}, v === null ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v)))))));
  const toggle = el("label", {}, el("input", { type: "checkbox", checked: !onlyDiff, onchange: (e) => {
    const p = new URLSearchParams(params); if (e.target.checked) p.set("all", "1"); else p.delete("all"); go("runs", p);
  } }), " show settings that are the same in every run");
  put(view, el("h2", {}, "Runs: " + runNames.join(", ")),
    el("div", { class: "filters" }, el("label", { for: "smoothing" }, "smoothing "), slider, label,
      el("span", { class: "meta" }, "Hover for values; drag across a chart to zoom, double-click to reset.")),
    legend, keys.length ? grid : el("p", { class: "meta" }, "No run has a metrics.jsonl."),
    el("h2", {}, "Settings"), settings.runs.length > 1 ? toggle : null,
    rows.length ? table : el("p", { class: "meta" }, settings.runs.length > 1 ? "Every setting is the same in every run." : "No config.json."));
}

// ---------------------------------------------------------------------------

async function render() {
  const { view, params } = route();
  for (const v of ["compare", "judge", "runs"]) {
    document.getElementById("tab-" + v).classList.toggle("active", v === view);
  }
  const main = document.getElementById("view");
  try {
    if (!overview) {
      overview = await api("/api/overview");
      document.getElementById("runs-line").textContent =
        `${overview.runs.map((r) => r.name).concat(overview.prompts ? [overview.prompts] : []).join(", ")} — ${overview.items} prompts, models: ${overview.models.join(", ")}`;
    }
    if (view === "judge") await renderJudge(main, params);
    else if (view === "runs") await renderRuns(main, params);
    else await renderCompare(main, params);
    document.body.setAttribute("data-ready", view);
  } catch (err) {
    main.replaceChildren();
    showError(main, err);
    document.body.setAttribute("data-ready", "error");
  }
}

window.addEventListener("hashchange", () => { document.body.removeAttribute("data-ready"); render(); });
render();
