// The submit form: the server judges every field, and its errors are
// shown beside the fields they name.

import {
  api, clearFieldErrors, el, flash, may, showFieldErrors, whoami,
} from './common.js';

const form = document.getElementById('submit');
const envRows = document.getElementById('env');
const rowTemplate = document.getElementById('env-row');

function addEnvRow(name = '', value = '') {
  const row = rowTemplate.content.firstElementChild.cloneNode(true);
  row.querySelector('.env-name').value = name;
  row.querySelector('.env-value').value = value;
  row.querySelector('.remove').addEventListener('click', () => row.remove());
  envRows.append(row);
  return row;
}

document.getElementById('add-env').addEventListener('click', () => {
  addEnvRow().querySelector('.env-name').focus();
});

async function fillHosts() {
  const select = form.elements.host;
  try {
    const { hosts } = await api('/hosts/');
    for (const host of hosts) {
      const label = host.kind === 'local' ? `${host.name} (this machine)` : host.name;
      select.append(el('option', { value: host.name, text: label, selected: host.default }));
    }
  } catch (err) {
    flash(err.message);
  }
}

function body() {
  const request = {
    command: form.elements.command.value,
    priority: form.elements.priority.value,
  };
  const timeout = form.elements.timeout.value.trim();
  // Sent as typed, so that the server's rule is the one the user sees.
  if (timeout !== '') request.timeout = /^-?\d+$/.test(timeout) ? Number(timeout) : timeout;
  if (form.elements.host.value) request.host = form.elements.host.value;
  const env = {};
  for (const row of envRows.children) {
    const name = row.querySelector('.env-name').value.trim();
    if (name) env[name] = row.querySelector('.env-value').value;
  }
  const parameters = {};
  if (Object.keys(env).length) parameters.env = env;
  const cwd = form.elements.cwd.value.trim();
  if (cwd) parameters.cwd = cwd;
  if (Object.keys(parameters).length) request.parameters = parameters;
  return request;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  flash('');
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const job = await api('/jobs/', { method: 'POST', body: body() });
    location.assign('/ui/jobs/' + job.id);
  } catch (err) {
    if (err.status === 400 || err.status === 422) showFieldErrors(form, err);
    else flash(err.message);
  } finally {
    button.disabled = false;
  }
});

// A token whose role is read may not submit: the page says so instead of
// offering a form the server would refuse.
whoami().then((me) => {
  if (!me || may(me, 'run')) return;
  const note = document.getElementById('cannot-submit');
  const who = me.name ? `The token ${me.name}` : 'This token';
  note.textContent = `${who} may not submit jobs: its role is ${me.role}, `
    + 'and submitting needs the run or admin role.';
  note.hidden = false;
  form.hidden = true;
});

fillHosts();
