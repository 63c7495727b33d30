// The explorer's two charts, drawn with the vendored Chart.js (a classic script that sets
// window.Chart): the Pareto of stop reasons and the machines' state timeline (Gantt).
//
// Each canvas also carries what it shows as data-* attributes and an aria-label, for
// screen readers and for the browser tests (a canvas has no DOM to look into).

import { STATE_ORDER, dateTime, el, humanDuration, stateLabel } from './format.js';

const { Chart } = window;
const css = getComputedStyle(document.documentElement);
const colour = (name) => css.getPropertyValue(`--${name}`).trim();
const TONE = { planned_stop: 'planned' };
const LEGEND = { idle: 'Starved / blocked' };
const charts = new Map(); // canvas -> Chart

Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.font.size = 13;
Chart.defaults.color = '#3d4650';
Chart.defaults.animation = false; // figures, not a show: redraw at once on every filter

function replace(canvas, config) {
  charts.get(canvas)?.destroy();
  charts.set(canvas, new Chart(canvas, config));
  canvas.dataset.ready = '';
}

export function drawPareto(canvas, pareto, { reason, uncoded, onPick }) {
  const rows = pareto.reasons;
  const byCount = pareto.sort === 'count';
  const picked = (r) => (uncoded && r.reason_code == null) || (reason && r.reason_code === reason);
  const anyPicked = rows.some(picked);
  const fill = (r) => {
    const base = r.reason_code == null ? colour('idle') : '#3a6ea5';
    return anyPicked && !picked(r) ? `${base}40` : base; // the others fade behind the pick
  };
  const labels = rows.map((r) => (r.reason_code == null ? 'Uncoded' : r.reason_text || r.reason_code));
  const wrapped = labels.map((l) => (l.length > 10 && l.includes(' ') ? l.split(' ') : l));
  canvas.dataset.reasons = rows.map((r) => r.reason_code ?? 'uncoded').join(',');
  canvas.dataset.values = rows.map((r) => (byCount ? r.count : r.minutes)).join(',');
  canvas.dataset.picked = rows.filter(picked).map((r) => r.reason_code ?? 'uncoded').join(',');
  canvas.setAttribute('aria-label', `Stop reasons by ${pareto.sort}: ${rows.slice(0, 5)
    .map((r, i) => `${labels[i]} ${byCount ? `${r.count} stops` : `${Math.round(r.minutes)} min`}`)
    .join(', ') || 'none'}`);
  replace(canvas, {
    data: {
      labels: wrapped,
      datasets: [
        { type: 'bar', label: byCount ? 'Stops' : 'Minutes', data: rows.map((r) => (byCount ? r.count : r.minutes)),
          backgroundColor: rows.map(fill), borderRadius: 3, yAxisID: 'y', order: 2 },
        { type: 'line', label: 'Cumulative %', data: rows.map((r) => r.cumulative_share * 100),
          borderColor: '#1d232a', backgroundColor: '#1d232a', pointRadius: 3, borderWidth: 2,
          yAxisID: 'share', order: 1 },
      ],
    },
    options: {
      maintainAspectRatio: false,
      onClick: (_event, items) => items.length && onPick(rows[items[0].index].reason_code),
      onHover: (event, items) => { event.native.target.style.cursor = items.length ? 'pointer' : ''; },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: false } },
        y: { beginAtZero: true, title: { display: true, text: byCount ? 'stops' : 'minutes' } },
        share: { position: 'right', min: 0, max: 100, grid: { display: false },
          ticks: { callback: (v) => `${v}%`, stepSize: 20 } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: {
          title: (items) => labels[items[0].dataIndex],
          label: (ctx) => paretoTip(rows[ctx.dataIndex], ctx.dataset.type) } },
      },
    },
  });
}

function paretoTip(r, type) {
  if (type === 'line') return `cumulative ${Math.round(r.cumulative_share * 100)}%`;
  return `${humanDuration(r.minutes * 60)} · ${r.count} stop${r.count === 1 ? '' : 's'} · ${Math.round(r.share * 100)}%`;
}

// rows: [{name, intervals: [{state, start, end, duration_s, reason_code, reason_text}]}]
export function drawTimeline(canvas, rows, start, end, legend) {
  const from = Date.parse(start);
  const to = Date.parse(end);
  const present = new Set(rows.flatMap((r) => r.intervals.map((i) => i.state)));
  const datasets = STATE_ORDER.filter((s) => present.has(s)).map((state) => ({
    label: LEGEND[state] || stateLabel(state),
    backgroundColor: colour(TONE[state] || state),
    data: rows.flatMap((r) => r.intervals.filter((i) => i.state === state).map((i) => ({
      x: [Date.parse(i.start), Date.parse(i.end)], y: r.name, interval: i }))),
  }));
  canvas.dataset.machines = rows.map((r) => r.name).join(',');
  canvas.dataset.intervals = String(rows.reduce((n, r) => n + r.intervals.length, 0));
  legend.replaceChildren(...STATE_ORDER.filter((s) => present.has(s)).map((s) => el('li', {
    class: `tone-${TONE[s] || s}` }, el('span', { class: 'swatch' }), LEGEND[s] || stateLabel(s))));
  const ticks = timeTicks(from, to);
  replace(canvas, {
    type: 'bar',
    data: { labels: rows.map((r) => r.name), datasets },
    options: {
      indexAxis: 'y',
      maintainAspectRatio: false,
      datasets: { bar: { grouped: false, barPercentage: 0.78, categoryPercentage: 1 } },
      scales: {
        x: { type: 'linear', min: from, max: to,
          // Chart.js would pick "nice" numbers of milliseconds (22:31, 23:03): set the
          // ticks on whole local minutes and hours instead.
          afterBuildTicks: (axis) => { axis.ticks = ticks.map((value) => ({ value })); },
          ticks: { maxRotation: 0, callback: (v) => tickLabel(v, to - from) } },
        y: { grid: { display: false } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { title: (items) => items[0]?.raw.y, label: timelineTip } },
      },
    },
  });
}

function timelineTip(ctx) {
  const i = ctx.raw.interval;
  const why = i.reason_text ? ` (${i.reason_code ? `${i.reason_code} · ` : ''}${i.reason_text})` : '';
  return `${stateLabel(i.state, i.reason_text)}${why}: ${dateTime(i.start)} for ${humanDuration(i.duration_s)}`;
}

// About ten ticks whatever the window, on round local times: 5 minutes up to a week.
function timeTicks(from, to) {
  const minutes = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];
  const step = (minutes.find((m) => (to - from) / (m * 60000) <= 12) || 10080) * 60000;
  const t = new Date(from);
  t.setHours(0, 0, 0, 0); // local midnight, so steps land on 06:00, not 05:37
  let tick = t.getTime();
  while (tick < from) tick += step;
  const ticks = [];
  for (; tick <= to; tick += step) ticks.push(tick);
  return ticks;
}

function tickLabel(ms, spanMs) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return spanMs > 36 * 3600e3 ? `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}` : time;
}
