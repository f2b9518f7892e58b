// Sign in: the token is tried on the API before it is kept, for this tab
// only (sessionStorage).

import { setToken } from './common.js';

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
  let res;
  try {
    res = await fetch('/hosts/', { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' } });
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
  location.assign(next());
});
form.elements.token.focus();
