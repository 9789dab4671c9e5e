/* multitune dashboard charts: small vanilla SVG charts, no library.
 *
 * Every chart empties its container, draws into one <svg class="chart">, and marks the
 * container with data-state="ready" and data-count (points or lines drawn), so pages and tests
 * can tell when a chart is done. Colours are SVG presentation attributes (the pages' CSP allows
 * no inline styles); tooltips are <title> elements.
 */
"use strict";

const MT = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2",
                  "#edc948", "#ff9da7", "#9c755f", "#bab0ac"];

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function tip(node, text) {
    el("title", {}, node).textContent = text;
    return node;
  }

  function color(i) { return COLORS[((i % COLORS.length) + COLORS.length) % COLORS.length]; }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function extent(values) {
    const finite = values.filter((v) => typeof v === "number" && Number.isFinite(v));
    if (!finite.length) return [0, 1];
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (lo === hi) { const pad = Math.abs(lo) * 0.05 || 0.5; lo -= pad; hi += pad; }
    return [lo, hi];
  }

  /* A scale maps a domain value to pixels; .invert maps back. kind: linear | log | band. */
  function scale(kind, domain, range, levels) {
    const [r0, r1] = range;
    if (kind === "band") {
      const n = Math.max(levels.length, 1);
      const step = (r1 - r0) / n;
      const f = (v) => r0 + step * (levels.indexOf(v) + 0.5);
      f.invert = (p) => levels[Math.max(0, Math.min(n - 1, Math.floor((p - r0) / step)))];
      f.ticks = () => levels;
      return f;
    }
    const log = kind === "log" && domain[0] > 0;
    const t = log ? Math.log10 : (v) => v;
    const ti = log ? (v) => Math.pow(10, v) : (v) => v;
    const d0 = t(domain[0]), d1 = t(domain[1]);
    const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
    const f = (v) => r0 + (t(v) - d0) * k;
    f.invert = (p) => (k === 0 ? domain[0] : ti(d0 + (p - r0) / k));
    f.ticks = (n) => (log ? logTicks(domain) : niceTicks(domain[0], domain[1], n || 5));
    return f;
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || raw;
    const out = [];
    const first = Math.ceil(lo / step - 1e-9);
    for (let k = first; k * step <= hi + step * 1e-9; k++) {
      out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
    }
    return out;
  }

  function logTicks(domain) {
    const out = [];
    for (let e = Math.floor(Math.log10(domain[0])); e <= Math.ceil(Math.log10(domain[1])); e++) {
      const v = Math.pow(10, e);
      if (v >= domain[0] && v <= domain[1]) out.push(v);
    }
    return out.length ? out : [domain[0], domain[1]];
  }

  function frame(container, opts) {
    container.replaceChildren();
    const width = opts.width || Math.max(320, Math.min(container.clientWidth || 720, 1300) - 12);
    const height = opts.height || 320;
    const m = Object.assign({ top: 12, right: 18, bottom: 42, left: 62 }, opts.margin || {});
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart",
                            role: "img" }, container);
    if (opts.label) svg.setAttribute("aria-label", opts.label);
    return { svg, width, height, left: m.left, right: width - m.right, top: m.top,
             bottom: height - m.bottom };
  }

  function axes(f, x, y, xLabel, yLabel) {
    const g = el("g", { class: "axis" }, f.svg);
    for (const v of y.ticks(5)) {
      const py = y(v);
      el("line", { x1: f.left, x2: f.right, y1: py, y2: py, class: "grid-line" }, g);
      el("text", { x: f.left - 6, y: py + 4, "text-anchor": "end" }, g).textContent = fmt(v);
    }
    for (const v of x.ticks(6)) {
      const px = x(v);
      el("line", { x1: px, x2: px, y1: f.bottom, y2: f.bottom + 4 }, g);
      el("text", { x: px, y: f.bottom + 16, "text-anchor": "middle" }, g).textContent = fmt(v);
    }
    el("line", { x1: f.left, x2: f.right, y1: f.bottom, y2: f.bottom }, g);
    el("line", { x1: f.left, x2: f.left, y1: f.top, y2: f.bottom }, g);
    if (xLabel) {
      el("text", { x: (f.left + f.right) / 2, y: f.bottom + 34, "text-anchor": "middle",
                   class: "label" }, g).textContent = xLabel;
    }
    if (yLabel) {
      el("text", { x: -(f.top + f.bottom) / 2, y: 14, transform: "rotate(-90)",
                   "text-anchor": "middle", class: "label" }, g).textContent = yLabel;
    }
  }

  function legend(container, names, colorOf) {
    if (!names.length) return;
    const ul = document.createElement("ul");
    ul.className = "legend";
    names.forEach((name, i) => {
      const li = document.createElement("li");
      const swatch = el("svg", { width: 12, height: 12 }, li);
      el("rect", { width: 12, height: 12, rx: 2, fill: colorOf ? colorOf(name, i) : color(i) },
         swatch);
      li.appendChild(document.createTextNode(name));
      ul.appendChild(li);
    });
    container.appendChild(ul);
  }

  function done(container, count) {
    container.dataset.count = String(count);
    container.dataset.state = "ready";
  }

  function empty(container, message) {
    container.replaceChildren();
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = message;
    container.appendChild(p);
    done(container, 0);
  }

  /* Points (circles) and lines (polylines) on numeric or categorical axes.
   * opts: {points: [{x, y, group, title, cls}], lines: [{points: [[x, y]], cls, group, title}],
   *        groups: [names], xKind, yKind ("linear" | "log" | "band"), xLevels, xLabel, yLabel} */
  function scatter(container, opts) {
    const points = (opts.points || []).filter((p) => p.y !== null && p.y !== undefined);
    const lines = opts.lines || [];
    if (!points.length && !lines.some((l) => l.points.length)) {
      return empty(container, opts.emptyMessage || "No data yet.");
    }
    const f = frame(container, opts);
    const xs = points.map((p) => p.x).concat(...lines.map((l) => l.points.map((q) => q[0])));
    const ys = points.map((p) => p.y).concat(...lines.map((l) => l.points.map((q) => q[1])));
    const xKind = opts.xKind || "linear";
    const x = scale(xKind, extent(xs), [f.left + 6, f.right - 6], opts.xLevels || []);
    const y = scale(opts.yKind || "linear", extent(ys), [f.bottom - 6, f.top + 4]);
    axes(f, x, y, opts.xLabel, opts.yLabel);
    const groups = opts.groups || [];
    const colorOf = (g) => color(Math.max(0, groups.indexOf(g)));
    for (const line of lines) {
      if (!line.points.length) continue;
      const node = el("polyline", {
        points: line.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" "),
        class: line.cls || "series", stroke: line.color || (line.cls === "best" ? null : colorOf(line.group)),
      }, f.svg);
      if (line.title) tip(node, line.title);
    }
    const g = el("g", { class: "points" }, f.svg);
    for (const p of points) {
      let px = x(p.x);
      if (xKind === "band") px += ((p.jitter || 0) - 0.5) * 14;
      const node = el("circle", { cx: px.toFixed(1), cy: y(p.y).toFixed(1), r: opts.radius || 4,
                                  class: `pt ${p.cls || ""}`.trim(), fill: colorOf(p.group),
                                  "data-group": p.group }, g);
      if (p.title) tip(node, p.title);
    }
    if (opts.legend !== false) legend(container, groups.filter((n) => n !== null && n !== undefined));
    done(container, points.length);
    return f;
  }

  /* One polyline per series. opts: {series: [{label, points: [[x, y]], color}], xLabel, yLabel} */
  function lines(container, opts) {
    const series = (opts.series || []).filter((s) => s.points.length);
    if (!series.length) return empty(container, opts.emptyMessage || "No data yet.");
    const f = frame(container, opts);
    const xs = [].concat(...series.map((s) => s.points.map((p) => p[0])));
    const ys = [].concat(...series.map((s) => s.points.map((p) => p[1])));
    const x = scale("linear", extent(xs), [f.left + 4, f.right - 4]);
    const y = scale(opts.yKind || "linear", extent(ys), [f.bottom - 4, f.top + 4]);
    axes(f, x, y, opts.xLabel, opts.yLabel);
    series.forEach((s, i) => {
      const stroke = s.color || color(i);
      const node = el("polyline", {
        points: s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" "),
        class: s.cls || "series", stroke, "data-series": s.label,
      }, f.svg);
      tip(node, s.label);
      if (opts.markers) {
        for (const [a, b] of s.points) {
          tip(el("circle", { cx: x(a).toFixed(1), cy: y(b).toFixed(1), r: 2.5, class: "pt",
                             fill: stroke }, f.svg), `${s.label}: ${fmt(a)}, ${fmt(b)}`);
        }
      }
    });
    legend(container, series.map((s) => s.label), (_, i) => series[i].color || color(i));
    done(container, series.length);
    return f;
  }

  /* Horizontal grouped bars. opts: {rows: [{label, values: [v per series]}], series: [names]} */
  function bars(container, opts) {
    const rows = opts.rows || [];
    if (!rows.length) return empty(container, opts.emptyMessage || "No data yet.");
    const series = opts.series || [""];
    const band = 14 * series.length + 10;
    const f = frame(container, { height: rows.length * band + 50, margin: { left: 120, bottom: 30 },
                                 width: opts.width });
    const max = Math.max(...rows.map((r) => Math.max(...r.values.filter((v) => v !== null))), 1e-9);
    const x = scale("linear", [0, max], [f.left, f.right - 40]);
    let count = 0;
    rows.forEach((row, i) => {
      const top = f.top + i * band;
      el("text", { x: f.left - 8, y: top + band / 2 + 2, "text-anchor": "end" }, f.svg)
        .textContent = row.label;
      row.values.forEach((v, j) => {
        if (v === null || v === undefined) return;
        const bar = el("rect", { x: f.left, y: top + 4 + j * 14, height: 12,
                                 width: Math.max(1, x(v) - f.left).toFixed(1), class: "bar",
                                 fill: color(j), "data-label": row.label }, f.svg);
        tip(bar, `${row.label} (${series[j]}): ${(v * 100).toFixed(1)}%`);
        el("text", { x: x(v) + 4, y: top + 14 + j * 14, class: "label" }, f.svg)
          .textContent = `${(v * 100).toFixed(1)}%`;
        count += 1;
      });
    });
    if (series.length > 1) legend(container, series);
    done(container, count);
    return f;
  }

  /* Parallel coordinates with brushing.
   * opts: {dims: [{name, kind: "linear" | "log" | "band", levels}], rows: [{values, group, title}],
   *        groups, onSelect(count, total)}
   * Drag along an axis to keep the rows inside the brush; a click clears that axis's brush.
   * The svg carries data-selected; each brush rect carries data-dim, data-lo and data-hi. */
  function parallel(container, opts) {
    const { dims, rows } = opts;
    if (!rows.length) return empty(container, opts.emptyMessage || "No observations yet.");
    const f = frame(container, { height: 360, margin: { top: 26, bottom: 30, left: 40, right: 60 } });
    const step = dims.length > 1 ? (f.right - f.left) / (dims.length - 1) : 0;
    const scales = dims.map((d, i) => {
      const values = rows.map((r) => r.values[i]).filter((v) => v !== null && v !== undefined);
      const domain = d.kind === "band" ? null : extent(values);
      return scale(d.kind, domain, [f.bottom, f.top], d.levels || []);
    });
    const groups = opts.groups || [];
    const lineGroup = el("g", {}, f.svg);
    const nodes = rows.map((row) => {
      const pts = [];
      dims.forEach((d, i) => {
        const v = row.values[i];
        if (v !== null && v !== undefined) pts.push(`${(f.left + i * step).toFixed(1)},${scales[i](v).toFixed(1)}`);
      });
      const node = el("polyline", { points: pts.join(" "), class: "pc-line",
                                    stroke: color(Math.max(0, groups.indexOf(row.group))) },
                      lineGroup);
      if (row.title) tip(node, row.title);
      return node;
    });
    const filters = dims.map(() => null);
    const apply = () => {
      let selected = 0;
      rows.forEach((row, r) => {
        const keep = filters.every((flt, i) => !flt || flt(row.values[i]));
        nodes[r].classList.toggle("dim", !keep);
        if (keep) selected += 1;
      });
      f.svg.dataset.selected = String(selected);
      if (opts.onSelect) opts.onSelect(selected, rows.length);
    };
    dims.forEach((d, i) => {
      const px = f.left + i * step;
      const g = el("g", { class: "axis" }, f.svg);
      el("line", { x1: px, x2: px, y1: f.top, y2: f.bottom }, g);
      const ticks = d.kind === "band" ? d.levels : scales[i].ticks(4);
      for (const v of ticks) {
        el("text", { x: px + 5, y: scales[i](v) + 4, class: "label" }, g).textContent = fmt(v);
      }
      el("text", { x: px, y: f.top - 10, "text-anchor": "middle" }, g).textContent = d.name;
      const brush = el("rect", { x: px - 9, width: 18, y: f.top, height: 0, class: "brush",
                                 "data-dim": d.name }, f.svg);
      const area = el("rect", { x: px - 12, width: 24, y: f.top, height: f.bottom - f.top,
                                class: "brush-area", "data-dim": d.name }, f.svg);
      let start = null;
      const toY = (event) => {
        const box = f.svg.getBoundingClientRect();
        const k = f.height / box.height;
        return Math.max(f.top, Math.min(f.bottom, (event.clientY - box.top) * k));
      };
      area.addEventListener("pointerdown", (event) => {
        start = toY(event);
        area.setPointerCapture(event.pointerId);
        event.preventDefault();
      });
      area.addEventListener("pointermove", (event) => {
        if (start === null) return;
        const y = toY(event);
        brush.setAttribute("y", Math.min(start, y));
        brush.setAttribute("height", Math.abs(y - start));
      });
      area.addEventListener("pointerup", (event) => {
        if (start === null) return;
        const y = toY(event);
        const a = Math.min(start, y), b = Math.max(start, y);
        start = null;
        if (b - a < 3) {
          filters[i] = null;
          brush.setAttribute("height", 0);
          brush.removeAttribute("data-lo");
          brush.removeAttribute("data-hi");
        } else if (d.kind === "band") {
          filters[i] = (v) => v !== null && v !== undefined && scales[i](v) >= a && scales[i](v) <= b;
        } else {
          const lo = scales[i].invert(b), hi = scales[i].invert(a);
          brush.setAttribute("data-lo", lo);
          brush.setAttribute("data-hi", hi);
          filters[i] = (v) => v !== null && v !== undefined && v >= lo && v <= hi;
        }
        apply();
      });
    });
    legend(container, groups);
    apply();
    done(container, rows.length);
    return f;
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin",
                                        headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function badge(state) {
    const span = document.createElement("span");
    span.className = `badge state-${state}`;
    span.textContent = state;
    return span;
  }

  return { scatter, lines, bars, parallel, legend, empty, color, fmt, getJSON, cell, link, badge };
})();
