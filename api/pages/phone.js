// The supervisor's phone: /phone. Active alerts first, each with one big Acknowledge
// button (a supervisor key), then every line the key sees with its machines and OEE.
//
// It polls instead of holding WebSockets: phones sleep, switch networks and freeze
// background tabs, and a poll on wake-up is the simplest thing that is always right.

import { ApiError, api, askForKey, forgetKey } from './api.js';
import { clockDuration, el, oeeTone, percent, stateLabel, stateTone } from './format.js';

const POLL_MS = 5000;
const STALE_MS = 15000;
const $ = (id) => document.getElementById(id);
const SEVERITY = { critical: 0, warning: 1, info: 2 };

let lastOk = null; // Date.now() of the last complete refresh
let skewMs = 0; // the server's clock minus the phone's: "for 12 min" is the server's view
let lines = [];
let alerts = [];
const ackErrors = new Map(); // fingerprint -> why the acknowledgement was refused

let inFlight = false;

async function refresh() {
  if (inFlight) return; // a slow network must not stack polls up
  inFlight = true;
  try {
    const summary = await api('/api/v1/lines');
    [lines, alerts] = await Promise.all([
      Promise.all(summary.map((l) => api(`/api/v1/lines/${encodeURIComponent(l.line)}`))),
      api('/api/v1/alerts', { params: { status: 'active' } }),
    ]);
    lastOk = Date.now();
    if (lines.length) skewMs = Date.parse(lines[0].at) - lastOk;
    $('error').hidden = true;
    render();
  } catch (err) {
    $('error').hidden = false;
    $('error').textContent = err instanceof ApiError ? err.message : 'No connection to linemon.';
  } finally {
    inFlight = false;
  }
  freshness();
}

function render() {
  const names = new Map(lines.flatMap((l) => l.machines.map((m) => [m.machine, m.name])));
  const lineNames = new Map(lines.map((l) => [l.line, l.name]));
  const sorted = [...alerts].sort((a, b) => (a.state === 'firing' ? 0 : 1) - (b.state === 'firing' ? 0 : 1)
    || SEVERITY[a.severity] - SEVERITY[b.severity]
    || Date.parse(a.fired_at || a.first_seen) - Date.parse(b.fired_at || b.first_seen));
  $('alert-count').textContent = sorted.length ? String(sorted.length) : '';
  $('alerts').replaceChildren(...(sorted.length ? sorted.map((a) => alertCard(a, names, lineNames))
    : [el('p', { class: 'all-clear', text: '✓ No active alerts' })]));
  $('lines').replaceChildren(...lines.map(lineCard));
}

function alertCard(alert, names, lineNames) {
  const machine = names.get(alert.machine) || alert.machine;
  const message = alert.machine && alert.message.startsWith(`${alert.machine} `)
    ? alert.message.slice(alert.machine.length + 1) : alert.message;
  const since = (Date.now() + skewMs - Date.parse(alert.fired_at || alert.first_seen)) / 1000;
  const acked = alert.acknowledged_by;
  const footer = acked
    ? el('p', { class: 'acked', text: `✓ Acknowledged by ${acked} at ${new Date(alert.acknowledged_at)
      .toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}` })
    : alert.state === 'firing'
      ? el('button', { class: 'ack', type: 'button', text: 'Acknowledge',
        onclick: (e) => acknowledge(alert, e.currentTarget) })
      : el('p', { class: 'pending', text: 'Pending: not confirmed yet' });
  return el('article', { class: `alert-card severity-${alert.severity}${acked ? ' is-acked' : ''}`,
    'data-fingerprint': alert.fingerprint },
  el('div', { class: 'alert-top' },
    el('span', { class: 'severity', text: alert.severity }),
    el('span', { class: 'alert-line', text: lineNames.get(alert.line) || alert.line || '' }),
    el('span', { class: 'alert-since num', text: clockDuration(since) })),
  el('h2', { class: 'alert-machine', text: machine || alert.rule_id }),
  el('p', { class: 'alert-message', text: message }),
  footer,
  ackErrors.has(alert.fingerprint) ? el('p', { class: 'ack-error', text: ackErrors.get(alert.fingerprint) }) : null);
}

async function acknowledge(alert, button) {
  button.disabled = true;
  button.textContent = 'Acknowledging…';
  try {
    const updated = await api(`/api/v1/alerts/${alert.fingerprint}/ack`, { method: 'POST' });
    ackErrors.delete(alert.fingerprint);
    alerts = alerts.map((a) => (a.fingerprint === updated.fingerprint ? updated : a));
  } catch (err) {
    ackErrors.set(alert.fingerprint, err.message);
  }
  render();
}

function lineCard(line) {
  const oee = line.oee && line.oee.oee;
  const running = line.machines.filter((m) => m.state === 'running').length;
  const worst = ['down', 'idle', 'changeover', 'planned_stop', 'offline']
    .find((s) => line.machines.some((m) => m.state === s));
  return el('article', { class: 'line-card', 'data-line': line.line },
    el('div', { class: 'line-head' },
      el('div', {},
        el('h2', { class: 'line-name', text: line.name }),
        el('p', { class: `line-state tone-${worst ? stateTone(worst) : 'running'}`,
          text: `${running}/${line.machines.length} running${worst ? ` · ${line.machines
            .filter((m) => m.state === worst).length} ${stateLabel(worst).toLowerCase()}` : ''}` })),
      el('div', { class: 'line-oee' },
        el('span', { class: 'oee-label', text: 'OEE' }),
        el('b', { class: `num tone-${oeeTone(oee)}`, text: percent(oee) }))),
    el('ul', { class: 'chips' }, ...line.machines.map((m) => el('li', {
      class: `chip tone-${stateTone(m.state)}`, 'data-state': m.state,
      title: stateLabel(m.state, m.reason_text) },
    el('span', { class: 'chip-name', text: m.name }),
    el('span', { class: 'chip-state', text: stateLabel(m.state, m.reason_text) })))));
}

function freshness() {
  const box = $('freshness');
  if (lastOk == null) return;
  const age = Date.now() - lastOk;
  box.textContent = age > STALE_MS ? `STALE · ${clockDuration(age / 1000)} ago` : 'live';
  box.className = `freshness num ${age > STALE_MS ? 'stale' : 'fresh'}`;
}

$('change-key').addEventListener('click', async () => {
  forgetKey();
  await askForKey();
  refresh();
});
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') refresh();
});
setInterval(() => document.visibilityState === 'visible' && refresh(), POLL_MS);
setInterval(freshness, 1000);
refresh();
