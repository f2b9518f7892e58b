// Workers and the queue: read again when jobs change state, and every ten
// seconds for the heartbeats.

import { api, el, flash, liveSocket, showLive, throttle, timeEl } from './common.js';

const tbody = document.querySelector('#workers tbody');

function row(worker) {
  const jobs = worker.jobs.length
    ? worker.jobs.map((id) => el('a', { href: '/ui/jobs/' + id, class: 'mono', text: id.slice(0, 8) }))
    : [el('span', { class: 'muted', text: 'idle' })];
  const list = el('span', { class: 'job-links' }, ...jobs);
  return el('tr', {},
    el('th', { class: 'mono', text: worker.id }),
    el('td', { class: 'opt', text: worker.host }),
    el('td', { class: 'num', text: `${worker.jobs.length} / ${worker.concurrency}` }),
    el('td', { class: 'opt' }, timeEl(worker.started_at)),
    el('td', { class: 'opt' }, timeEl(worker.heartbeat_at)),
    el('td', {}, list),
  );
}

async function load() {
  try {
    const [{ workers }, stats] = await Promise.all([api('/workers/'), api('/jobs/stats/')]);
    tbody.replaceChildren(...workers.map(row));
    document.getElementById('no-workers').hidden = workers.length > 0;
    for (const tr of document.querySelectorAll('#queue tr[data-priority]')) {
      const p = tr.dataset.priority;
      tr.querySelector('.queued').textContent = stats.queued_by_priority[p].toLocaleString();
      tr.querySelector('.running').textContent = stats.running_by_priority[p].toLocaleString();
    }
    flash('');
  } catch (err) {
    flash(err.message);
  }
}

const refresh = throttle(load, 1000);
liveSocket(() => '/ws/jobs/', refresh, showLive);
setInterval(refresh, 10000);
load();
