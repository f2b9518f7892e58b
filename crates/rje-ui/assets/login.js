// Sign in: the token is tried on the API (GET /whoami/, whose answer the
// next page then need not ask for) before it is kept, for this tab only
// (sessionStorage).

import { keepWhoami, setToken } from './common.js';

const form = document.getElementById('login');
const error = document.getElementById('login-error');

function next() {
  const target = new URLSearchParams(location.search).get('next') || '/ui/';
  // Only pages of the dashboard: never a redirect to elsewhere.
  return target.startsWith('/ui') && !target.startsWith('//') ? target : '/ui/';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  const token = form.elements.token.value.trim();
  if (!token) {
    error.textContent = 'Type a token.';
    return;
  }
  const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
  let res;
  let me = null;
  try {
    res = await fetch('/whoami/', { headers });
    // A server older than roles has no /whoami/: any read shows the token works.
    if (res.status === 404) res = await fetch('/hosts/', { headers });
    else if (res.ok) me = await res.json().catch(() => null);
  } catch {
    error.textContent = 'The server cannot be reached.';
    return;
  }
  if (res.status === 401) {
    error.textContent = 'That token was refused: check it and try again.';
    form.elements.token.setAttribute('aria-invalid', 'true');
    form.elements.token.select();
    return;
  }
  if (!res.ok) {
    error.textContent = `The server answered ${res.status}; try again.`;
    return;
  }
  setToken(token);
  keepWhoami(me, token);
  location.assign(next());
});
form.elements.token.focus();
