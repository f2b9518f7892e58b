// The job list: filters and paging kept in the address (so a view can be
// shared and the back button works), one page of jobs read from the
// server at a time, and live updates from the all-jobs event stream.
// Pages follow the server's `next` cursor, which costs the same at any
// depth; the cursors of the pages before ride in the history entry, for
// Previous. An old address with ?offset= still works.
// ?schedule=ID (the Schedules page links it) shows one schedule's jobs.

import {
  STATUSES, api, badge, duration, el, flash, liveSocket, showLive, throttle, timeEl,
} from './common.js';

const form = document.getElementById('filters');
const tbody = document.querySelector('#jobs tbody');
/** The view's filters; `schedule` has no field, only the address and a note. */
const FILTERS = ['search', 'status', 'priority', 'host', 'ordering', 'limit', 'schedule'];
const DEFAULTS = { ordering: '-created_at', limit: '25' };

function current() {
  const params = new URLSearchParams(location.search);
  const view = {};
  for (const name of FILTERS) view[name] = params.get(name) || DEFAULTS[name] || '';
  view.offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  view.cursor = params.get('cursor') || '';
  // Where the cursor's page starts, for the range shown.
  view.at = Math.max(0, parseInt(params.get('at') || '0', 10) || 0);
  return view;
}

/** The first page of a view: what a change of filters goes back to. */
const FIRST = { offset: 0, cursor: '', at: 0 };

/** `trail`: the places of the pages before this one, for Previous. */
function navigate(view, replace = false, trail = []) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    if (view[name] && view[name] !== DEFAULTS[name]) params.set(name, view[name]);
  }
  if (view.cursor) {
    params.set('cursor', view.cursor);
    params.set('at', view.at);
  } else if (view.offset) {
    params.set('offset', view.offset);
  }
  const url = '/ui/' + (params.toString() ? '?' + params : '');
  if (replace) history.replaceState({ trail }, '', url);
  else history.pushState({ trail }, '', url);
  load();
}

function fillForm(view) {
  for (const name of FILTERS) {
    const field = form.elements[name];
    if (field && document.activeElement !== field) field.value = view[name];
  }
  for (const link of document.querySelectorAll('#counts a')) {
    const on = link.dataset.status === view.status;
    if (on) link.setAttribute('aria-current', 'true');
    else link.removeAttribute('aria-current');
  }
  showSchedule(view.schedule);
}

/** Schedules' names by id, asked once each. */
const scheduleNames = new Map();

/** Says that the list is one schedule's jobs, with a way back to all. */
function showSchedule(scheduleId) {
  const note = document.getElementById('schedule-filter');
  note.hidden = !scheduleId;
  if (!scheduleId) return;
  const every = el('a', { href: '/ui/', text: 'Show every job' });
  every.addEventListener('click', (event) => {
    event.preventDefault();
    navigate({ ...current(), ...FIRST, schedule: '' });
  });
  const name = scheduleNames.get(scheduleId);
  const link = el('a', { href: '/ui/schedules#schedule-' + scheduleId },
    name || el('code', { text: scheduleId.slice(0, 8) }));
  note.replaceChildren('The jobs of the schedule ', link,
    ' (the counts by status are of every job). ', every);
  if (!scheduleNames.has(scheduleId)) {
    scheduleNames.set(scheduleId, null);
    api(`/schedules/${encodeURIComponent(scheduleId)}/`).then((schedule) => {
      scheduleNames.set(scheduleId, schedule.name);
      if (current().schedule === scheduleId) showSchedule(scheduleId);
    }, () => { /* deleted: its id says which */ });
  }
}

/** Who submitted the job, and who cancelled it when someone did. */
function submitter(job) {
  const by = job.submitted_by
    ? el('span', { text: job.submitted_by })
    : el('span', { class: 'muted', text: '—' });
  const cancelled = job.cancelled_by
    ? el('small', { class: 'muted', text: ` · cancelled by ${job.cancelled_by}` })
    : null;
  return el('td', { class: 'opt' }, by, cancelled);
}

function row(job) {
  const link = el('a', { href: '/ui/jobs/' + job.id, title: job.command, class: 'cmd' });
  link.textContent = job.command.length > 200 ? job.command.slice(0, 200) + '…' : job.command;
  const exit = job.exit_code ?? (job.signal ? 'sig ' + job.signal : '');
  return el('tr', { 'data-id': job.id },
    el('td', {}, badge(job.status)),
    el('td', { class: 'cmd-cell' }, link),
    el('td', { class: 'opt', text: job.host || 'local' }),
    el('td', { class: 'opt', text: job.priority }),
    el('td', {}, timeEl(job.created_at)),
    el('td', { class: 'opt num', text: duration(job) }),
    el('td', { class: 'opt num', text: String(exit) }),
    submitter(job),
  );
}

let loading = null;
/** The `next` of the page on screen, and how many jobs it showed. */
let nextCursor = null;
let shownOnPage = 0;

async function load() {
  const view = current();
  fillForm(view);
  const query = new URLSearchParams({ output: 'none', limit: view.limit });
  if (view.cursor) query.set('cursor', view.cursor);
  else if (view.offset) query.set('offset', view.offset);
  // A cursor carries its own ordering (an address may hold one alone).
  const named = view.cursor ? ['search', 'status', 'priority', 'host', 'schedule']
    : ['search', 'status', 'priority', 'host', 'ordering', 'schedule'];
  for (const name of named) {
    if (view[name]) query.set(name, view[name]);
  }
  // Until this view's page is here, Next has no page to go to: the cursor
  // on hand belongs to the view before.
  nextCursor = null;
  document.getElementById('next').disabled = true;
  const mine = (loading = Symbol('load'));
  // The counts come apart: the page of jobs need not wait for them.
  api('/jobs/stats/').then((stats) => { if (mine === loading) showCounts(stats); }, () => {});
  try {
    const page = await api('/jobs/?' + query);
    if (mine !== loading) return; // a newer view is on its way
    flash('');
    tbody.replaceChildren(...page.jobs.map(row));
    document.getElementById('empty').hidden = page.jobs.length > 0;
    const shown = page.jobs.length;
    const total = page.total_count;
    const about = page.total_count_exact ? '' : 'about ';
    const start = view.cursor ? view.at : view.offset;
    document.getElementById('range').textContent = shown
      ? `${start + 1}–${start + shown} of ${about}${total.toLocaleString()}`
      : `0 of ${about}${total.toLocaleString()}`;
    document.getElementById('prev').disabled = !view.cursor && !view.offset;
    nextCursor = page.next;
    shownOnPage = shown;
    document.getElementById('next').disabled = !page.next;
    // When the first page of jobs was on screen, for measuring.
    if (!performance.getEntriesByName('rje:jobs-shown').length) performance.mark('rje:jobs-shown');
  } catch (err) {
    if (mine === loading) {
      flash(err.message);
      nextCursor = null;
      document.getElementById('next').disabled = true;
    }
  }
}

function showCounts(stats) {
  document.querySelector('[data-count="total"]').textContent = stats.total.toLocaleString();
  for (const status of STATUSES) {
    document.querySelector(`[data-count="${status}"]`).textContent =
      stats.by_status[status].toLocaleString();
  }
}

async function fillHosts() {
  try {
    const { hosts } = await api('/hosts/');
    const select = form.elements.host;
    for (const host of hosts) select.append(el('option', { text: host.name }));
    select.value = current().host;
  } catch { /* the list still works without the host filter's names */ }
}

let typing = null;
form.addEventListener('input', (event) => {
  const view = current();
  for (const name of FILTERS) if (form.elements[name]) view[name] = form.elements[name].value;
  Object.assign(view, FIRST);
  if (event.target.name === 'search') {
    clearTimeout(typing);
    // The server searches 3 characters or more: until then, keep the view.
    if (view.search.length > 0 && view.search.length < 3) return;
    typing = setTimeout(() => navigate(view, true), 300);
  } else {
    navigate(view);
  }
});
form.addEventListener('submit', (event) => event.preventDefault());

document.getElementById('counts').addEventListener('click', (event) => {
  const link = event.target.closest('a');
  if (!link) return;
  event.preventDefault();
  navigate({ ...current(), ...FIRST, status: link.dataset.status });
});

function nextPage() {
  if (!nextCursor) return;
  const view = current();
  const here = { offset: view.offset, cursor: view.cursor, at: view.at };
  const trail = [...(history.state?.trail || []), here];
  navigate({ ...view, offset: 0, cursor: nextCursor,
    at: (view.cursor ? view.at : view.offset) + shownOnPage },
    false, trail);
}

function previousPage() {
  const view = current();
  const trail = [...(history.state?.trail || [])];
  // Reached from a shared address: no pages before it are known, but an
  // offset still counts back.
  const size = parseInt(view.limit, 10);
  const back = trail.pop()
    || (view.offset ? { ...FIRST, offset: Math.max(0, view.offset - size) } : FIRST);
  navigate({ ...view, ...back }, false, trail);
}
document.getElementById('prev').addEventListener('click', previousPage);
document.getElementById('next').addEventListener('click', nextPage);
window.addEventListener('popstate', load);

// A status change shows at once on its row; the page is read again at
// most once a second for the rest (new jobs, counts, durations).
const refresh = throttle(load, 1000);
liveSocket(() => '/ws/jobs/', (message) => {
  if (message.type === 'gap' || message.type === 'ready') { refresh(); return; }
  if (message.type !== 'status') return;
  const tr = tbody.querySelector(`tr[data-id="${message.job_id}"]`);
  if (tr) tr.cells[0].replaceChildren(badge(message.status));
  refresh();
}, showLive);

fillHosts();
load();
