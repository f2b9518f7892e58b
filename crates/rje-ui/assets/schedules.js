// Schedules: the server's schedules with their next fire time and last
// job, Pause, Resume and Delete where the token's role allows, and a form
// that makes one and shows its next five fire times at once, so that a
// wrong cron or zone is seen before it fires. The list is read again
// after every action, and every 15 s while the tab is visible only.

import {
  api, badge, clearFieldErrors, el, flash, may, mayChangeOwn, showFieldErrors, timeEl, whoami,
} from './common.js';

const form = document.getElementById('new-schedule');
const tbody = document.querySelector('#schedules tbody');
const created = document.getElementById('created');
/** Between two readings of the list: fire times move by the minute. */
const EVERY_MS = 15000;
/** The most the server lists at once. */
const LIMIT = 100;
/** Who the token is (whoami()); until known, no action is offered. */
let me = null;

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** How far `iso` is from now: "in 5 minutes", "tomorrow". */
function fromNow(iso) {
  const seconds = Math.round((new Date(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, 'second');
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
  return relative.format(Math.round(seconds / 86400), 'day');
}

function nextFire(schedule) {
  const next = schedule.next_fire_times[0];
  // A paused schedule has no fire time.
  if (!next) return el('td', { class: 'muted', text: '—' });
  return el('td', { class: 'next-fire' }, fromNow(next), el('br'), el('small', {}, timeEl(next)));
}

function lastJob(schedule) {
  const all = el('a', {
    href: '/ui/?schedule=' + encodeURIComponent(schedule.id),
    class: 'schedule-jobs',
    text: 'its jobs',
  });
  if (!schedule.last_job) {
    return el('td', {}, el('span', { class: 'muted', text: 'none yet' }), ' · ', all);
  }
  const { id, status } = schedule.last_job;
  const link = el('a', { href: '/ui/jobs/' + encodeURIComponent(id), class: 'last-job', title: id },
    badge(status), ' ', el('code', { text: id.slice(0, 8) }));
  return el('td', {}, link, ' · ', all);
}

/** Pause or Resume, and Delete: an admin's on any, run's on its own. */
function actions(schedule) {
  const allowed = mayChangeOwn(me, schedule.created_by);
  const verb = schedule.paused ? 'Resume' : 'Pause';
  const toggle = el('button', {
    type: 'button', class: 'toggle', text: verb, 'aria-label': `${verb} ${schedule.name}`,
    hidden: !allowed,
  });
  toggle.addEventListener('click', () => setPaused(schedule, !schedule.paused, toggle));
  const remove = el('button', {
    type: 'button', class: 'danger delete', text: 'Delete', 'aria-label': `Delete ${schedule.name}`,
    hidden: !allowed,
  });
  remove.addEventListener('click', () => deleteSchedule(schedule, remove));
  return el('td', {}, toggle, ' ', remove);
}

function row(schedule) {
  const command = el('span', { class: 'cmd', title: schedule.command, text: schedule.command });
  const zone = el('small', { class: 'muted', text: schedule.timezone });
  const tr = el('tr', {
    id: 'schedule-' + schedule.id, 'data-id': schedule.id, 'data-schedule': schedule.name,
  },
    el('th', { text: schedule.name }),
    el('td', { class: 'cmd-cell opt' }, command),
    el('td', {}, el('code', { text: schedule.cron }), ' ', zone),
    nextFire(schedule),
    lastJob(schedule),
    el('td', { class: 'opt', text: schedule.overlap }),
    el('td', {}, el('span', {
      class: schedule.paused ? 'state paused' : 'state', text: schedule.paused ? 'paused' : 'active',
    })),
    el('td', { class: 'opt' }, schedule.created_by || el('span', { class: 'muted', text: '—' })),
    actions(schedule),
  );
  // The row a job's page linked to (its schedule) stands out.
  if (location.hash === '#' + tr.id) tr.classList.add('target');
  return tr;
}

let loading = null;
let timer = null;
let scrolled = false;
/** Whether the last reading failed: its message goes once one succeeds. */
let failed = false;

/** The next reading, unless the tab is hidden: it reads again when shown. */
function again() {
  clearTimeout(timer);
  if (!document.hidden) timer = setTimeout(load, EVERY_MS);
}

async function load() {
  clearTimeout(timer);
  const mine = (loading = Symbol('load'));
  try {
    const page = await api(`/schedules/?limit=${LIMIT}`);
    if (mine !== loading) return; // a newer reading is on its way
    // Not flash('') every time: an action's message outlives the reading after it.
    if (failed) flash('');
    failed = false;
    tbody.replaceChildren(...page.schedules.map(row));
    document.getElementById('no-schedules').hidden = page.schedules.length > 0;
    const more = document.getElementById('more-schedules');
    more.textContent = `The first ${page.schedules.length} of `
      + `${page.total_count.toLocaleString()} schedules are shown.`;
    more.hidden = page.total_count <= page.schedules.length;
    const target = tbody.querySelector('tr.target');
    if (target && !scrolled) {
      scrolled = true;
      target.scrollIntoView({ block: 'center' });
    }
  } catch (err) {
    if (mine === loading) {
      failed = true;
      flash(err.message);
    }
  }
  if (mine === loading) again();
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) clearTimeout(timer);
  else load();
});

async function setPaused(schedule, paused, button) {
  button.disabled = true;
  try {
    await api(`/schedules/${schedule.id}/${paused ? 'pause' : 'resume'}/`, { method: 'POST' });
    flash(paused
      ? `The schedule ${schedule.name} is paused: it fires nothing until resumed.`
      : `The schedule ${schedule.name} is resumed.`, 'info');
  } catch (err) {
    flash(err.message);
  }
  // Read again either way: the answer may be of a schedule changed meanwhile.
  await load();
}

async function deleteSchedule(schedule, button) {
  if (!confirm(`Delete the schedule ${schedule.name}? It fires no more jobs; `
    + 'the jobs it made are kept.')) return;
  button.disabled = true;
  try {
    await api(`/schedules/${schedule.id}/`, { method: 'DELETE' });
    flash(`The schedule ${schedule.name} was deleted.`, 'info');
  } catch (err) {
    flash(err.message);
  }
  await load();
}

/** The request: numbers sent as typed, so that the server's rule is the one seen. */
function body() {
  const value = (name) => form.elements.namedItem(name).value;
  const request = {
    name: value('name').trim(),
    cron: value('cron'),
    command: value('command'),
    priority: value('priority'),
    overlap: value('overlap'),
    misfire: value('misfire'),
    retry_on_failure: form.elements.namedItem('retry_on_failure').checked,
  };
  const timezone = value('timezone').trim();
  if (timezone) request.timezone = timezone;
  if (value('host')) request.host = value('host');
  for (const name of ['timeout', 'max_retries']) {
    const typed = value(name).trim();
    if (typed !== '') request[name] = /^-?\d+$/.test(typed) ? Number(typed) : typed;
  }
  return request;
}

/** Dates on the wall clock of `timezone`, with the weekday: what a cron reads. */
function wallClock(timezone) {
  const style = { dateStyle: 'full', timeStyle: 'long' };
  try {
    return new Intl.DateTimeFormat(undefined, { ...style, timeZone: timezone });
  } catch {
    // A zone this browser does not know: its own, named in each time.
    return new Intl.DateTimeFormat(undefined, style);
  }
}

/** The new schedule's next fire times, until Done or the next form. */
function showCreated(schedule) {
  document.getElementById('created-name').textContent = schedule.name;
  const clock = wallClock(schedule.timezone);
  const times = schedule.next_fire_times.map((iso) => el('li', {},
    el('time', {
      datetime: iso,
      title: new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
      text: clock.format(new Date(iso)),
    }),
    ' · ', fromNow(iso)));
  document.getElementById('next-fires').replaceChildren(...(times.length
    ? times
    : [el('li', { class: 'muted', text: 'None: the schedule is paused.' })]));
  created.hidden = false;
  created.scrollIntoView({ block: 'nearest' });
  created.focus();
}

function hideCreated() {
  created.hidden = true;
}
document.getElementById('created-done').addEventListener('click', hideCreated);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors(form);
  hideCreated();
  flash('');
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const schedule = await api('/schedules/', { method: 'POST', body: body() });
    form.reset();
    showCreated(schedule);
    load();
  } catch (err) {
    if (err.status === 400 || err.status === 422) showFieldErrors(form, err);
    else if (err.status === 409) {
      // The name is taken: said beside the name.
      showFieldErrors(form, {
        message: err.message, details: [{ field: 'name', message: err.message }],
      });
    } else flash(err.message);
  } finally {
    button.disabled = false;
  }
});

async function fillHosts() {
  const select = form.elements.namedItem('host');
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

/** The browser's time zones as the zone field's suggestions. */
function fillZones() {
  const zones = typeof Intl.supportedValuesOf === 'function'
    ? Intl.supportedValuesOf('timeZone')
    : [];
  const list = zones.includes('UTC') ? zones : ['UTC', ...zones];
  document.getElementById('timezones')
    .replaceChildren(...list.map((zone) => el('option', { value: zone })));
}

whoami().then((answer) => {
  me = answer;
  load();
  // The form is for run and admin tokens (common.js hides it from read).
  if (may(me, 'run')) {
    fillHosts();
    fillZones();
  }
});
