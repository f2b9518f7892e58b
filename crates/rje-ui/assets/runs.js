// The runs: newest first, a page at a time (the offset kept in the
// address, so the back button works), each with its status and how many
// of its hosts ended each way. Read again when jobs change state (the
// all-jobs event stream, at most once a second), as the job list is.

import {
  OUTCOMES, api, badge, el, flash, formatSeconds, liveSocket, showLive, throttle, timeEl,
} from './common.js';

const tbody = document.querySelector('#runs tbody');
const LIMIT = 25;

function offset() {
  const value = parseInt(new URLSearchParams(location.search).get('offset') || '0', 10);
  return Math.max(0, value || 0);
}

function navigate(to) {
  history.pushState(null, '', '/ui/runs' + (to ? '?offset=' + to : ''));
  load();
}

/** The hosts: how many, and the labels that chose them. */
function hosts(run) {
  const count = `${run.hosts.length} host${run.hosts.length === 1 ? '' : 's'}`;
  const title = run.hosts.join(', ');
  const labels = run.labels && run.labels.length
    ? el('small', {
      class: 'muted', text: ` · label${run.labels.length > 1 ? 's' : ''} ${run.labels.join(', ')}`,
    })
    : null;
  return el('td', { title }, count, labels);
}

/**
 * "3 Success · 1 Failed · 2 Running": the states with at least one host,
 * outcomes first.
 */
function countsSummary(counts) {
  const parts = [];
  for (const state of [...OUTCOMES, 'Running', 'Queued']) {
    const n = counts[state] || 0;
    if (!n) continue;
    parts.push(el('span', { class: 'tally-item', 'data-state': state },
      el('span', { class: 'dot o-' + state }), `${n} ${state}`));
  }
  return parts.length ? parts : [el('span', { class: 'muted', text: '—' })];
}

function row(run) {
  const link = el('a', { href: '/ui/runs/' + run.id, title: run.command, class: 'cmd' });
  link.textContent = run.command.length > 200 ? run.command.slice(0, 200) + '…' : run.command;
  const retry = run.retry_of
    ? el('small', { class: 'muted', text: 'retry of ' + run.retry_of.slice(0, 8) })
    : null;
  return el('tr', { 'data-id': run.id },
    el('td', {}, badge(run.status)),
    el('td', { class: 'cmd-cell' }, link, retry),
    hosts(run),
    el('td', {}, el('span', { class: 'tally' }, ...countsSummary(run.counts))),
    el('td', {}, timeEl(run.created_at)),
    el('td', { class: 'opt num', text: formatSeconds(run.duration) }),
    el('td', { class: 'opt' },
      run.submitted_by || el('span', { class: 'muted', text: '—' }),
      run.cancelled_by
        ? el('small', { class: 'muted', text: ` · cancelled by ${run.cancelled_by}` })
        : null),
  );
}

let loading = null;

async function load() {
  const from = offset();
  const mine = (loading = Symbol('load'));
  try {
    const page = await api(`/runs/?limit=${LIMIT}&offset=${from}`);
    if (mine !== loading) return; // a newer reading is on its way
    flash('');
    tbody.replaceChildren(...page.runs.map(row));
    document.getElementById('empty').hidden = page.runs.length > 0;
    const shown = page.runs.length;
    const total = page.total_count;
    document.getElementById('range').textContent = shown
      ? `${from + 1}–${from + shown} of ${total.toLocaleString()}`
      : `0 of ${total.toLocaleString()}`;
    document.getElementById('prev').disabled = from === 0;
    document.getElementById('next').disabled = from + shown >= total;
  } catch (err) {
    if (mine === loading) flash(err.message);
  }
}

document.getElementById('prev').addEventListener('click', () => navigate(Math.max(0, offset() - LIMIT)));
document.getElementById('next').addEventListener('click', () => navigate(offset() + LIMIT));
window.addEventListener('popstate', load);

// A run is its jobs: any job's change may be a run's (a new run queues
// its jobs, each host's job ends). Read again at most once a second.
const refresh = throttle(load, 1000);
liveSocket(() => '/ws/jobs/', (message) => {
  if (message.type === 'status' || message.type === 'gap' || message.type === 'ready') refresh();
}, showLive);

load();
