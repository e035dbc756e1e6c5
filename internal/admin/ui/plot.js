// plot.js draws the traffic series of /api/status as SVG: one panel of
// requests and errors per second, one of bytes relayed and redirected per
// second, over a shared time axis. Colours come from style.css classes.

import * as fmt from './format.js';

const NS = 'http://www.w3.org/2000/svg';
const LEFT = 72; // room for the y labels
const RIGHT = 16;
const HEAD = 26; // panel title and legend
const PANEL = 120; // height of the drawing area of a panel
const FOOT = 28; // time labels under the last panel
const GAP = 18; // between panels

const PANELS = [
  {
    title: 'requests / s',
    base: 1000,
    min: 1,
    label: fmt.rate,
    lines: [
      { key: 'requests_per_second', cls: 'req', name: 'requests', area: true },
      { key: 'errors_per_second', cls: 'err', name: 'errors' },
    ],
  },
  {
    title: 'bytes / s',
    base: 1024,
    min: 1024,
    label: fmt.bytes,
    lines: [
      { key: 'relayed_bytes_per_second', cls: 'rel', name: 'relayed', area: true },
      { key: 'redirected_bytes_per_second', cls: 'red', name: 'redirected' },
    ],
  },
];

function node(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten (of the
// largest power of 1024 under v, for bytes), so the grid labels read well.
function niceMax(v, base, min) {
  v = Math.max(v, min);
  let unit = 1;
  if (base === 1024) while (v / unit >= 1024) unit *= 1024;
  const w = v / unit;
  const e = 10 ** Math.floor(Math.log10(w));
  for (const m of [1, 2, 5, 10]) if (m * e >= w * 0.9999) return m * e * unit;
  return v;
}

// xScale places points by their time, or by their index when the times
// are missing or all equal.
function xScale(pts, x0, x1) {
  const ts = pts.map((p) => fmt.parseTime(p.t)?.getTime());
  const first = ts[0];
  const last = ts[ts.length - 1];
  if (pts.length < 2) return () => x1;
  if (ts.every(Number.isFinite) && last > first) {
    return (_, i) => x0 + ((ts[i] - first) / (last - first)) * (x1 - x0);
  }
  return (_, i) => x0 + (i / (pts.length - 1)) * (x1 - x0);
}

function legend(g, panel, pts, x, y) {
  const lastPt = pts[pts.length - 1];
  for (const l of panel.lines) {
    g.append(node('rect', { class: `swatch ${l.cls}`, x, y: y - 9, width: 10, height: 10, rx: 2 }));
    const value = lastPt ? ` ${panel.label(lastPt[l.key] || 0)}` : '';
    const t = node('text', { class: 'legend', x: x + 14, y }, l.name + value);
    g.append(t);
    x += 14 + t.getComputedTextLength() + 18;
  }
}

function grid(g, panel, max, y, x0, x1) {
  for (const v of [0, max / 2, max]) {
    const yy = y(v);
    g.append(node('line', { class: v === 0 ? 'axis' : 'grid', x1: x0, x2: x1, y1: yy, y2: yy }));
    g.append(node('text', { class: 'tick', x: x0 - 8, y: yy + 4, 'text-anchor': 'end' }, panel.label(v)));
  }
}

function lines(g, panel, pts, x, y, bottom) {
  for (const l of panel.lines) {
    const xy = pts.map((p, i) => [x(p, i), y(p[l.key] || 0)]);
    if (xy.length === 1) {
      g.append(node('circle', { class: `dot ${l.cls}`, cx: xy[0][0], cy: xy[0][1], r: 3 }));
      continue;
    }
    const d = xy.map(([a, b], i) => `${i ? 'L' : 'M'}${a.toFixed(1)} ${b.toFixed(1)}`).join(' ');
    if (l.area) {
      const close = ` L${xy[xy.length - 1][0].toFixed(1)} ${bottom} L${xy[0][0].toFixed(1)} ${bottom} Z`;
      g.append(node('path', { class: `area ${l.cls}`, d: d + close }));
    }
    g.append(node('path', { class: `line ${l.cls}`, d }));
    const [lx, ly] = xy[xy.length - 1];
    g.append(node('circle', { class: `dot ${l.cls}`, cx: lx, cy: ly, r: 2.5 }));
  }
}

function drawPanel(svg, panel, pts, top, x, x0, x1) {
  const g = node('g', { class: 'panel' });
  svg.append(g);
  const yTop = top + HEAD;
  const yBot = yTop + PANEL;
  const title = node('text', { class: 'ptitle', x: 0, y: top + 14 }, panel.title);
  g.append(title);
  legend(g, panel, pts, Math.max(x0, title.getComputedTextLength() + 24), top + 14);
  const peak = Math.max(0, ...pts.flatMap((p) => panel.lines.map((l) => p[l.key] || 0)));
  const max = niceMax(peak, panel.base, panel.min);
  const y = (v) => yBot - (Math.min(v, max) / max) * PANEL;
  grid(g, panel, max, y, x0, x1);
  if (pts.length === 0) {
    g.append(node('text', { class: 'empty', x: (x0 + x1) / 2, y: yTop + PANEL / 4 + 5, 'text-anchor': 'middle' }, 'no samples yet'));
    return;
  }
  lines(g, panel, pts, x, y, yBot);
}

function timeAxis(svg, pts, x, y0, x0, x1) {
  const g = node('g', { class: 'taxis' });
  svg.append(g);
  const idx = pts.length === 1 ? [0] : [0, Math.floor((pts.length - 1) / 2), pts.length - 1];
  for (const i of idx) {
    const xx = x(pts[i], i);
    const anchor = xx <= x0 + 1 ? 'start' : xx >= x1 - 1 ? 'end' : 'middle';
    g.append(node('line', { class: 'axis', x1: xx, x2: xx, y1: y0, y2: y0 + 5 }));
    g.append(node('text', { class: 'tick', x: xx, y: y0 + 18, 'text-anchor': anchor }, fmt.clock(fmt.parseTime(pts[i].t))));
  }
}

// drawPlot replaces the content of svg with a plot of series (oldest first),
// sized to the width the page gives the svg.
export function drawPlot(svg, series) {
  const pts = Array.isArray(series) ? series : [];
  const width = Math.max(360, Math.round(svg.getBoundingClientRect().width) || 720);
  const height = PANELS.length * (HEAD + PANEL) + (PANELS.length - 1) * GAP + FOOT;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('height', String(height));
  const x0 = LEFT;
  const x1 = width - RIGHT;
  const x = xScale(pts, x0, x1);
  let top = 0;
  for (const panel of PANELS) {
    drawPanel(svg, panel, pts, top, x, x0, x1);
    top += HEAD + PANEL + GAP;
  }
  if (pts.length > 0) timeAxis(svg, pts, x, top - GAP, x0, x1);
}
