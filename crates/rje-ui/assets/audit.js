// The audit trail: every change asked of the API, newest first, read from
// the server a page at a time. The filters live in the address, as on the
// job list, so a view can be shared and the back button works.

import { api, el, flash, refuseUnlessAdmin, timeEl, whoami } from './common.js';

const form = document.getElementById('audit-filters');
const tbody = document.querySelector('#audit tbody');
const FILTERS = ['token', 'route'];
const LIMIT = 50;

function current() {
  const params = new URLSearchParams(location.search);
  const view = {};
  for (const name of FILTERS) view[name] = params.get(name) || '';
  view.offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  return view;
}

function navigate(view, replace = false) {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (view[name]) params.set(name, view[name]);
  if (view.offset) params.set('offset', view.offset);
  const url = '/ui/audit' + (params.toString() ? '?' + params : '');
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  load();
}

function fillForm(view) {
  for (const name of FILTERS) {
    const field = form.elements.namedItem(name);
    if (document.activeElement !== field) field.value = view[name];
  }
}

/** A link that shows only the entries whose `name` is `value`. */
function filterLink(name, value, attrs = {}) {
  const query = new URLSearchParams({ [name]: value });
  return el('a', {
    ...attrs, href: '/ui/audit?' + query, 'data-filter': name, 'data-value': value, text: value,
  });
}

/** The class of an answer's status: done, refused (4xx) or failed (5xx). */
function statusClass(status) {
  if (status >= 200 && status < 300) return 'st-ok';
  if (status >= 400 && status < 500) return 'st-refused';
  if (status >= 500) return 'st-failed';
  return null;
}

/** What the call touched: a job (its page) or a token's or host's name. */
function target(entry) {
  if (!entry.target) return el('span', { class: 'muted', text: '—' });
  if (entry.route === '/jobs' || entry.route.startsWith('/jobs/')) {
    return el('a', {
      href: '/ui/jobs/' + encodeURIComponent(entry.target),
      class: 'mono',
      title: entry.target,
      text: entry.target.slice(0, 8),
    });
  }
  return el('span', { text: entry.target });
}

function row(entry) {
  const token = entry.token === null || entry.token === undefined
    ? el('span', { class: 'muted', text: '(no token)' })
    : filterLink('token', entry.token);
  return el('tr', {},
    el('td', {}, timeEl(entry.at)),
    el('td', {}, token),
    el('td', { class: 'opt mono', text: entry.client }),
    el('td', {},
      el('span', { class: 'method', text: entry.method }), ' ',
      filterLink('route', entry.route, { class: 'mono' })),
    el('td', {}, target(entry)),
    el('td', { class: statusClass(entry.status), text: String(entry.status) }),
  );
}

let loading = null;

async function load() {
  const view = current();
  fillForm(view);
  const query = new URLSearchParams({ limit: LIMIT, offset: view.offset });
  for (const name of FILTERS) if (view[name]) query.set(name, view[name]);
  const mine = (loading = Symbol('load'));
  try {
    const page = await api('/audit/?' + query);
    if (mine !== loading) return; // a newer view is on its way
    flash('');
    tbody.replaceChildren(...page.entries.map(row));
    document.getElementById('empty').hidden = page.entries.length > 0;
    const shown = page.entries.length;
    const total = page.total_count;
    document.getElementById('range').textContent = shown
      ? `${view.offset + 1}–${view.offset + shown} of ${total.toLocaleString()}`
      : `0 of ${total.toLocaleString()}`;
    document.getElementById('prev').disabled = view.offset === 0;
    document.getElementById('next').disabled = view.offset + shown >= total;
  } catch (err) {
    if (mine === loading) flash(err.message);
  }
}

/** The tokens' names as the token filter's suggestions. */
async function fillTokenNames() {
  try {
    const { tokens } = await api('/tokens/');
    document.getElementById('token-names')
      .replaceChildren(...tokens.map((token) => el('option', { value: token.name })));
  } catch { /* the filter still works without suggestions */ }
}

let typing = null;
form.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    const route = form.elements.namedItem('route').value.trim();
    navigate({
      token: form.elements.namedItem('token').value.trim(),
      // Entries name routes without their trailing slash.
      route: route.length > 1 ? route.replace(/\/+$/, '') : route,
      offset: 0,
    }, true);
  }, 300);
});
form.addEventListener('submit', (event) => event.preventDefault());

// A token or route in an entry filters by it, without a reload.
tbody.addEventListener('click', (event) => {
  const link = event.target.closest('a[data-filter]');
  if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  navigate({ ...current(), [link.dataset.filter]: link.dataset.value, offset: 0 });
});

function page(step) {
  const view = current();
  view.offset = Math.max(0, view.offset + step * LIMIT);
  navigate(view);
}

whoami().then((me) => {
  if (refuseUnlessAdmin(me)) return;
  document.getElementById('prev').addEventListener('click', () => page(-1));
  document.getElementById('next').addEventListener('click', () => page(1));
  window.addEventListener('popstate', load);
  fillTokenNames();
  load();
});
