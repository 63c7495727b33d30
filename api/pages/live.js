// A line's live feed over the WebSocket (/api/v1/lines/{line}/live): the server sends a
// snapshot on connect and then at least one a second, so silence means trouble.
//
// A board runs for months unattended, so the feed never gives up: when the socket closes
// it reconnects with a growing, jittered delay (50 boards must not hammer a restarted
// server in the same instant), and when an open socket goes quiet (a dead NAT entry, a
// server that vanished without closing) the watchdog closes it and starts over.

export const STALE_AFTER_MS = 5000; // no message for this long: the board says STALE
const DEAD_AFTER_MS = 10000; // an open socket this quiet is dead: reconnect
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export class LiveFeed {
  // onMessage(msg): every parsed message; onTrouble(info): a socket closed without ever
  // delivering a message ({attempt}), so the page can find out why (key? line?).
  constructor(url, { onMessage, onTrouble }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onTrouble = onTrouble || (() => {});
    this.socket = null;
    this.lastMessageAt = null; // performance.now() of the newest message
    this.failures = 0;
    this.nextAttemptAt = null;
    this.timer = null;
  }

  start() {
    this.connect();
    setInterval(() => this.watchdog(), 1000);
  }

  connect() {
    this.timer = null;
    this.nextAttemptAt = null;
    let delivered = false;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (event) => {
      delivered = true;
      this.failures = 0;
      this.lastMessageAt = performance.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not ours to show; the next snapshot will do
      }
      this.onMessage(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.failures += 1;
      if (!delivered) this.onTrouble({ attempt: this.failures });
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    const base = BACKOFF_MS[Math.min(this.failures - 1, BACKOFF_MS.length - 1)];
    const delay = base * (0.8 + Math.random() * 0.4);
    this.nextAttemptAt = performance.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  watchdog() {
    const quietFor = this.ageMs();
    if (this.socket && this.socket.readyState === WebSocket.OPEN && quietFor > DEAD_AFTER_MS) {
      this.socket.close(); // onclose schedules the reconnect
    }
  }

  // Milliseconds since the newest message; null before the first.
  ageMs() {
    return this.lastMessageAt == null ? null : performance.now() - this.lastMessageAt;
  }

  isStale() {
    const age = this.ageMs();
    return age == null || age > STALE_AFTER_MS;
  }

  // What the board prints under STALE: "reconnecting in 4 s" or "connecting…".
  describeAttempt() {
    if (this.socket && this.socket.readyState === WebSocket.CONNECTING) return 'connecting…';
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return 'connected, waiting for data…';
    if (this.nextAttemptAt == null) return 'connecting…';
    const s = Math.max(0, Math.ceil((this.nextAttemptAt - performance.now()) / 1000));
    return `no connection — retrying in ${s} s`;
  }
}
