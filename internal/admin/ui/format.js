// format.js turns the numbers and times of /api/status into short text.
// Every function accepts null or undefined and answers with a dash.

const DASH = '–';

function finite(n) {
  return typeof n === 'number' && Number.isFinite(n);
}

// scaled divides n by base until it fits, and appends the unit.
function scaled(n, base, units) {
  let i = 0;
  while (Math.abs(n) >= base && i < units.length - 1) {
    n /= base;
    i++;
  }
  const digits = i === 0 || Math.abs(n) >= 10 ? 0 : 1;
  const text = n.toFixed(digits).replace(/\.0$/, '');
  return units[i] ? `${text} ${units[i]}` : text;
}

// count is a whole number: exact up to 99999, then 123 k, 4.56 M.
export function count(n) {
  if (!finite(n)) return DASH;
  n = Math.round(n);
  if (Math.abs(n) < 100000) return String(n);
  return scaled(n, 1000, ['', 'k', 'M', 'G', 'T']);
}

// rate is a per-second figure, with decimals only when they matter.
export function rate(n) {
  if (!finite(n)) return DASH;
  if (n === 0) return '0';
  if (Math.abs(n) < 0.01) return '<0.01';
  if (Math.abs(n) < 10) return n.toFixed(2).replace(/\.?0+$/, '');
  if (Math.abs(n) < 1000) return n.toFixed(0);
  return scaled(n, 1000, ['', 'k', 'M', 'G']);
}

// bytes uses binary units: 512 B, 1.50 KiB, 23.4 MiB.
export function bytes(n) {
  if (!finite(n)) return DASH;
  return scaled(n, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']);
}

// ms is a latency in milliseconds.
export function ms(n) {
  if (!finite(n)) return DASH;
  if (n >= 1000) return `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)} s`;
  if (n >= 10) return `${n.toFixed(0)} ms`;
  return `${n.toFixed(n >= 1 ? 1 : 2)} ms`;
}

// duration is a span in seconds, in its two largest units: 3d 4h, 5m 02s.
export function duration(s) {
  if (!finite(s)) return DASH;
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(sec)}s`;
  return `${sec}s`;
}

// ago is a past moment relative to now, both Dates.
export function ago(t, now) {
  if (!t || !now) return DASH;
  return `${duration((now - t) / 1000)} ago`;
}

// expiresIn is the time left on a certificate, in seconds.
export function expiresIn(s) {
  if (!finite(s)) return DASH;
  return s <= 0 ? `expired ${duration(-s)} ago` : duration(s);
}

// percent of part in whole, or '' when whole is 0.
export function percent(part, whole) {
  if (!finite(part) || !finite(whole) || whole <= 0) return '';
  const p = (100 * part) / whole;
  return p > 0 && p < 1 ? '<1%' : `${Math.round(p)}%`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// parseTime reads an RFC 3339 time; Go's zero time and garbage give null.
export function parseTime(s) {
  if (!s) return null;
  const t = new Date(s);
  if (Number.isNaN(t.getTime()) || t.getUTCFullYear() < 1971) return null;
  return t;
}

// clock is the local wall-clock time of a Date: 14:03:07.
export function clock(t) {
  if (!t) return DASH;
  return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

// date is the local date and minute of a Date: 2026-05-14 14:03.
export function date(t) {
  if (!t) return DASH;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

// byTransport lists a map of counts: "quic 3 · tls 2", largest first.
export function byTransport(m) {
  const parts = Object.entries(m || {})
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, n]) => `${k} ${count(n)}`);
  return parts.join(' · ');
}

// sum adds the values of a map of counts.
export function sum(m) {
  return Object.values(m || {}).reduce((a, n) => a + (finite(n) ? n : 0), 0);
}
