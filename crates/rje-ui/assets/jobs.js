// The job list: filters and paging kept in the address (so a view can be
// shared and the back button works), one page of jobs read from the
// server at a time, and live updates from the all-jobs event stream.
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
  return view;
}

function navigate(view, replace = false) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    if (view[name] && view[name] !== DEFAULTS[name]) params.set(name, view[name]);
  }
  if (view.offset) params.set('offset', view.offset);
  const url = '/ui/' + (params.toString() ? '?' + params : '');
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
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
    navigate({ ...current(), schedule: '', offset: 0 });
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

async function load() {
  const view = current();
  fillForm(view);
  const query = new URLSearchParams({ output: 'none', limit: view.limit, offset: view.offset });
  for (const name of ['search', 'status', 'priority', 'host', 'ordering', 'schedule']) {
    if (view[name]) query.set(name, view[name]);
  }
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
    document.getElementById('range').textContent = shown
      ? `${view.offset + 1}–${view.offset + shown} of ${about}${total.toLocaleString()}`
      : `0 of ${about}${total.toLocaleString()}`;
    document.getElementById('prev').disabled = view.offset === 0;
    // An estimated total may be short: a full page says there may be more.
    const full = shown === parseInt(view.limit, 10);
    document.getElementById('next').disabled =
      view.offset + shown >= total && !(full && !page.total_count_exact);
    // When the first page of jobs was on screen, for measuring.
    if (!performance.getEntriesByName('rje:jobs-shown').length) performance.mark('rje:jobs-shown');
  } catch (err) {
    if (mine === loading) flash(err.message);
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
  view.offset = 0;
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
  navigate({ ...current(), status: link.dataset.status, offset: 0 });
});

function page(step) {
  const view = current();
  const size = parseInt(view.limit, 10);
  view.offset = Math.max(0, view.offset + step * size);
  navigate(view);
}
document.getElementById('prev').addEventListener('click', () => page(-1));
document.getElementById('next').addEventListener('click', () => page(1));
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
