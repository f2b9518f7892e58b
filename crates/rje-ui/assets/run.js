// One run: its command, status and counts, and a tile per host (a link
// to the host's job) whose colour follows the job live, from the run's
// WebSocket (WS /ws/runs/{id}/): a tile changes on each "job" message,
// the header on each "run" message, and the last "run" message ends the
// following. Cancel while it runs; Retry failed hosts once it ended with
// a host that did not succeed. "Show the output" follows the run again
// with ?output=true and shows every host's lines after its name, never
// more than MAX_LINES of them.

import {
  FINAL, OUTCOMES, ApiError, api, badge, el, flash, formatSeconds, liveSocket, may,
  mayChangeOwn, showLive, timeEl, whoami,
} from './common.js';
import { Style, lineElement, segments } from './terminal.js';

const MAX_LINES = 2000;
/** Lines waiting for the next frame: past this, the oldest go unbuilt. */
const MAX_QUEUED = 2 * MAX_LINES;
const MARKER = /^\[rje: (\d+) bytes of (stdout|stderr) dropped\]\n/;

const id = document.querySelector('[data-run-id]').dataset.runId;
const grid = document.getElementById('grid');
const showOutput = document.getElementById('show-output');
const outputBox = document.getElementById('output-box');
const output = document.getElementById('output');
const follow = document.getElementById('follow');
const note = document.getElementById('output-note');

/** The run as last read, its status and counts kept by the "run" messages. */
let run = null;
/** Who the token is (whoami()); until known, no action is offered. */
let me = null;
/** Each host's tile and what is known of its job, by host name. */
const hosts = new Map();
/** The socket followed now; a toggle of the output replaces it. */
let socket = null;
/** The last output seq shown of each job: a reconnect may send lines again. */
const lastSeq = new Map();
/** Each job's SGR state per stream, carried from line to line. */
const styles = new Map();
let queued = [];
let frame = null;
let hiddenLines = 0;

function isFinal(job) {
  return FINAL.has(job.status);
}

/** What a host's tile shows: its outcome once its job ended, else its status. */
function stateOf(job) {
  return job.outcome || job.status;
}

/** A tile for `host`, its job not known yet. */
function addTile(host) {
  const link = el('a', { class: 'tile', 'data-host': host },
    el('span', { class: 'tile-host', text: host }),
    el('span', { class: 'tile-state', text: '—' }),
    el('span', { class: 'tile-exit' }));
  grid.append(el('li', {}, link));
  const entry = { link, job: null };
  hosts.set(host, entry);
  return entry;
}

/**
 * What is known of `host`'s job becomes `job` ({id, status, outcome,
 * exit_code, signal, error, at}), unless it is older: a job that ended
 * does not start again, and a message older than what is shown is
 * skipped.
 */
function updateHost(host, job) {
  const entry = hosts.get(host) || addTile(host);
  const known = entry.job;
  if (known && known.id === job.id) {
    if (isFinal(known) && !isFinal(job)) return;
    if (known.at && job.at && new Date(job.at) < new Date(known.at)) return;
  }
  entry.job = job;
  const state = stateOf(job);
  const { link } = entry;
  link.className = 'tile o-' + state;
  link.dataset.state = state;
  link.dataset.jobId = job.id;
  link.href = '/ui/jobs/' + encodeURIComponent(job.id);
  link.querySelector('.tile-state').textContent = state;
  const exit = job.exit_code ?? (job.signal ? `signal ${job.signal}` : null);
  link.querySelector('.tile-exit').textContent = exit === null ? '' : `exit ${exit}`;
  link.title = `${host}: ${state}${job.error ? ` (${job.error})` : ''}. Open its job.`;
}

/** The tiles from a run as GET /runs/{id}/ answers it (one job per host). */
function showJobs(jobs) {
  for (const job of jobs || []) {
    updateHost(job.host || 'local', {
      id: job.id,
      status: job.status,
      outcome: job.outcome ?? null,
      exit_code: job.exit_code ?? null,
      signal: job.signal ?? null,
      error: job.error ?? null,
      at: job.modified_at ?? null,
    });
  }
}

function field(name, value) {
  if (value === undefined || value === null || value === '') return [];
  return [el('dt', { text: name }), el('dd', {}, value)];
}

/** The run's hosts: how many, and how they were chosen. */
function target() {
  const n = run.hosts.length;
  const count = `${n} host${n === 1 ? '' : 's'}`;
  if (run.labels && run.labels.length) {
    return `${count}: those labelled ${run.labels.join(' and ')}`;
  }
  return `${count}, by name`;
}

/** max_failures as asked: a count, a share, or none for no limit. */
function failuresTolerated() {
  const limit = run.max_failures;
  if (limit === null || limit === undefined) return 'no limit';
  if (typeof limit === 'string') return `${limit} of the hosts`;
  if (limit === 0) return 'none: the first failure skips the hosts not started yet';
  return `${limit} host${limit === 1 ? '' : 's'}`;
}

/** Seconds from the run's creation to its end, or to now while it runs. */
function runDuration() {
  const end = run.completed_at ? new Date(run.completed_at) : new Date();
  return formatSeconds(Math.max(0, (end - new Date(run.created_at)) / 1000));
}

/** Hosts that ended without succeeding: what Retry failed hosts runs again. */
function notSucceeded() {
  return OUTCOMES.filter((o) => o !== 'Success')
    .reduce((sum, outcome) => sum + (run.counts[outcome] || 0), 0);
}

function render() {
  document.title = `Run ${id.slice(0, 8)} · ${run.status} · rje`;
  document.getElementById('status').replaceWith(Object.assign(badge(run.status), { id: 'status' }));
  document.getElementById('command').textContent = run.command;
  for (const count of document.querySelectorAll('#counts [data-count]')) {
    const n = run.counts[count.dataset.count] || 0;
    count.textContent = n.toLocaleString();
    count.closest('.tally-item').classList.toggle('zero', n === 0);
  }
  const retryOf = run.retry_of
    ? el('a', { id: 'retry-of', href: '/ui/runs/' + encodeURIComponent(run.retry_of), title: run.retry_of },
      el('code', { text: run.retry_of.slice(0, 8) }))
    : null;
  document.getElementById('fields').replaceChildren(
    ...field('Id', el('code', { text: run.id })),
    ...field('Hosts', target()),
    ...field('Hosts at once', String(run.max_parallel)),
    ...field('Failures tolerated', failuresTolerated()),
    ...field('Retry of', retryOf),
    ...field('Created', timeEl(run.created_at)),
    ...field('Completed', run.completed_at && timeEl(run.completed_at)),
    ...field('Duration', runDuration()),
    ...field('Started by', run.submitted_by),
    ...field('Cancel', run.cancel_requested && !FINAL.has(run.status) ? 'requested' : null),
    ...field('Cancelled by', run.cancelled_by),
  );
  // Only what the token's role may do (the server refuses the rest anyway).
  document.getElementById('cancel').hidden = FINAL.has(run.status) || run.cancel_requested
    || !mayChangeOwn(me, run.submitted_by);
  document.getElementById('retry').hidden = !FINAL.has(run.status) || notSucceeded() === 0
    || !may(me, 'run');
}

async function refreshRun() {
  run = await api(`/runs/${id}/`);
  render();
  // A tile per host in the run's order, even before its job is known.
  for (const host of run.hosts) if (!hosts.has(host)) addTile(host);
  showJobs(run.jobs);
}

// ---- Output: every host's lines, after its name, bounded.

function showNote() {
  note.textContent = hiddenLines
    ? `${hiddenLines.toLocaleString()} earlier lines are not shown: a host's job page has all of its output.`
    : '';
  note.hidden = !hiddenLines;
}

function styleOf(jobId, stream) {
  if (!styles.has(jobId)) styles.set(jobId, { stdout: new Style(), stderr: new Style() });
  return styles.get(jobId)[stream] || styles.get(jobId).stdout;
}

function addOutput(message) {
  const jobId = message.job_id;
  if (message.seq) {
    if (message.seq <= (lastSeq.get(jobId) || 0)) return;
    lastSeq.set(jobId, message.seq);
  }
  let text = message.log || '';
  const host = message.host || 'local';
  const { stream } = message;
  if (message.dropped_before > 0) {
    text = text.replace(MARKER, '');
    queued.push({ gap: `⋯ ${host}: ${message.dropped_before.toLocaleString()} bytes of ${stream} dropped here ⋯` });
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) queued.push({ host, jobId, stream, line: line.replace(/\r$/, '') });
  // A tab in the background draws no frame: its queue stays bounded too.
  if (queued.length > MAX_QUEUED) {
    const excess = queued.length - MAX_QUEUED;
    queued.splice(0, excess);
    hiddenLines += excess;
  }
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = null;
  const batch = queued;
  queued = [];
  const skip = Math.max(0, batch.length - MAX_LINES);
  const fragment = document.createDocumentFragment();
  batch.forEach((item, i) => {
    if (item.gap) {
      if (i >= skip) fragment.append(el('div', { class: 'ln gap', text: item.gap }));
      return;
    }
    // Lines trimmed at once are only styled, never built.
    const parts = segments(item.line, styleOf(item.jobId, item.stream));
    if (i < skip) return;
    const line = lineElement(parts, item.stream);
    line.prepend(el('span', { class: 'ln-host', text: item.host }));
    fragment.append(line);
  });
  hiddenLines += skip;
  output.append(fragment);
  const excess = output.childElementCount - MAX_LINES;
  if (excess > 0) {
    const range = document.createRange();
    range.setStartBefore(output.firstChild);
    range.setEndAfter(output.children[excess - 1]);
    range.deleteContents();
    hiddenLines += excess;
  }
  showNote();
  if (follow.checked) output.scrollTop = output.scrollHeight;
}

output.addEventListener('scroll', () => {
  const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 24;
  if (follow.checked !== atBottom) follow.checked = atBottom;
});
follow.addEventListener('change', () => {
  if (follow.checked) output.scrollTop = output.scrollHeight;
});

// ---- Following the run.

function onMessage(message) {
  if (message.type === 'job') {
    updateHost(message.host || 'local', {
      id: message.job_id,
      status: message.status,
      outcome: message.outcome ?? null,
      exit_code: message.exit_code ?? null,
      signal: null,
      error: message.error ?? null,
      at: message.timestamp ?? null,
    });
    return undefined;
  }
  if (message.type === 'output') {
    addOutput(message);
    return undefined;
  }
  if (message.type === 'run') {
    const wasFinal = FINAL.has(run.status);
    run.status = message.status;
    run.counts = message.counts;
    if (message.completed_at) run.completed_at = message.completed_at;
    render();
    if (!FINAL.has(message.status)) return undefined;
    // The end: read once more for what the messages do not carry
    // (who cancelled, each job's signal), and stop following.
    if (!wasFinal) refreshRun().catch((err) => flash(err.message));
    return 'done';
  }
  return undefined;
}

/** Follows the run, with its output when asked; replaces the last socket. */
function followRun() {
  if (socket) socket.stop();
  const withOutput = showOutput.checked;
  const path = `/ws/runs/${id}/` + (withOutput ? '?output=true' : '');
  const mine = liveSocket(() => path, onMessage, (on) => {
    // A socket replaced meanwhile says nothing of the one followed now.
    if (socket === mine) showLive(on);
  });
  socket = mine;
}

showOutput.addEventListener('change', () => {
  outputBox.hidden = !showOutput.checked;
  // Not read yet: the first following asks for the output as the box says.
  if (!run) return;
  // A run that ended sends its states again, and whatever output it
  // replays, then closes: following it again is cheap.
  if (showOutput.checked || !FINAL.has(run.status)) followRun();
  else if (socket) socket.stop();
});

document.getElementById('cancel').addEventListener('click', async (event) => {
  if (!confirm('Cancel this run? Hosts not started yet will not start, and running '
    + 'commands are killed with their process groups.')) return;
  const button = event.currentTarget;
  button.disabled = true;
  try {
    run = await api(`/runs/${id}/cancel/`, { method: 'POST' });
    render();
    showJobs(run.jobs);
    flash(FINAL.has(run.status) ? 'The run is cancelled.' : 'Cancel requested.', 'info');
  } catch (err) {
    flash(err.message);
  } finally {
    button.disabled = false;
  }
});

// The server makes a new run of the hosts that did not succeed, linked
// to this one (retry_of), and the page opens it.
document.getElementById('retry').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const created = await api(`/runs/${id}/retry/`, { method: 'POST' });
    location.assign('/ui/runs/' + created.id);
  } catch (err) {
    flash(err.message);
    button.disabled = false;
  }
});

async function start() {
  try {
    await refreshRun();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      flash('There is no such run.');
      for (const section of document.querySelectorAll('main section')) section.hidden = true;
    } else {
      flash(err.message);
    }
    return;
  }
  // Even a run that ended is followed once: the server sends its states
  // and closes at once.
  followRun();
}

// A reload may keep the box ticked: the output shows as it says.
outputBox.hidden = !showOutput.checked;
whoami().then((answer) => {
  me = answer;
  if (run) render();
});
start();
