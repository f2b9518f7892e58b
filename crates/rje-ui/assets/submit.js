// The submit form: the server judges every field, and its errors are
// shown beside the fields they name. A submission carries an
// Idempotency-Key, so that sending the same form again (a double click,
// a retry after the network failed) makes the job once.

import {
  ApiError, api, clearFieldErrors, el, flash, may, showFieldErrors, whoami,
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
  if (form.elements.retry_on_failure.checked) request.retry_on_failure = true;
  return request;
}

/** A random key: randomUUID needs HTTPS or localhost, getRandomValues (32 hex digits) does not. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * This form's Idempotency-Key: the same for every submit until one
 * succeeds, so that the server makes the job once however often the form
 * reaches it (a double click, Submit again after the network failed).
 */
let key = null;
let inFlight = false;

/** The server's 409 for a key that already made a job from another body. */
function keyUsed(err) {
  return err.status === 409 && err.details.some((d) => d.field === 'Idempotency-Key');
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  // The button is disabled too; Enter in a field must not send twice either.
  if (inFlight) return;
  inFlight = true;
  clearFieldErrors(form);
  flash('');
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  key = key || newKey();
  try {
    const job = await api('/jobs/', {
      method: 'POST', body: body(), headers: { 'Idempotency-Key': key },
    });
    // Done: the next submission, even of the same form, is a new job.
    key = null;
    location.assign('/ui/jobs/' + job.id);
  } catch (err) {
    if (err.status === 400 || err.status === 422) showFieldErrors(form, err);
    else if (keyUsed(err)) {
      // The form changed after a submit whose answer was lost but whose
      // job was made: said, and the next submit is a new job.
      key = null;
      flash('An earlier submit of this form made a job (its answer was lost): see the Jobs '
        + 'page. Submit again to make this one as well.');
    } else if (!(err instanceof ApiError)) {
      flash('The server could not be reached, and the job may or may not have been made. '
        + 'Submitting again is safe: the server makes it once.');
    } else flash(err.message);
  } finally {
    inFlight = false;
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
