// app.js is the status page of a sekisho role. It polls api/status every
// two seconds and renders it with DOM methods only: data reaches the page
// through textContent and setAttribute, never through HTML parsing. When a
// poll fails, the last data stays on the page, marked stale.

import * as fmt from './format.js';
import { drawPlot } from './plot.js';

const POLL_MS = 2000;
const TIMEOUT_MS = 5000;
const DAY = 86400;
const WARN_SECONDS = 14 * DAY; // certificate rows turn amber
const CRIT_SECONDS = 3 * DAY; // and red

const state = { last: null, lastAt: null, timer: 0, renders: 0 };

const $ = (id) => document.getElementById(id);

// h builds an element; strings among kids become text nodes.
function h(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== '') n.setAttribute(k, String(v));
  }
  for (const k of kids.flat()) {
    if (k !== undefined && k !== null) n.append(k instanceof Node ? k : String(k));
  }
  return n;
}

const cell = (content, cls, title) => h('td', { class: cls, title }, content);
const num = (text, cls) => h('td', { class: cls ? `num ${cls}` : 'num' }, text);

function setText(id, text) {
  $(id).textContent = text;
}

// fillTable replaces the body of table id with rows, or with one row that
// says emptyText.
function fillTable(id, rows, emptyText) {
  const table = $(id);
  if (rows.length === 0) {
    const cols = table.tHead.rows[0].cells.length;
    rows = [h('tr', { class: 'empty' }, h('td', { colspan: cols }, emptyText))];
  }
  table.tBodies[0].replaceChildren(...rows);
}

function renderHeader(s, now) {
  setText('role', s.role || 'unknown role');
  setText('id', s.id || '');
  setText('version', s.version || '–');
  const started = fmt.parseTime(s.started);
  setText('uptime', started ? fmt.duration((now - started) / 1000) : '–');
  $('uptime').title = started ? `since ${fmt.date(started)}` : '';
  setText('refreshed', fmt.clock(state.lastAt));
  const ready = $('ready');
  ready.className = s.ready ? 'badge ok' : 'badge bad';
  ready.textContent = s.ready ? 'ready' : `not ready: ${s.not_ready || 'no reason given'}`;
  ready.title = ready.textContent;
  document.title = `${s.role || 'sekisho'} ${s.id || ''} · sekisho`;
  for (const el of document.querySelectorAll('.only-gateway')) el.hidden = s.role !== 'gateway';
  for (const el of document.querySelectorAll('.only-connector')) el.hidden = s.role !== 'connector';
}

function sessionsText(s) {
  if (s.role === 'gateway') {
    const tenants = s.tenants || [];
    const conns = tenants.reduce((n, t) => n + (t.connectors || []).length, 0);
    return `${plural(tenants.length, 'tenant')}, ${plural(conns, 'connector')}`;
  }
  const gws = s.gateways || [];
  const wanted = gws.reduce((n, g) => n + (g.wanted || 0), 0);
  return `of ${wanted} wanted, ${plural(gws.length, 'gateway')}`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function renderTiles(s) {
  const t = s.totals || {};
  const series = s.series || [];
  const last = series[series.length - 1];
  setText('agents-total', fmt.count(fmt.sum(t.agents)));
  setText('agents-by', fmt.byTransport(t.agents) || 'none connected');
  setText('sessions', fmt.count(t.sessions));
  setText('sessions-sub', sessionsText(s));
  setText('requests-rate', last ? fmt.rate(last.requests_per_second) : '–');
  setText('requests-total', fmt.count(t.requests));

  const l = s.latency || {};
  setText('latency-p50', l.count ? fmt.ms(l.p50_ms) : '–');
  setText('latency-p99', l.count ? fmt.ms(l.p99_ms) : '–');
  const win = fmt.duration(l.window_seconds);
  setText('latency-window', !l.window_seconds ? 'not measured'
    : l.count ? `last ${win}, ${fmt.count(l.count)} requests` : `no requests in the last ${win}`);

  setText('bytes-relayed', fmt.bytes(t.bytes_relayed));
  setText('bytes-redirected', fmt.bytes(t.bytes_redirected));
  const all = (t.bytes_relayed || 0) + (t.bytes_redirected || 0);
  setText('bytes-share', all ? `${fmt.percent(t.bytes_redirected || 0, all)} of it redirected` : 'no bytes yet');

  setText('errors-total', fmt.count(t.errors));
  const rate = last ? last.errors_per_second : 0;
  const share = fmt.percent(t.errors, t.requests);
  setText('errors-sub', `${last ? fmt.rate(rate) : '–'}/s now${share ? `, ${share} of requests` : ''}`);
  $('errors-tile').classList.toggle('alert', rate > 0);
}

function renderPlot(s) {
  const series = s.series || [];
  drawPlot($('plot'), series);
  const first = fmt.parseTime(series[0]?.t);
  const last = fmt.parseTime(series[series.length - 1]?.t);
  const every = s.series_interval_seconds ? `, a point every ${fmt.duration(s.series_interval_seconds)}` : '';
  setText('plot-span', first && last && last > first ? `last ${fmt.duration((last - first) / 1000)}${every}` : '');
}

function tenantRow(t, now) {
  const served = Boolean(t.served);
  const at = fmt.parseTime(t.snapshot_at);
  const snap = served ? `v${t.snapshot_version || 0}${at ? ` · ${fmt.ago(at, now)}` : ''}` : '–';
  const conns = (t.connectors || []).map((c) => {
    const since = fmt.parseTime(c.since);
    return h('span', { class: 'connector', title: since ? `connected since ${fmt.date(since)}` : '' },
      `${c.id} (${c.transport || '?'}) ×${c.sessions || 0}`);
  });
  return h('tr', { class: !served ? 'crit' : !t.sessions ? 'warn' : '' },
    cell(t.name, 'strong'),
    cell(served ? 'yes' : 'not served', served ? 'ok-text nowrap' : 'crit-text nowrap'),
    cell(snap, 'nowrap', t.snapshot_epoch ? `epoch ${t.snapshot_epoch}` : ''),
    num(fmt.count(t.services)),
    num(fmt.count(t.sessions)),
    cell(conns.length ? conns : h('span', { class: 'muted' }, 'none'), 'connectors'),
    cell(fmt.byTransport(t.agents) || '–', 'nowrap'),
    num(fmt.count(t.requests)),
    num(fmt.count(t.errors), t.errors > 0 ? 'bad-text' : ''));
}

function gatewayRow(g, now) {
  const up = fmt.parseTime(g.up_since);
  const sessions = g.sessions || 0;
  return h('tr', { class: sessions === 0 ? 'crit' : sessions < (g.wanted || 0) ? 'warn' : '' },
    cell(g.address, 'mono strong'),
    num(`${sessions}/${g.wanted || 0}`),
    cell(g.transport || '–'),
    cell(up ? `${fmt.clock(up)} (${fmt.duration((now - up) / 1000)})` : '–', '', up ? fmt.date(up) : ''),
    cell(g.last_error || '', 'bad-text'));
}

function serviceRow(v) {
  return h('tr', {},
    cell(v.name, 'strong'),
    cell(v.address, 'mono'),
    num(fmt.count(v.streams_active)),
    num(fmt.count(v.streams)),
    num(fmt.count(v.errors), v.errors > 0 ? 'bad-text' : ''));
}

const KINDS = { serving: 'serving', agent_ca: 'agent CA', connector_ca: 'connector CA' };

function certRow(c, now) {
  const notAfter = fmt.parseTime(c.not_after);
  let left = c.expires_in_seconds;
  if (typeof left !== 'number' && notAfter) left = (notAfter - now) / 1000;
  return h('tr', { class: left < CRIT_SECONDS ? 'crit' : left < WARN_SECONDS ? 'warn' : '' },
    cell(KINDS[c.kind] || c.kind),
    cell(c.tenant || '–'),
    cell(c.subject, 'mono'),
    cell(fmt.date(notAfter), '', notAfter ? notAfter.toISOString() : ''),
    num(fmt.expiresIn(left), 'strong'));
}

function eventRow(e, now) {
  const t = fmt.parseTime(e.time);
  const today = t && t.toDateString() === now.toDateString();
  return h('tr', {},
    cell(today ? fmt.clock(t) : fmt.date(t), 'mono', t ? fmt.ago(t, now) : ''),
    cell(e.kind, 'strong'),
    cell(e.reason),
    cell(e.tenant || '–'),
    cell(e.remote_addr || '–', 'mono'));
}

const byTimeDesc = (a, b) => (fmt.parseTime(b.time) || 0) - (fmt.parseTime(a.time) || 0);

function render(s) {
  const now = fmt.parseTime(s.now) || new Date();
  renderHeader(s, now);
  renderTiles(s);
  renderPlot(s);
  if (s.role === 'gateway') {
    fillTable('tenants', (s.tenants || []).map((t) => tenantRow(t, now)), 'no tenants configured');
  }
  if (s.role === 'connector') {
    setText('tenant', s.tenant || '–');
    fillTable('gateways', (s.gateways || []).map((g) => gatewayRow(g, now)), 'no gateways configured');
    fillTable('services', (s.services || []).map(serviceRow), 'no services configured');
  }
  const certs = [...(s.certificates || [])].sort((a, b) => a.expires_in_seconds - b.expires_in_seconds);
  fillTable('certs', certs.map((c) => certRow(c, now)), 'no certificates');
  const events = [...(s.events || [])].sort(byTimeDesc);
  fillTable('events', events.map((e) => eventRow(e, now)), 'nothing happened yet');
  document.body.dataset.state = 'ok';
  document.body.dataset.renders = String(++state.renders);
}

function showError(err) {
  const why = err.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message;
  const banner = $('error');
  banner.textContent = state.last
    ? `Cannot refresh the status (${why}). The data below is from ${fmt.clock(state.lastAt)} and is stale.`
    : `Cannot load the status (${why}).`;
  banner.hidden = false;
  document.body.classList.add('stale');
  document.body.dataset.state = state.last ? 'stale' : 'error';
}

function clearError() {
  $('error').hidden = true;
  document.body.classList.remove('stale');
}

async function load() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const r = await fetch('api/status', { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.json();
  } finally {
    clearTimeout(timer);
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(tick, POLL_MS);
}

// tick polls once. A failed poll shows the banner; a bug in render is
// left to throw, so that it shows in the console, and polling goes on.
async function tick() {
  let s;
  try {
    s = await load();
  } catch (err) {
    showError(err);
    schedule();
    return;
  }
  state.last = s;
  state.lastAt = new Date();
  schedule();
  clearError();
  render(s);
}

let resizing = 0;
window.addEventListener('resize', () => {
  cancelAnimationFrame(resizing);
  resizing = requestAnimationFrame(() => state.last && renderPlot(state.last));
});

tick();
