// How the dashboards say things: machine states, durations, numbers, percentages.
// One place, so the board, the explorer and the phone never disagree on a word or a colour.

// Andon colours: the CSS class carries the colour (base.css), the label the word.
const STATES = {
  running: { label: 'Running', tone: 'running' },
  idle: { label: 'Idle', tone: 'idle' },
  down: { label: 'Down', tone: 'down' },
  changeover: { label: 'Changeover', tone: 'changeover' },
  planned_stop: { label: 'Planned stop', tone: 'planned' },
  offline: { label: 'Offline', tone: 'offline' },
};

export const STATE_ORDER = Object.keys(STATES);

// An idle machine is starved or blocked: the word people use on the floor says which.
export function stateLabel(state, reasonText) {
  if (state === 'idle' && reasonText && /^(starved|blocked)$/i.test(reasonText)) {
    return reasonText[0].toUpperCase() + reasonText.slice(1).toLowerCase();
  }
  return (STATES[state] || STATES.offline).label;
}

export function stateTone(state) {
  return (STATES[state] || STATES.offline).tone;
}

// The reason a tile shows: "17 · Jam"; nothing for a running machine or a bare starved.
export function reasonLine(state, code, text) {
  if (state === 'running') return '';
  if (state === 'idle' && text && /^(starved|blocked)$/i.test(text)) return '';
  if (code && text && text !== `code ${code}`) return `${code} · ${text}`;
  return text || (code ? `code ${code}` : '');
}

const pad = (n) => String(Math.floor(n)).padStart(2, '0');

// Time in state on a board: 0:42, 12:04, 1:02:11, 3 d 4 h.
export function clockDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s >= 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// Durations in tables and charts: 45 s, 12 min, 3 h 05 min.
export function humanDuration(seconds) {
  if (seconds == null) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function count(n) {
  return n == null ? '–' : integer.format(n);
}

export function percent(ratio) {
  return ratio == null ? '–' : `${Math.round(ratio * 100)}%`;
}

// OEE bands: world class from 85 %, typical 60-85 %, below that a problem to chase.
export function oeeTone(ratio) {
  if (ratio == null) return 'offline';
  if (ratio >= 0.85) return 'running';
  if (ratio >= 0.6) return 'idle';
  return 'down';
}

export function timeOfDay(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

export function dateTime(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString([], {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

// Loss names from the OEE accounting (rules/oee.py), as the floor says them. Planned stops
// and offline time are outside the planned time, so they are no loss of the shift.
export const LOSSES = {
  breakdowns: 'Breakdowns',
  setup_changeover: 'Changeovers',
  small_stops: 'Small stops',
  idle: 'Starved / blocked',
  reduced_speed: 'Reduced speed',
  rejects: 'Rejects',
};

// The shift's biggest losses as machine + loss ("Welder 1 · Breakdowns"): that says where
// to go, which the line's own figure (its end machine's output) cannot. Starved and
// blocked time is left out: it is the echo of a loss elsewhere on the line, not a cause.
export function topLosses(machines, n = 3) {
  const all = [];
  for (const m of machines) {
    for (const [name, seconds] of Object.entries((m.oee && m.oee.losses_s) || {})) {
      if (name in LOSSES && name !== 'idle' && seconds >= 1) {
        all.push({ machine: m.machine, machineName: m.name, name, label: LOSSES[name], seconds });
      }
    }
  }
  return all.sort((a, b) => b.seconds - a.seconds).slice(0, n);
}

// Build an element: el('div', {class: 'x', text: 'y'}, child, ...). Text only, never HTML:
// machine names, reasons and notes come from the plant and from people.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}
