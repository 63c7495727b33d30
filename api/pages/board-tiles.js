// The board's machine tiles: one per machine, in line order, coloured by state.
// Tiles are created once and updated in place, so a push a second never flickers.

import { clockDuration, count, el, percent, reasonLine, stateLabel, stateTone } from './format.js';

const tiles = new Map(); // machine id -> {root, parts, key}

// alerting: machine id -> what its firing alert says (the tile gets a ring and the text).
export function renderTiles(container, machines, alerting) {
  const ids = machines.map((m) => m.machine);
  if (ids.join('\n') !== [...tiles.keys()].join('\n')) rebuild(container, machines);
  for (const machine of machines) update(tiles.get(machine.machine), machine, alerting);
}

function rebuild(container, machines) {
  tiles.clear();
  container.replaceChildren();
  // Up to five machines sit in one row in line order; more wrap into two or three rows.
  const n = machines.length;
  const rows = n <= 5 ? 1 : n <= 12 ? 2 : 3;
  container.style.setProperty('--cols', String(Math.ceil(n / rows)));
  container.style.setProperty('--rows', String(rows));
  container.style.setProperty('--tile-scale', String([1, 0.55, 0.38][rows - 1]));
  container.dataset.rows = String(rows);
  for (const machine of machines) {
    const parts = {
      name: el('div', { class: 'tile-name' }),
      state: el('div', { class: 'tile-state' }),
      time: el('div', { class: 'tile-time num' }),
      reason: el('div', { class: 'tile-reason' }),
      oee: el('span', { class: 'num' }),
      good: el('span', { class: 'num' }),
    };
    const root = el('article', { class: 'tile', 'data-machine': machine.machine },
      parts.name, parts.state, parts.time, parts.reason,
      el('div', { class: 'tile-foot' }, parts.oee, parts.good));
    container.append(root);
    tiles.set(machine.machine, { root, parts, key: '', timeLength: 0 });
  }
}

function update(tile, m, alerting) {
  const { root, parts } = tile;
  const tone = stateTone(m.state);
  root.className = `tile tone-${tone}${alerting.has(m.machine) ? ' alerting' : ''}`;
  root.dataset.state = m.state;
  parts.name.textContent = m.name;
  const label = stateLabel(m.state, m.reason_text);
  // The reason says why it stands; a running machine with an alert says what is wrong.
  const reason = reasonLine(m.state, m.reason_code, m.reason_text);
  const alert = alerting.get(m.machine);
  parts.reason.textContent = reason || (alert ? `⚠ ${alert}` : '');
  parts.oee.textContent = `OEE ${percent(m.oee && m.oee.oee)}`;
  parts.good.textContent = `${count(m.good)} good`;
  if (tile.key !== `${label}|${m.name}`) {
    tile.key = `${label}|${m.name}`;
    parts.state.textContent = label;
    fitText(parts.state);
    fitText(parts.name);
  }
}

// Time in state moves every second on the wall even though pushes come at most once a
// second: the tile adds the time since the snapshot arrived (capped by the caller).
export function tickTiles(machines, sinceSnapshotS) {
  for (const m of machines) {
    const tile = tiles.get(m.machine);
    if (!tile) continue;
    const text = clockDuration(m.time_in_state_s + sinceSnapshotS);
    tile.parts.time.textContent = text;
    if (text.length !== tile.timeLength) { // 9:59 -> 10:00 -> 1:00:00: refit, not every second
      tile.timeLength = text.length;
      fitText(tile.parts.time);
    }
  }
}

// Shrink a one-line text until it fits its box ("Changeover" on a narrow tile).
function fitText(node) {
  node.style.fontSize = '';
  let size = parseFloat(getComputedStyle(node).fontSize);
  while (node.scrollWidth > node.clientWidth && size > 12) {
    size -= 2;
    node.style.fontSize = `${size}px`;
  }
}
