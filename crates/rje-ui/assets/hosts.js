// Hosts: their health as the server sees it, and a check on demand.

import { api, el, flash, formatSeconds, may, timeEl, whoami } from './common.js';

const tbody = document.querySelector('#hosts tbody');

function health(host) {
  const h = host.health;
  const state = el('span', { class: 'health h-' + h.state, text: h.state });
  const failures = h.connect_failures ? ` · ${h.connect_failures} failed connects` : '';
  return el('span', {}, state, failures);
}

function address(host) {
  if (host.kind === 'local') return 'this machine';
  return `${host.user ? host.user + '@' : ''}${host.address}${host.port ? ':' + host.port : ''}`;
}

/** A host's row; `check`: whether the token may check hosts (run or admin). */
function row(host, check) {
  const result = el('span', { class: 'check-result', 'aria-live': 'polite' });
  const button = el('button', {
    type: 'button', text: 'Check', 'aria-label': `Check ${host.name}`, hidden: !check,
  });
  button.addEventListener('click', async () => {
    button.disabled = true;
    result.textContent = 'checking…';
    result.className = 'check-result';
    try {
      const report = await api(`/hosts/${encodeURIComponent(host.name)}/check/`, { method: 'POST' });
      if (report.ok) {
        result.textContent = `ok in ${formatSeconds(report.latency_ms / 1000)}`;
        result.classList.add('ok');
      } else {
        result.textContent = `failed at ${report.stage}: ${report.error}`;
        result.classList.add('bad');
      }
    } catch (err) {
      result.textContent = err.message;
      result.classList.add('bad');
    } finally {
      button.disabled = false;
    }
  });
  const h = host.health;
  const error = h.last_error
    ? el('span', {}, h.last_error, ' ', el('small', {}, timeEl(h.last_error_at)))
    : el('span', { class: 'muted', text: '—' });
  return el('tr', { 'data-host': host.name },
    el('th', {}, host.name,
      host.default ? el('small', { class: 'muted', text: ' default' }) : null,
      host.durable ? el('small', { class: 'muted', text: ' durable', title: 'jobs outlive the worker that started them' }) : null),
    el('td', {}, health(host)),
    el('td', { class: 'opt', text: address(host) }),
    el('td', { class: 'opt num', text: String(h.jobs_running) }),
    el('td', { class: 'opt' }, error),
    el('td', {}, button, ' ', result),
  );
}

async function load() {
  try {
    const [{ hosts }, me] = await Promise.all([api('/hosts/'), whoami()]);
    const check = may(me, 'run');
    tbody.replaceChildren(...hosts.map((host) => row(host, check)));
  } catch (err) {
    flash(err.message);
  }
}

load();
