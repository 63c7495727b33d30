// The REST API as the explorer and the phone use it: the key as a Bearer header, problem
// JSON turned into a message a person can act on, and a small prompt for the key.
//
// The key lives in sessionStorage (gone when the tab closes) unless the person ticks
// "remember on this device" (localStorage): a supervisor's phone should not ask every
// time, a shared workshop laptop should.

const STORE = 'linemon.key';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function storedKey() {
  return sessionStorage.getItem(STORE) || localStorage.getItem(STORE);
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
  localStorage.removeItem(STORE);
}

function keepKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(STORE, key);
}

// fetch + Bearer key; resolves to parsed JSON (or the Response for raw: true).
// A 401 asks for a key once and retries: the page works without a login screen.
export async function api(path, { method = 'GET', body, raw = false, params } = {}) {
  const url = new URL(path, location.href);
  for (const [k, v] of Object.entries(params || {})) {
    if (v != null && v !== '' && v !== false) url.searchParams.set(k, v);
  }
  for (let attempt = 0; ; attempt += 1) {
    const key = storedKey();
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && attempt === 0) {
      await askForKey(key ? 'That key was not accepted. Enter another one.' : null);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await problemText(response));
    if (raw) return response;
    return response.status === 204 ? null : response.json();
  }
}

async function problemText(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

let pending = null;

// One prompt at a time, however many requests hit a 401 together.
export function askForKey(message) {
  if (!pending) {
    pending = new Promise((resolve) => {
      const dialog = document.getElementById('key-dialog');
      const form = dialog.querySelector('form');
      const input = dialog.querySelector('input[name=key]');
      dialog.querySelector('.key-error').textContent = message || '';
      input.value = '';
      dialog.oncancel = (event) => event.preventDefault(); // Escape: no key, no page
      form.onsubmit = (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        keepKey(key, dialog.querySelector('input[name=remember]').checked);
        dialog.close();
        pending = null;
        resolve(key);
      };
      dialog.showModal();
      input.focus();
    });
  }
  return pending;
}
