// The board's panels around the tiles: shift header, alerts banner, output against the
// plan, OEE with A/P/Q, and the shift's top losses. All from one live snapshot.

import { clockDuration, count, el, humanDuration, oeeTone, percent, timeOfDay, topLosses }
  from './format.js';

const $ = (id) => document.getElementById(id);

export function renderHeader(line, sinceSnapshotS) {
  $('line-name').textContent = line.name;
  document.title = `${line.name} · linemon`;
  if (!line.shift) {
    $('shift-name').textContent = 'No shift planned now';
    $('shift-hours').textContent = '';
    $('shift-left').textContent = '';
    return;
  }
  const name = line.shift[0].toUpperCase() + line.shift.slice(1);
  const left = (Date.parse(line.shift_end) - Date.parse(line.at)) / 1000 - sinceSnapshotS;
  $('shift-name').textContent = `${name} shift`;
  $('shift-hours').textContent = `${timeOfDay(line.shift_start)}–${timeOfDay(line.shift_end)}`;
  $('shift-left').textContent = left > 0 ? `${humanDuration(left)} left` : 'ending';
}

const SEVERITY = { critical: 0, warning: 1, info: 2 };

// Firing alerts only: pending ones have not held long enough to be believed yet.
// Returns machine id -> what its alert says, for the tiles.
export function renderAlerts(line) {
  const box = $('alerts');
  const firing = line.alerts
    .filter((a) => a.state === 'firing')
    .sort((a, b) => (SEVERITY[a.severity] - SEVERITY[b.severity])
      || Date.parse(a.fired_at || a.first_seen) - Date.parse(b.fired_at || b.first_seen));
  box.dataset.count = String(firing.length);
  const names = Object.fromEntries(line.machines.map((m) => [m.machine, m.name]));
  const byMachine = new Map(firing.filter((a) => a.machine)
    .map((a) => [a.machine, withoutMachine(a)]).reverse()); // the most severe wins
  if (!firing.length) {
    box.className = 'alerts quiet';
    box.replaceChildren(el('span', { class: 'alerts-ok', text: '✓ No active alerts' }));
    return byMachine;
  }
  const first = firing[0];
  const since = (Date.parse(line.at) - Date.parse(first.fired_at || first.first_seen)) / 1000;
  const rest = firing.slice(1).map((a) => names[a.machine] || a.machine || a.rule_id);
  box.className = `alerts severity-${first.severity}${first.acknowledged_by ? ' acked' : ''}`;
  const parts = [
    el('span', { class: 'alerts-icon', text: '⚠' }),
    el('span', { class: 'alerts-what' },
      el('b', { text: names[first.machine] || first.machine || line.name }),
      ` ${withoutMachine(first)}`),
    el('span', { class: 'alerts-since num', text: clockDuration(since) }),
  ];
  if (first.acknowledged_by) {
    parts.push(el('span', { class: 'alerts-ack', text: `ACK ${first.acknowledged_by}` }));
  }
  if (rest.length) {
    parts.push(el('span', { class: 'alerts-more', text: `+${rest.length} more: ${rest.join(', ')}` }));
  }
  box.replaceChildren(...parts);
  return byMachine;
}

// Rules write "weld-1 stopped: Tool break"; the board already names the machine.
function withoutMachine(alert) {
  const m = alert.machine;
  return m && alert.message.startsWith(`${m} `) ? alert.message.slice(m.length + 1) : alert.message;
}

export function renderOutput(line) {
  $('actual').textContent = count(line.actual);
  const plan = line.moving_target;
  const delta = plan == null ? null : Math.round(line.actual - plan);
  const deltaBox = $('delta');
  deltaBox.textContent = delta == null ? '' : `${delta >= 0 ? '+' : '−'}${count(Math.abs(delta))}`;
  deltaBox.className = `delta num ${delta == null ? '' : delta >= 0 ? 'ahead' : 'behind'}`;
  $('plan-now').textContent = count(plan);
  $('target').textContent = count(line.target);
  $('forecast').textContent = count(line.forecast);
  const target = line.target || 0;
  const fill = target ? Math.min(1, line.actual / target) : 0;
  const mark = target && plan != null ? Math.min(1, plan / target) : null;
  $('progress-fill').style.width = `${fill * 100}%`;
  $('progress-fill').className = `progress-fill ${delta != null && delta < 0 ? 'behind' : 'ahead'}`;
  $('progress-mark').hidden = mark == null;
  if (mark != null) $('progress-mark').style.left = `${mark * 100}%`;
}

export function renderOee(line) {
  const oee = line.oee || {};
  const big = $('oee');
  big.textContent = percent(oee.oee);
  big.className = `big num tone-${oeeTone(oee.oee)}`;
  for (const key of ['availability', 'performance', 'quality']) {
    const value = oee[key];
    $(`${key}-value`).textContent = percent(value);
    const bar = $(`${key}-bar`);
    bar.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
    bar.className = `apq-fill tone-${apqTone(value)}`;
  }
}

// A, P and Q each sit well above the OEE they multiply into: world class is about 90 %
// availability, 95 % performance, 99.9 % quality. One band for all three keeps it readable.
function apqTone(ratio) {
  if (ratio == null) return 'offline';
  return ratio >= 0.9 ? 'running' : ratio >= 0.75 ? 'idle' : 'down';
}

export function renderLosses(line) {
  const losses = topLosses(line.machines);
  const list = $('losses');
  if (!losses.length) {
    list.replaceChildren(el('li', { class: 'loss-none', text: 'No losses yet this shift' }));
    return;
  }
  const worst = losses[0].seconds;
  list.replaceChildren(...losses.map((loss, i) => {
    const fill = el('span', { class: 'loss-fill' });
    fill.style.width = `${(loss.seconds / worst) * 100}%`; // CSSOM: the CSP forbids style=""
    return el('li', { class: 'loss', 'data-loss': `${loss.machine}:${loss.name}` },
      el('span', { class: 'loss-rank', text: String(i + 1) }),
      el('span', { class: 'loss-machine', text: loss.machineName }),
      el('span', { class: 'loss-time num', text: humanDuration(loss.seconds) }),
      el('span', { class: 'loss-kind', text: loss.label }),
      el('span', { class: 'loss-bar' }, fill));
  }));
}
