// Tokens: an admin's list of the server's tokens, a form to make one and
// Revoke. A new token's secret is shown once, on this page only: it is
// never stored (not in sessionStorage, not in localStorage), and it is
// cleared when the page is left.

import {
  api, clearFieldErrors, el, flash, refuseUnlessAdmin, showFieldErrors, timeEl, whoami,
} from './common.js';

const form = document.getElementById('new-token');
const tbody = document.querySelector('#tokens tbody');
const box = document.getElementById('secret-box');
const secret = document.getElementById('secret');
const copied = document.getElementById('copied');
/** The tokens as last listed, by name; never a secret. */
let tokens = [];

/** The hosts a token covers: "every host", or its hosts and `label:x`. */
function scope(token) {
  const parts = [
    ...(token.hosts || []),
    ...(token.labels || []).map((label) => 'label:' + label),
  ];
  return parts.length ? parts.join(', ') : 'every host';
}

function row(token) {
  const revoke = el('button', {
    type: 'button', class: 'danger', text: 'Revoke', 'aria-label': `Revoke ${token.name}`,
  });
  revoke.addEventListener('click', () => revokeToken(token.name, revoke));
  const used = token.last_used_at
    ? timeEl(token.last_used_at)
    : el('span', { class: 'muted', text: 'never' });
  const covers = scope(token);
  return el('tr', { 'data-token': token.name },
    el('th', { text: token.name }),
    el('td', { text: token.role }),
    el('td', { class: covers === 'every host' ? 'muted' : null, text: covers }),
    el('td', { class: 'opt' }, timeEl(token.created_at)),
    el('td', { class: 'opt' }, used),
    el('td', {}, revoke),
  );
}

function show(list) {
  tokens = list;
  tbody.replaceChildren(...list.map(row));
  document.getElementById('no-tokens').hidden = list.length > 0;
}

async function load() {
  try {
    const answer = await api('/tokens/');
    show(answer.tokens);
  } catch (err) {
    flash(err.message);
  }
}

/** Shows `value`, the secret of the token `name`, this once. */
function showSecret(name, value) {
  document.getElementById('secret-name').textContent = name;
  secret.textContent = value;
  copied.textContent = '';
  box.dataset.token = name;
  box.hidden = false;
  box.scrollIntoView({ block: 'nearest' });
  box.focus();
}

/** Forgets the secret on screen, if one is. */
function clearSecret() {
  secret.textContent = '';
  copied.textContent = '';
  delete box.dataset.token;
  box.hidden = true;
}

document.getElementById('copy').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(secret.textContent);
    copied.textContent = 'Copied.';
  } catch {
    // No clipboard here (a page not on HTTPS or localhost) or refused:
    // the secret is selected for a copy by hand.
    const range = document.createRange();
    range.selectNodeContents(secret);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    copied.textContent = 'The browser would not copy it: it is selected, copy it with the keyboard.';
  }
});
document.getElementById('secret-done').addEventListener('click', clearSecret);
// Leaving the page (or putting it in the back-forward cache) forgets it.
window.addEventListener('pagehide', clearSecret);

/** Names separated by commas, as a list without blanks. */
function names(text) {
  return text.split(',').map((name) => name.trim()).filter(Boolean);
}

/** The request: empty lists are left out (the server refuses a null one). */
function body() {
  const request = {
    name: form.elements.namedItem('name').value.trim(),
    role: form.elements.namedItem('role').value,
  };
  const hosts = names(form.elements.namedItem('hosts').value);
  const labels = names(form.elements.namedItem('labels').value);
  if (hosts.length) request.hosts = hosts;
  if (labels.length) request.labels = labels;
  return request;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  clearSecret();
  flash('');
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const created = await api('/tokens/', { method: 'POST', body: body() });
    showSecret(created.name, created.secret);
    // The list grows from the answer, without the secret. (Asking the
    // server again could be refused on a server that took no token until
    // now, and the sign-in page would take the secret off the screen.)
    const token = {
      name: created.name,
      role: created.role,
      hosts: created.hosts || [],
      labels: created.labels || [],
      created_at: created.created_at,
      last_used_at: created.last_used_at || null,
    };
    show([...tokens.filter((t) => t.name !== token.name), token]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
    form.reset();
  } catch (err) {
    if (err.status === 400 || err.status === 422) showFieldErrors(form, err);
    else if (err.status === 409) {
      // The name is taken: said beside the name.
      showFieldErrors(form, { message: err.message, details: [{ field: 'name', message: err.message }] });
    } else flash(err.message);
  } finally {
    button.disabled = false;
  }
});

async function revokeToken(name, button) {
  if (!confirm(`Revoke the token ${name}? Every call that presents it is refused from now on; `
    + 'this cannot be undone.')) return;
  button.disabled = true;
  try {
    await api(`/tokens/${encodeURIComponent(name)}/`, { method: 'DELETE' });
    if (box.dataset.token === name) clearSecret();
    flash(`The token ${name} was revoked.`, 'info');
    await load();
  } catch (err) {
    flash(err.message);
    button.disabled = false;
  }
}

whoami().then((me) => {
  if (refuseUnlessAdmin(me)) return;
  if (me && me.auth === false) document.getElementById('open-server').hidden = false;
  load();
});
