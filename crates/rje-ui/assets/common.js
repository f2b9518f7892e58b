// What every page shares: the token and who it is, calls to the API,
// WebSockets that reconnect, and the small formatting helpers.

const TOKEN_KEY = 'rje.token';
const WHOAMI_KEY = 'rje.whoami';

export const STATUSES = ['Queued', 'Running', 'Success', 'Failed', 'Cancelled'];
export const FINAL = new Set(['Success', 'Failed', 'Cancelled']);
/** How a run's host ended (a job's `outcome`), as the API names it. */
export const OUTCOMES = [
  'Success', 'Failed', 'TimedOut', 'Unreachable', 'AuthFailed', 'Cancelled', 'Skipped',
];

/** The roles, least first: each may do what the ones before it may. */
const RANK = { read: 1, run: 2, admin: 3 };

/** This page's one question to GET /whoami/, once asked. */
let whoamiAnswer = null;

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  // Who a token is belongs to that token: another one is asked anew.
  sessionStorage.removeItem(WHOAMI_KEY);
  whoamiAnswer = null;
}

/**
 * What every token may do on a server older than roles (its /whoami/ is a
 * 404), or when /whoami/ cannot be read: everything, as before roles. The
 * server refuses what a token may not do either way; hiding is a courtesy.
 * `auth: null`: not known, so the header names nobody.
 */
const EVERYTHING = Object.freeze({ name: null, role: 'admin', hosts: [], labels: [], auth: null });

/** A /whoami/ answer as the pages use it, or null when it is not one. */
function asWhoami(raw) {
  if (!raw || typeof raw !== 'object' || !Object.hasOwn(RANK, raw.role)) return null;
  return {
    name: typeof raw.name === 'string' ? raw.name : null,
    role: raw.role,
    hosts: Array.isArray(raw.hosts) ? raw.hosts.map(String) : [],
    labels: Array.isArray(raw.labels) ? raw.labels.map(String) : [],
    // Unsaid: tokens are in use when the answer names one.
    auth: typeof raw.auth === 'boolean' ? raw.auth : typeof raw.name === 'string',
  };
}

/**
 * A short fingerprint of a token (FNV-1a): the kept answer says whose it
 * is without the tab keeping the token twice. Not a secret's hash, only
 * a way to tell the tab's tokens apart.
 */
function fingerprint(secret) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < secret.length; i++) {
    hash ^= secret.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `${secret.length}:${hash.toString(16)}`;
}

/** Keeps `me` (a /whoami/ answer) for this tab as the answer for `secret`. */
export function keepWhoami(raw, secret = token()) {
  const me = asWhoami(raw);
  if (!me) return;
  try {
    sessionStorage.setItem(WHOAMI_KEY, JSON.stringify({ token: fingerprint(secret || ''), me }));
  } catch { /* storage full or refused: asked again next page */ }
}

function keptWhoami(secret) {
  let kept = null;
  try { kept = JSON.parse(sessionStorage.getItem(WHOAMI_KEY)); } catch { return null; }
  // The answer for another token (or for none) is not this one's.
  if (!kept || kept.token !== fingerprint(secret || '')) return null;
  return asWhoami(kept.me);
}

/**
 * Who the kept token is: `{name, role, hosts, labels, auth}` as
 * GET /whoami/ answers. Asked at most once per page, and not at all when
 * the tab kept the answer for this very token. Never fails: a server
 * older than roles, or one that cannot answer, gives `EVERYTHING`; a
 * refused token (401) gives null (the page's own calls go to sign-in).
 */
export function whoami() {
  if (!whoamiAnswer) whoamiAnswer = askWhoami();
  return whoamiAnswer;
}

async function askWhoami() {
  const secret = token();
  const kept = keptWhoami(secret);
  if (kept) return kept;
  let res;
  try {
    res = await fetch('/whoami/', { headers: authHeaders({ Accept: 'application/json' }) });
  } catch {
    return EVERYTHING;
  }
  if (res.status === 401) return null;
  if (!res.ok) return EVERYTHING;
  let me = null;
  try { me = asWhoami(await res.json()); } catch { /* not JSON: as if unknown */ }
  if (!me) return EVERYTHING;
  keepWhoami(me, secret);
  return me;
}

/** Whether `me` (from whoami()) has `role` or a greater one. */
export function may(me, role) {
  return Boolean(me) && (RANK[me.role] || 0) >= RANK[role];
}

/**
 * Whether `me` may change what the token named `owner` made (a job's
 * submitted_by, a schedule's created_by): an admin anything, run its own.
 */
export function mayChangeOwn(me, owner) {
  if (may(me, 'admin')) return true;
  return may(me, 'run') && typeof owner === 'string' && owner === me.name;
}

/** Whether `me` may cancel or change `job`: an admin any, run its own. */
export function mayChange(me, job) {
  return mayChangeOwn(me, job.submitted_by);
}

/** An API answer that was not a success, with the server's error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `the server answered ${status}`);
    this.status = status;
    this.details = (body && body.details) || [];
  }
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign('/ui/login?next=' + encodeURIComponent(next));
}

function authHeaders(headers = {}) {
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  return headers;
}

/**
 * Calls the API; a 401 sends the user to the sign-in page. `headers`: more
 * of them (an Idempotency-Key). A network failure rejects with the
 * browser's TypeError, not an ApiError: the server may or may not have
 * acted.
 */
export async function api(path, { method = 'GET', body, text = false, headers: extra = {} } = {}) {
  const headers = authHeaders({ ...extra, Accept: text ? 'text/plain' : 'application/json' });
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    toLogin();
    throw new ApiError(401, { error: 'a token is needed' });
  }
  if (res.status === 204) return null;
  if (!res.ok) {
    let payload = null;
    try { payload = await res.json(); } catch { /* not JSON: keep the status */ }
    throw new ApiError(res.status, payload);
  }
  return text ? res.blob() : res.json();
}

/** Downloads a text route as a file (an <a href> could not carry the token). */
export async function download(path, filename) {
  const blob = await api(path, { text: true });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * A WebSocket that reconnects with backoff until `stop()` or until
 * `onMessage` returns `'done'`. `path()` is asked again before every
 * connection, so a reconnect can resume where the last one stopped.
 */
export function liveSocket(path, onMessage, onState = () => {}) {
  let socket = null;
  let stopped = false;
  let delay = 500;
  const connect = () => {
    const url = new URL(path(), location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const t = token();
    if (t) url.searchParams.set('token', t);
    socket = new WebSocket(url);
    socket.onopen = () => { delay = 500; onState(true); };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (onMessage(message) === 'done') stop();
    };
    socket.onclose = () => {
      // null: finished on purpose, nothing more will come.
      onState(stopped ? null : false);
      if (stopped) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  const stop = () => {
    stopped = true;
    if (socket) socket.close();
  };
  connect();
  return { stop };
}

/** Marks the header's live indicator; `null` hides it. */
export function showLive(on) {
  const live = document.getElementById('live');
  live.hidden = on === null;
  live.classList.toggle('off', !on);
  live.textContent = on ? 'live' : 'reconnecting…';
}

/** Creates an element: el('a', {href: '/'}, 'text', child…). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

export function badge(status) {
  return el('span', { class: 'badge s-' + status, text: status });
}

const localTime = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'medium',
});

/** A time in the browser's zone, the UTC value on hover. */
export function timeEl(iso) {
  if (!iso) return el('span', { class: 'muted', text: '—' });
  const date = new Date(iso);
  return el('time', {
    datetime: iso,
    title: date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
    text: localTime.format(date),
  });
}

/** How long a job ran, or has been running. */
export function duration(job) {
  if (!job.started_at) return '—';
  const end = job.completed_at ? new Date(job.completed_at) : new Date();
  return formatSeconds((end - new Date(job.started_at)) / 1000);
}

export function formatSeconds(seconds) {
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function flash(message, kind = 'error') {
  const box = document.getElementById('flash');
  box.textContent = message;
  box.className = 'flash ' + kind;
  box.hidden = !message;
}

/** Clears what `showFieldErrors` showed in `form`. */
export function clearFieldErrors(form) {
  for (const p of form.querySelectorAll('[data-error-for]')) p.textContent = '';
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/**
 * The server's validation errors (an ApiError's `details`) beside the
 * fields they name (`parameters.env` beside `parameters`), the others in
 * the form's general slot (`data-error-for=""`); the first field named
 * takes the focus.
 */
export function showFieldErrors(form, err) {
  const details = err.details.length ? err.details : [{ field: '', message: err.message }];
  let first = null;
  for (const { field, message } of details) {
    const top = String(field || '').split('.')[0];
    const slot = form.querySelector(`[data-error-for="${CSS.escape(top)}"]`)
      || form.querySelector('[data-error-for=""]');
    slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
    const input = top ? form.elements.namedItem(top) : null;
    if (input && input.setAttribute) {
      input.setAttribute('aria-invalid', 'true');
      first = first || input;
    }
  }
  (first || form.querySelector('.error:not(:empty)'))?.focus?.();
}

/**
 * An admin's page opened with a lesser token (`me` from whoami()): the
 * page says so (#needs-admin) and hides what the server would refuse
 * (#admin-only) rather than show its 403. Returns whether it did.
 */
export function refuseUnlessAdmin(me) {
  if (!me || may(me, 'admin')) return false;
  const note = document.getElementById('needs-admin');
  const who = me.name ? `The token ${me.name}` : 'This token';
  note.textContent = `This page needs an admin token. ${who} has the role ${me.role}.`;
  note.hidden = false;
  document.getElementById('admin-only').hidden = true;
  return true;
}

/** Runs `fn` at most once per `ms`, the last call always honoured. */
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  return () => {
    if (timer) { pending = true; return; }
    fn();
    timer = setTimeout(function again() {
      timer = null;
      if (pending) { pending = false; fn(); timer = setTimeout(again, ms); }
    }, ms);
  };
}

/** What a token can be used for: "every host", or its hosts and labels. */
function scopeText(me) {
  const parts = [];
  if (me.hosts.length) parts.push('hosts ' + me.hosts.join(', '));
  if (me.labels.length) parts.push('hosts labelled ' + me.labels.join(', '));
  return parts.length ? parts.join(' and ') : 'every host';
}

/** The header names the token ("ci · run") and links hide what its role cannot use. */
function showWhoami(me) {
  if (!me) return;
  for (const node of document.querySelectorAll('[data-needs]')) {
    node.hidden = !may(me, node.dataset.needs);
  }
  const box = document.getElementById('whoami');
  if (!box || me.auth === null) return;
  if (me.auth) {
    box.textContent = me.name ? `${me.name} · ${me.role}` : me.role;
    box.title = `The token ${me.name || ''}: role ${me.role}, on ${scopeText(me)}.`;
  } else {
    box.textContent = 'no token';
    box.title = 'The server asks for no token: every call may do everything.';
  }
  box.hidden = false;
}

// Every page: the sign-out button appears when a token is kept.
const signout = document.getElementById('signout');
if (signout && token()) {
  signout.hidden = false;
  signout.addEventListener('click', () => { setToken(null); toLogin(); });
}
// Every page but sign-in: who the token is, in the header.
if (document.body.dataset.page !== 'login') whoami().then(showWhoami);
