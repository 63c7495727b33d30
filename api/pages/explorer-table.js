// The explorer's table of stops: cursor-paged (the API hands out "next" cursors, so the
// table keeps the ones it has seen to go back), and the dialog that codes a stop's reason.

import { api } from './api.js';
import { dateTime, el, humanDuration } from './format.js';

const PAGE = 25;
const CATEGORY = { unplanned: 'Unplanned', planned: 'Planned', changeover: 'Changeover' };

export class DowntimeTable {
  constructor({ names, onCoded, status }) {
    this.names = names; // machine id -> {name, line}
    this.onCoded = onCoded;
    this.status = status;
    this.reasons = [];
    this.params = null;
    this.cursors = [null]; // cursors[i]: the cursor that fetches page i
    this.page = 0;
    this.shown = 0; // requests made: only the latest one's answer is drawn
    this.body = document.querySelector('#downtime tbody');
    document.getElementById('page-prev').addEventListener('click', () => this.turn(-1));
    document.getElementById('page-next').addEventListener('click', () => this.turn(1));
    this.dialog = new CodeDialog(this);
  }

  async load(params) {
    this.params = params;
    this.cursors = [null];
    this.page = 0;
    await this.show();
  }

  async turn(step) {
    this.page += step;
    try {
      await this.show();
    } catch (err) {
      this.status(err.message, true);
    }
  }

  async show() {
    const asked = this.params;
    const params = { ...asked, limit: PAGE, cursor: this.cursors[this.page] };
    const mine = ++this.shown;
    const page = await api('/api/v1/downtime', { params });
    // Answers can come back out of order (a filter changed while the last one loaded): an
    // older one must not replace the rows of a newer one.
    if (mine !== this.shown) return;
    this.cursors[this.page + 1] = page.next_cursor;
    this.body.replaceChildren(...page.items.map((stop) => this.row(stop)));
    if (!page.items.length) {
      this.body.append(el('tr', {}, el('td', { colspan: '8', class: 'empty', text: 'No stops match these filters.' })));
    }
    const first = this.page * PAGE + 1;
    document.getElementById('page-info').textContent = page.items.length
      ? `${first}–${first + page.items.length - 1}` : '';
    document.getElementById('page-prev').disabled = this.page === 0;
    document.getElementById('page-next').disabled = !page.next_cursor;
    // Which filters the rows answer, for anyone waiting on them (the browser tests).
    this.body.parentElement.dataset.loaded = Object.entries(asked)
      .filter(([, v]) => v != null && v !== '' && v !== false).map(([k, v]) => `${k}=${v}`).join('&');
  }

  row(stop) {
    const reason = stop.reason_code == null
      ? el('span', { class: 'badge uncoded', text: 'Uncoded' })
      : `${stop.reason_code} · ${stop.reason_text || ''}`;
    const flags = [
      stop.open ? el('span', { class: 'badge open', text: 'ongoing' }) : null,
      stop.micro_stop ? el('span', { class: 'badge micro', text: 'micro' }) : null,
    ];
    return el('tr', { 'data-id': stop.id, 'data-machine': stop.machine,
      class: stop.reason_code == null ? 'is-uncoded' : null },
    el('td', { class: 'num', text: dateTime(stop.start) }),
    el('td', { text: this.names.get(stop.machine)?.name || stop.machine }),
    el('td', { class: 'r num' }, humanDuration(stop.duration_s), ...flags),
    el('td', {}, el('span', { class: `cat cat-${stop.category}`, text: CATEGORY[stop.category] || stop.category })),
    el('td', { class: 'reason' }, reason),
    el('td', { class: 'note', text: stop.note || '' }),
    el('td', { text: stop.coded_by || '' }),
    el('td', { class: 'r' }, el('button', {
      type: 'button', class: stop.reason_code == null ? 'code-button' : 'quiet-button',
      text: stop.reason_code == null ? 'Code' : 'Edit', onclick: () => this.dialog.open(stop),
    })));
  }
}

// PUT /api/v1/downtime/{id}/reason: needs an operator key. A viewer key gets the API's
// 403 text in the dialog, which says which role it takes.
class CodeDialog {
  constructor(table) {
    this.table = table;
    this.node = document.getElementById('code-dialog');
    this.form = this.node.querySelector('form');
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.save();
    });
    this.node.querySelector('[data-close]').addEventListener('click', () => this.node.close());
  }

  open(stop) {
    this.stop = stop;
    const machine = this.table.names.get(stop.machine)?.name || stop.machine;
    this.node.querySelector('.code-what').textContent = `${machine} · ${dateTime(stop.start)} · `
      + `${humanDuration(stop.duration_s)}${stop.open ? ' so far' : ''}`;
    this.form.reason.replaceChildren(el('option', { value: '', text: 'Choose a reason…' }),
      ...this.table.reasons.map((r) => el('option', { value: r.code, text: `${r.code} · ${r.text}` })));
    this.form.reason.value = stop.reason_code || '';
    this.form.note.value = stop.note || '';
    this.node.querySelector('.dialog-error').textContent = '';
    this.node.showModal();
    this.form.reason.focus();
  }

  async save() {
    const body = { reason_code: this.form.reason.value };
    if (!body.reason_code) return;
    if (this.form.note.value.trim()) body.note = this.form.note.value.trim();
    const button = this.form.querySelector('[type=submit]');
    button.disabled = true;
    try {
      await api(`/api/v1/downtime/${encodeURIComponent(this.stop.id)}/reason`, { method: 'PUT', body });
      this.node.close();
      this.table.onCoded();
    } catch (err) {
      this.node.querySelector('.dialog-error').textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }
}
