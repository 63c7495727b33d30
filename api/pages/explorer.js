// The downtime explorer: /explorer[?line=&machine=&range=&start=&end=&category=&reason=&uncoded=1]
//
// Filters drive everything on the page (cards, Pareto, MTBF/MTTR, timeline, table) and
// live in the URL, so a link to "press 1, last night, uncoded" can be sent to a colleague.

import { api, askForKey, forgetKey } from './api.js';
import { drawPareto, drawTimeline } from './explorer-charts.js';
import { DowntimeTable } from './explorer-table.js';
import { el, humanDuration } from './format.js';

const form = document.getElementById('filters');
const UNCODED = 'uncoded'; // the reason filter's "no reason yet" (no reason code has this form)
const $ = (id) => document.getElementById(id);
const plant = { lines: [], machines: new Map(), reasons: [] }; // machine id -> {name, line}
let paretoSort = 'minutes';
let generation = 0; // answers to an older filter set are dropped

const table = new DowntimeTable({
  names: plant.machines,
  onCoded: async () => {
    await refresh();
    status('Reason saved.');
  },
  status,
});

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = `status${error ? ' error' : ''}`;
}

// --- filters ------------------------------------------------------------------------

function filters() {
  const f = Object.fromEntries(new FormData(form));
  if (!f.start || !f.end) throw new Error('Pick a start and an end time.');
  return {
    line: f.line || null,
    machine: f.machine || null,
    start: new Date(f.start).toISOString(),
    end: new Date(f.end).toISOString(),
    category: f.category,
    reason: f.reason && f.reason !== UNCODED ? f.reason : null,
    uncoded: f.reason === UNCODED,
  };
}

const localInput = (date) => {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

function setRange(range) {
  const end = new Date();
  let start;
  if (range === 'shift') {
    const line = plant.lines.find((l) => l.line === form.line.value) || plant.lines[0];
    start = line && line.shift_start ? new Date(line.shift_start) : new Date(end - 8 * 3600e3);
  } else {
    const hours = { '8h': 8, '24h': 24, '7d': 168 }[range] || 24;
    start = new Date(end - hours * 3600e3);
  }
  form.start.value = localInput(start);
  form.end.value = localInput(new Date(Math.ceil(end / 60000) * 60000));
  pressRange(range);
}

function pressRange(range) {
  for (const b of form.querySelectorAll('[data-range]')) {
    b.setAttribute('aria-pressed', String(b.dataset.range === range));
  }
}

function fillMachines() {
  const keep = form.machine.value;
  const options = [...plant.machines].filter(([, m]) => !form.line.value || m.line === form.line.value)
    .map(([id, m]) => el('option', { value: id, text: m.name }));
  form.machine.replaceChildren(el('option', { value: '', text: 'All machines' }), ...options);
  form.machine.value = options.some((o) => o.value === keep) ? keep : '';
}

function toUrl(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ line: f.line, machine: f.machine, start: f.start,
    end: f.end, category: f.category !== 'unplanned' ? f.category : null, reason: f.reason,
    uncoded: f.uncoded ? '1' : null })) if (v) q.set(k, v);
  history.replaceState(null, '', `?${q}`);
}

// --- loading ------------------------------------------------------------------------

async function refresh() {
  const mine = ++generation;
  let f;
  try {
    f = filters();
  } catch (err) {
    status(err.message, true);
    return;
  }
  toUrl(f);
  status('Loading…');
  const scope = { start: f.start, end: f.end, line: f.line, machine: f.machine };
  const category = f.category === 'all' ? null : f.category;
  try {
    const [pareto, reliability, longest] = await Promise.all([
      api('/api/v1/pareto', { params: { ...scope, category: f.category, sort: paretoSort } }),
      api('/api/v1/reliability', { params: scope }),
      api('/api/v1/downtime', { params: { ...scope, category, order: 'duration_desc', limit: 1 } }),
      table.load({ ...scope, category, reason: f.reason, uncoded_only: f.uncoded }),
    ]);
    if (mine !== generation) return;
    drawPareto($('pareto'), pareto, { reason: f.reason, uncoded: f.uncoded, onPick: pickReason });
    cards(pareto, longest.items[0]);
    reliabilityRows(reliability);
    await timelines(f, mine);
    if (mine === generation) status('');
  } catch (err) {
    if (mine === generation) status(err.message, true);
  }
}

async function timelines(f, mine) {
  const machines = [...plant.machines].filter(([id, m]) => (!f.line || m.line === f.line)
    && (!f.machine || id === f.machine)).slice(0, 24); // a readable chart has rows, not pixels
  const rows = await Promise.all(machines.map(([id, m]) => api(
    `/api/v1/lines/${m.line}/machines/${id}/timeline`, { params: { start: f.start, end: f.end } })
    .then((t) => ({ name: m.name, intervals: t.intervals }))));
  if (mine !== generation) return;
  $('timeline-box').style.height = `${Math.max(120, rows.length * 34 + 46)}px`;
  drawTimeline($('timeline'), rows, f.start, f.end, $('timeline-legend'));
}

function cards(pareto, longest) {
  $('sum-stops').textContent = String(pareto.total_count);
  $('sum-downtime').textContent = humanDuration(pareto.total_minutes * 60);
  const uncoded = pareto.reasons.find((r) => r.reason_code == null);
  $('sum-uncoded').textContent = String(uncoded ? uncoded.count : 0);
  $('sum-uncoded-card').classList.toggle('attention', Boolean(uncoded));
  $('sum-longest').textContent = longest ? humanDuration(longest.duration_s) : '–';
  $('sum-longest-what').textContent = longest
    ? `${plant.machines.get(longest.machine)?.name || longest.machine} · ${longest.reason_text || 'uncoded'}` : '';
}

function reliabilityRows(rows) {
  $('reliability').tBodies[0].replaceChildren(...rows.map((r) => el('tr', {},
    el('td', { text: plant.machines.get(r.machine)?.name || r.machine }),
    el('td', { class: 'r num', text: String(r.failures) }),
    el('td', { class: 'r num', text: humanDuration(r.failure_downtime_s) }),
    el('td', { class: 'r num', text: humanDuration(r.mtbf_s) }),
    el('td', { class: 'r num', text: humanDuration(r.mttr_s) }),
  )));
}

// A click on a Pareto bar filters by that reason (again: all reasons).
function pickReason(code) {
  const value = code == null ? UNCODED : code;
  form.reason.value = form.reason.value === value ? '' : value;
  refresh();
}

// --- start ----------------------------------------------------------------------------

async function start() {
  const [lines, reasons] = await Promise.all([api('/api/v1/lines'), api('/api/v1/reasons')]);
  plant.lines = await Promise.all(lines.map((l) => api(`/api/v1/lines/${l.line}`)));
  for (const line of plant.lines) {
    for (const m of line.machines) plant.machines.set(m.machine, { name: m.name, line: line.line });
  }
  plant.reasons = reasons;
  table.reasons = reasons;
  form.line.replaceChildren(el('option', { value: '', text: 'All lines' }),
    ...plant.lines.map((l) => el('option', { value: l.line, text: l.name })));
  form.reason.append(el('option', { value: UNCODED, text: 'Uncoded only' }),
    ...reasons.map((r) => el('option', { value: r.code, text: `${r.code} · ${r.text}` })));

  const q = new URLSearchParams(location.search);
  form.line.value = q.get('line') || (plant.lines.length === 1 ? plant.lines[0].line : '');
  fillMachines();
  form.machine.value = q.get('machine') || '';
  form.category.value = q.get('category') || 'unplanned';
  form.reason.value = q.get('uncoded') === '1' ? UNCODED : q.get('reason') || '';
  if (q.get('start') && q.get('end')) {
    form.start.value = localInput(new Date(q.get('start')));
    form.end.value = localInput(new Date(q.get('end')));
  } else {
    setRange(q.get('range') || '24h');
  }
  wire();
  await refresh();
}

function wire() {
  form.addEventListener('submit', (e) => e.preventDefault());
  form.addEventListener('change', (e) => {
    if (e.target === form.line) fillMachines();
    if (e.target === form.start || e.target === form.end) pressRange(null);
    refresh();
  });
  for (const b of form.querySelectorAll('[data-range]')) {
    b.addEventListener('click', () => { setRange(b.dataset.range); refresh(); });
  }
  for (const b of document.querySelectorAll('[data-sort]')) {
    b.addEventListener('click', () => {
      paretoSort = b.dataset.sort;
      for (const o of document.querySelectorAll('[data-sort]')) {
        o.setAttribute('aria-pressed', String(o === b));
      }
      refresh();
    });
  }
  $('sum-uncoded-card').addEventListener('click', () => pickReason(null));
  $('export').addEventListener('click', () => exportCsv().catch((err) => status(err.message, true)));
  $('change-key').addEventListener('click', async () => {
    forgetKey();
    await askForKey();
    refresh();
  });
}

// A plain link cannot carry the Authorization header, so the download goes through fetch.
async function exportCsv() {
  const f = filters();
  const response = await api('/api/v1/downtime/export', { raw: true, params: {
    format: 'csv', start: f.start, end: f.end, line: f.line, machine: f.machine,
    category: f.category === 'all' ? null : f.category, reason: f.reason, uncoded_only: f.uncoded,
  } });
  const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
  const link = el('a', { href: URL.createObjectURL(await response.blob()),
    download: name ? name[1] : 'downtime.csv' });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

start().catch((err) => status(err.message, true));
