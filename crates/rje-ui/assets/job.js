// One job: its fields, its output live, and what can be done with it.
// The page never holds more than MAX_LINES lines of output: a long
// output shows its end and offers the whole as a download. Where the job
// comes from (the job it runs again, its schedule) and the jobs that run
// it again are links, and so is its run (one command on many hosts)
// with how the job ended as the run counts it; a failure that runs the job again by itself is
// announced with a link to the new job, and the page stays on this one,
// whose output explains the failure.

import {
  FINAL, ApiError, api, badge, download, duration, el, flash, formatBytes, liveSocket,
  may, mayChange, showLive, timeEl, whoami,
} from './common.js';
import { Style, lineElement, segments } from './terminal.js';

const MAX_LINES = 5000;
/** Past this much stored output, the page starts from the end. */
const TAIL_FROM_BYTES = 256 * 1024;
/** The end of a long output: at most this many chunks (and 1 MiB). */
const TAIL_CHUNKS = 1000;
const MARKER = /^\[rje: (\d+) bytes of (stdout|stderr) dropped\]\n/;

const id = document.querySelector('[data-job-id]').dataset.jobId;
const output = document.getElementById('output');
const follow = document.getElementById('follow');
const note = document.getElementById('output-note');
const styles = { stdout: new Style(), stderr: new Style() };
let job = null;
/** Who the token is (whoami()); until known, no action is offered. */
let me = null;
let lastSeq = 0;
let hiddenLines = 0;
let startedAtEnd = false;
let queued = [];
let frame = null;
/** The name of the job's schedule, once asked; the id until then. */
let scheduleName = null;
/** The job that runs this one again after its failure, once found. */
let retrying = null;
let retryAsked = false;

function showNote() {
  const parts = [];
  if (startedAtEnd) {
    const total = (job.stdout_bytes || 0) + (job.stderr_bytes || 0);
    parts.push(`The output is long (${formatBytes(total)}): only its end is shown.`);
  } else if (hiddenLines) {
    parts.push(`${hiddenLines.toLocaleString()} earlier lines are not shown.`);
  }
  if (parts.length) parts.push('Download stdout or stderr for the whole.');
  note.textContent = parts.join(' ');
  note.hidden = parts.length === 0;
}

/** Queues a chunk; lines reach the page once per animation frame. */
function addChunk(stream, text, droppedBefore) {
  if (droppedBefore > 0) {
    text = text.replace(MARKER, '');
    queued.push({ gap: `⋯ ${droppedBefore.toLocaleString()} bytes of ${stream} dropped here (over the output cap) ⋯` });
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) queued.push({ stream, line: line.replace(/\r$/, '') });
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = null;
  const batch = queued;
  queued = [];
  // Lines that would be trimmed at once are only styled, never built.
  const skip = Math.max(0, batch.length - MAX_LINES);
  const fragment = document.createDocumentFragment();
  batch.forEach((item, i) => {
    if (item.gap) {
      if (i >= skip) fragment.append(el('div', { class: 'ln gap', text: item.gap }));
      return;
    }
    const parts = segments(item.line, styles[item.stream]);
    if (i >= skip) fragment.append(lineElement(parts, item.stream));
  });
  hiddenLines += skip;
  output.append(fragment);
  const excess = output.childElementCount - MAX_LINES;
  if (excess > 0) {
    // One range removal, not one per line.
    const range = document.createRange();
    range.setStartBefore(output.firstChild);
    range.setEndAfter(output.children[excess - 1]);
    range.deleteContents();
    hiddenLines += excess;
  }
  showNote();
  if (follow.checked) output.scrollTop = output.scrollHeight;
}

// Scrolling up pauses following; back at the bottom, it resumes.
output.addEventListener('scroll', () => {
  const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 24;
  if (follow.checked !== atBottom) follow.checked = atBottom;
});
follow.addEventListener('change', () => {
  if (follow.checked) output.scrollTop = output.scrollHeight;
});
for (const stream of ['stdout', 'stderr']) {
  document.getElementById('show-' + stream).addEventListener('change', (event) => {
    output.classList.toggle('hide-' + stream, !event.target.checked);
  });
  document.getElementById('dl-' + stream).addEventListener('click', () => {
    download(`/jobs/${id}/logs/?stream=${stream}`, `${id}-${stream}.txt`)
      .catch((err) => flash(err.message));
  });
}

function field(name, value) {
  if (value === undefined || value === null || value === '') return [];
  return [el('dt', { text: name }), el('dd', {}, value)];
}

/** A link to the job `jobId`'s page, by its short id. */
function jobLink(jobId, attrs = {}) {
  return el('a', { ...attrs, href: '/ui/jobs/' + encodeURIComponent(jobId), title: jobId },
    el('code', { text: jobId.slice(0, 8) }));
}

/** The job this one runs again, and whether a failure or a person asked. */
function retryOf() {
  const how = job.retry_number > 0
    ? ` (automatic retry ${job.retry_number} of at most ${job.max_retries})`
    : ' (run again by hand)';
  return el('span', {}, jobLink(job.retry_of, { id: 'retry-of' }), how);
}

/** What a failure of this job does: its chain has max_retries in all. */
function onFailure() {
  const left = job.max_retries - job.retry_number;
  if (left <= 0) return 'no retry left: it stays failed';
  return `runs again by itself, ${left} more time${left > 1 ? 's' : ''} at most`;
}

function retries() {
  return el('span', { id: 'retries', class: 'job-links' }, ...job.retries.map((r) => jobLink(r)));
}

/** The run this job is one host's part of: its page, where every host shows. */
function runLink() {
  return el('a', { id: 'run-link', href: '/ui/runs/' + encodeURIComponent(job.run), title: job.run },
    el('code', { text: job.run.slice(0, 8) }));
}

/** How the job ended, as its run counts it (Unreachable, TimedOut…). */
function outcome() {
  return el('span', { id: 'outcome', class: 'outcome o-' + job.outcome },
    el('span', { class: 'dot o-' + job.outcome }), job.outcome);
}

/** The schedule (its row on the Schedules page) and the list of its jobs. */
function schedule() {
  const name = scheduleName ? scheduleName : el('code', { text: job.schedule.slice(0, 8) });
  return el('span', {},
    el('a', { id: 'schedule-link', href: '/ui/schedules#schedule-' + job.schedule }, name),
    ' · ',
    el('a', { href: '/ui/?schedule=' + encodeURIComponent(job.schedule), text: 'its jobs' }));
}

/** Names the job's schedule; a deleted one keeps its id. */
async function nameSchedule() {
  try {
    scheduleName = (await api(`/schedules/${job.schedule}/`)).name;
    render();
  } catch { /* deleted, or not in this token's view: the id stays */ }
}

/**
 * The job that runs this one again after its failure: the first of its
 * retries, written with the failure itself, when its retry_number says a
 * failure made it (a run again by hand starts at 0).
 */
async function findRetry() {
  const first = (job.retries || [])[0];
  if (retryAsked || job.status !== 'Failed' || !job.retry_on_failure || !first) return;
  retryAsked = true;
  try {
    const next = await api(`/jobs/${first}/?output=none`);
    if (next.retry_of === id && next.retry_number > 0) {
      retrying = next;
      render();
    }
  } catch { /* deleted meanwhile: the Retries field still names it */ }
}

function render() {
  document.title = `Job ${id.slice(0, 8)} · ${job.status} · rje`;
  document.getElementById('status').replaceWith(Object.assign(badge(job.status), { id: 'status' }));
  document.getElementById('command').textContent = job.command;
  const exit = job.exit_code ?? null;
  const params = job.parameters && Object.keys(job.parameters).length
    ? el('pre', { class: 'params', text: JSON.stringify(job.parameters, null, 2) })
    : null;
  document.getElementById('fields').replaceChildren(
    ...field('Id', el('code', { text: job.id })),
    ...field('Priority', job.priority),
    ...field('Host', job.host || 'local'),
    ...field('Timeout', `${job.timeout} s`),
    ...field('Created', timeEl(job.created_at)),
    ...field('Submitted by', job.submitted_by),
    ...field('Run', job.run && runLink()),
    ...field('Outcome', job.outcome && outcome()),
    ...field('Schedule', job.schedule && schedule()),
    ...field('Scheduled for', job.scheduled_for && timeEl(job.scheduled_for)),
    ...field('Retry of', job.retry_of && retryOf()),
    ...field('Retries', (job.retries || []).length ? retries() : null),
    ...field('On failure', job.retry_on_failure ? onFailure() : null),
    ...field('Started', job.started_at && timeEl(job.started_at)),
    ...field('Completed', job.completed_at && timeEl(job.completed_at)),
    ...field('Cancelled by', job.cancelled_by),
    ...field('Duration', job.started_at && duration(job)),
    ...field('Exit code', exit === null ? null : String(exit)),
    ...field('Signal', job.signal && String(job.signal)),
    ...field('Error', job.error),
    ...field('Attempts', `${job.attempts} of ${job.max_retries + 1}`),
    ...field('Taken up again', job.reattached ? `${job.reattached} time${job.reattached > 1 ? 's' : ''} after its worker was lost` : null),
    ...field('Process', job.remote_process_id),
    ...field('Cancel', job.cancel_requested && !FINAL.has(job.status) ? 'requested' : null),
    ...field('Output', `${formatBytes(job.stdout_bytes || 0)} stdout, ${formatBytes(job.stderr_bytes || 0)} stderr`),
    ...field('Parameters', params),
  );
  // Only what the token's role may do (the server refuses the rest anyway):
  // cancel its own jobs from run up (any from admin), run a finished job
  // again from run, delete as admin.
  document.getElementById('cancel').hidden = FINAL.has(job.status) || !mayChange(me, job);
  document.getElementById('delete').hidden = job.status === 'Running' || !may(me, 'admin');
  document.getElementById('rerun').hidden = !FINAL.has(job.status) || !may(me, 'run');
  const note = document.getElementById('retrying');
  if (retrying) {
    note.replaceChildren('Failed: retrying as ', jobLink(retrying.id, { id: 'retrying-link' }), '.');
  }
  note.hidden = !retrying;
}

async function refreshJob() {
  const first = job === null;
  job = await api(`/jobs/${id}/?output=none`);
  render();
  if (first && job.schedule) nameSchedule();
  findRetry();
}

async function start() {
  try {
    await refreshJob();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      flash('There is no such job: it may have been deleted.');
      document.querySelector('.output').hidden = true;
    } else {
      flash(err.message);
    }
    return;
  }
  if ((job.stdout_bytes || 0) + (job.stderr_bytes || 0) > TAIL_FROM_BYTES) {
    const page = await api(`/jobs/${id}/logs/?last=${TAIL_CHUNKS}`);
    startedAtEnd = page.chunks.length > 0 && page.chunks[0].seq > 1;
    for (const chunk of page.chunks) addChunk(chunk.stream, chunk.log, chunk.dropped_before || 0);
    lastSeq = page.next_since;
    showNote();
  }
  liveSocket(() => `/ws/jobs/${id}/?since=${lastSeq}`, onMessage, showLive);
}

function onMessage(message) {
  if (message.type === 'output') {
    if (message.seq && message.seq <= lastSeq) return;
    if (message.seq) lastSeq = message.seq;
    addChunk(message.stream, message.log, message.dropped_before || 0);
    return;
  }
  if (message.type === 'status') {
    const finished = FINAL.has(message.status);
    if (job && message.status !== job.status) {
      job.status = message.status;
      render();
    }
    refreshJob().catch((err) => flash(err.message));
    if (finished) return 'done';
  }
}

document.getElementById('cancel').addEventListener('click', async () => {
  if (!confirm('Cancel this job? A running command is killed with its whole process group.')) return;
  try {
    await api(`/jobs/${id}/cancel/`, { method: 'POST' });
    flash('Cancel requested.', 'info');
    await refreshJob();
  } catch (err) { flash(err.message); }
});

document.getElementById('delete').addEventListener('click', async () => {
  if (!confirm('Delete this job and its output? This cannot be undone.')) return;
  try {
    await api(`/jobs/${id}/`, { method: 'DELETE' });
    location.assign('/ui/');
  } catch (err) { flash(err.message); }
});

// The server makes the new job from this one and links the two (retry_of).
document.getElementById('rerun').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const created = await api(`/jobs/${id}/retry/`, { method: 'POST' });
    location.assign('/ui/jobs/' + created.id);
  } catch (err) {
    flash(err.message);
    button.disabled = false;
  }
});

whoami().then((answer) => {
  me = answer;
  if (job) render();
});
start();
