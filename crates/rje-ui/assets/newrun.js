// The form that starts a run: a command, where (hosts picked by name, or
// the labels every chosen host must carry, both from GET /hosts/), and
// the run's controls. The server judges every field and its errors are
// shown beside the fields they name; on success the run's page opens.

import {
  api, clearFieldErrors, el, flash, may, showFieldErrors, whoami,
} from './common.js';

const form = document.getElementById('new-run');
const hostBox = document.getElementById('run-hosts');
const labelBox = document.getElementById('run-labels');
const filter = document.getElementById('hosts-filter');
/** The hosts as GET /hosts/ lists them (those the token covers). */
let known = [];

function targetIs() {
  return document.getElementById('target-labels').checked ? 'labels' : 'hosts';
}

function checked(box) {
  return [...box.querySelectorAll('input[type=checkbox]:checked')].map((input) => input.value);
}

/** The hosts carrying every one of `labels`, as the server resolves them. */
function carryingAll(labels) {
  return known.filter((host) => labels.every((label) => (host.labels || []).includes(label)));
}

/** Says what the target comes to, under the picker in use. */
function showTarget() {
  const byLabels = targetIs() === 'labels';
  document.getElementById('pick-hosts').hidden = byLabels;
  document.getElementById('pick-labels').hidden = !byLabels;
  const picked = checked(hostBox);
  document.getElementById('hosts-picked').textContent = picked.length
    ? `${picked.length} of ${known.length} host${known.length === 1 ? '' : 's'} picked.`
    : 'No host picked yet.';
  const labels = checked(labelBox);
  const match = document.getElementById('labels-match');
  if (!labels.length) {
    match.textContent = 'Pick one label or more.';
  } else {
    const hosts = carryingAll(labels).map((host) => host.name);
    match.textContent = hosts.length
      ? `${hosts.length} host${hosts.length === 1 ? '' : 's'}: ${hosts.join(', ')}.`
      : 'No host carries all of them.';
  }
}

function choice(name, value, text, extra) {
  return el('label', { class: 'check choice', 'data-value': value },
    el('input', { type: 'checkbox', name, value }), ' ', text,
    extra ? el('small', { class: 'muted', text: ' ' + extra }) : null);
}

async function fillHosts() {
  let answer;
  try {
    answer = await api('/hosts/');
  } catch (err) {
    flash(err.message);
    return;
  }
  known = answer.hosts;
  hostBox.replaceChildren(...known.map((host) => {
    const name = host.kind === 'local' ? `${host.name} (this machine)` : host.name;
    const labels = host.labels && host.labels.length ? host.labels.join(', ') : null;
    return choice('hosts', host.name, name, labels);
  }));
  // Every label, with how many hosts carry it.
  const carriers = new Map();
  for (const host of known) {
    for (const label of host.labels || []) carriers.set(label, (carriers.get(label) || 0) + 1);
  }
  const labels = [...carriers.keys()].sort();
  labelBox.replaceChildren(...labels.map((label) => {
    const n = carriers.get(label);
    return choice('labels', label, label, `${n} host${n === 1 ? '' : 's'}`);
  }));
  const byLabels = document.getElementById('target-labels');
  byLabels.disabled = labels.length === 0;
  if (!labels.length) {
    byLabels.closest('label').title = 'No host carries a label (set in the hosts file).';
  }
  showTarget();
}

form.addEventListener('change', showTarget);

filter.addEventListener('input', () => {
  const needle = filter.value.trim().toLowerCase();
  for (const label of hostBox.children) {
    label.hidden = Boolean(needle) && !label.textContent.toLowerCase().includes(needle);
  }
});
document.getElementById('hosts-all').addEventListener('click', () => {
  for (const label of hostBox.children) {
    if (!label.hidden) label.querySelector('input').checked = true;
  }
  showTarget();
});
document.getElementById('hosts-none').addEventListener('click', () => {
  for (const input of hostBox.querySelectorAll('input')) input.checked = false;
  showTarget();
});

const stopFirst = document.getElementById('run-stop-on-first-failure');
const maxFailures = document.getElementById('run-max-failures');
stopFirst.addEventListener('change', () => { maxFailures.disabled = stopFirst.checked; });

/** A number field's value as typed: a number when it is one, else the text. */
function typed(name) {
  const text = form.elements.namedItem(name).value.trim();
  if (text === '') return undefined;
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

/** The request: values sent as typed, so that the server's rule is the one seen. */
function body() {
  const request = {
    command: form.elements.namedItem('command').value,
    priority: form.elements.namedItem('priority').value,
  };
  // The picker in use names the target; an empty one is the server's to refuse.
  if (targetIs() === 'labels') request.labels = checked(labelBox);
  else request.hosts = checked(hostBox);
  for (const name of ['max_parallel', 'timeout', 'max_retries']) {
    const value = typed(name);
    if (value !== undefined) request[name] = value;
  }
  if (stopFirst.checked) {
    request.stop_on_first_failure = true;
  } else {
    // A count or a share ("10%"): the server judges either.
    const limit = typed('max_failures');
    if (limit !== undefined) request.max_failures = limit;
  }
  return request;
}

let inFlight = false;

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  // The button is disabled too; Enter in a field must not start two runs.
  if (inFlight) return;
  inFlight = true;
  clearFieldErrors(form);
  flash('');
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const run = await api('/runs/', { method: 'POST', body: body() });
    location.assign('/ui/runs/' + run.id);
  } catch (err) {
    if (err.status === 400 || err.status === 422) {
      showFieldErrors(form, err);
      // A list of checkboxes is marked as a whole.
      for (const [slot, box] of [['hosts', hostBox], ['labels', labelBox]]) {
        if (form.querySelector(`[data-error-for="${slot}"]`).textContent) {
          box.setAttribute('aria-invalid', 'true');
        }
      }
    } else flash(err.message);
  } finally {
    inFlight = false;
    button.disabled = false;
  }
});

// A token whose role is read may not start runs: the page says so
// instead of offering a form the server would refuse.
whoami().then((me) => {
  if (!me || may(me, 'run')) {
    fillHosts();
    return;
  }
  const note = document.getElementById('cannot-start');
  const who = me.name ? `The token ${me.name}` : 'This token';
  note.textContent = `${who} may not start runs: its role is ${me.role}, `
    + 'and starting a run needs the run or admin role.';
  note.hidden = false;
  form.hidden = true;
});
