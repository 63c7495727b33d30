// The line board: /board/{line}?key=<kiosk key>. No login screen: a TV on the wall has no
// keyboard, so the kiosk key rides in the URL (a kiosk key opens this board and nothing else).
//
// Everything shown comes from the WebSocket's snapshots. Between pushes the board only
// moves clocks forward; when pushes stop it says STALE in letters nobody can miss,
// because old numbers that look live are worse than no numbers.

import { renderAlerts, renderHeader, renderLosses, renderOee, renderOutput } from './board-panels.js';
import { renderTiles, tickTiles } from './board-tiles.js';
import { STALE_AFTER_MS, LiveFeed } from './live.js';

const line = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop());
const key = new URLSearchParams(location.search).get('key');
const $ = (id) => document.getElementById(id);

let snapshot = null; // the newest message's line
let receivedAt = 0; // performance.now() when it came
let trouble = null; // why the feed cannot connect, once the API said so

const wsUrl = new URL(`/api/v1/lines/${encodeURIComponent(line)}/live`, location.href);
wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
if (key) wsUrl.searchParams.set('key', key);

const feed = new LiveFeed(wsUrl.href, {
  onMessage(message) {
    if (message.type !== 'snapshot' || !message.line) return;
    snapshot = message.line;
    receivedAt = performance.now();
    trouble = null;
    render();
  },
  onTrouble({ attempt }) {
    // The browser hides why a WebSocket handshake failed; the same key on the REST view of
    // this line gets the API's own answer (401, 403, 404...). Not on every retry: unknown
    // keys count towards the API's throttle.
    if (attempt === 1 || attempt === 3 || attempt % 10 === 0) diagnose();
  },
});

async function diagnose() {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  try {
    const response = await fetch(`/api/v1/lines/${encodeURIComponent(line)}`, { headers });
    if (response.ok) {
      trouble = null;
      return;
    }
    const body = await response.json().catch(() => ({}));
    trouble = `${response.status}: ${body.detail || response.statusText}`;
    if (response.status === 401 && !key) trouble += ' — open this board as /board/<line>?key=<kiosk key>';
  } catch {
    trouble = null; // the server is unreachable: the STALE overlay already says so
  }
  showNotice();
}

function showNotice() {
  $('notice').hidden = !trouble;
  $('notice-detail').textContent = trouble || '';
}

function render() {
  if (!snapshot) return;
  const since = sinceSnapshotS();
  const alerting = renderAlerts(snapshot);
  renderTiles($('tiles'), snapshot.machines, alerting);
  renderOutput(snapshot);
  renderOee(snapshot);
  renderLosses(snapshot);
  renderHeader(snapshot, since);
  tickTiles(snapshot.machines, since);
  showNotice();
}

// Clocks run on between pushes, but not past the stale limit: a frozen board shows
// the last time it knew, not a guess.
function sinceSnapshotS() {
  return Math.min(performance.now() - receivedAt, STALE_AFTER_MS) / 1000;
}

function tick() {
  $('clock').textContent = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const stale = feed.isStale();
  document.body.classList.toggle('stale', stale && snapshot != null);
  $('stale').hidden = !stale;
  const age = feed.ageMs();
  if (stale) {
    $('stale-word').textContent = snapshot ? 'STALE' : 'NO DATA YET';
    $('stale-detail').textContent = snapshot
      ? `last update ${staleAge(age / 1000)} ago` : `waiting for ${line}`;
    $('stale-why').textContent = feed.describeAttempt();
  }
  $('age').textContent = age == null ? 'connecting…' : `updated ${(age / 1000).toFixed(1)} s ago`;
  $('age').className = `age ${stale ? 'old' : 'fresh'}`;
  if (snapshot && !stale) {
    const since = sinceSnapshotS();
    tickTiles(snapshot.machines, since);
    renderHeader(snapshot, since);
  }
}

// "00:42", "12:07", "1:02:11": minutes and seconds always, so the age reads as a clock.
function staleAge(seconds) {
  const s = Math.floor(seconds);
  const pad = (n) => String(Math.floor(n)).padStart(2, '0');
  const ms = `${pad((s % 3600) / 60)}:${pad(s % 60)}`;
  return s >= 3600 ? `${Math.floor(s / 3600)}:${ms}` : ms;
}

// Keep the TV awake where the browser allows it (secure contexts only; harmless elsewhere).
navigator.wakeLock?.request('screen').catch(() => {});
$('line-name').textContent = line;
feed.start();
tick();
setInterval(tick, 250);
