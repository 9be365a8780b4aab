// innohook dashboard: the only script (the Content-Security-Policy allows no inline one).
// It asks before a form that changes something is sent, and reloads a page that asks
// for it (data-refresh) while its reader leaves "refresh every N s" ticked.
'use strict';

document.addEventListener('submit', (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

(() => {
  const seconds = Number(document.body.dataset.refresh || 0);
  const box = document.getElementById('auto-refresh');
  if (!seconds || !box) {
    return;
  }
  const key = 'innohook-auto-refresh';
  box.checked = window.localStorage.getItem(key) !== 'off';
  let timer = null;
  const arm = () => {
    window.clearTimeout(timer);
    if (box.checked && !document.hidden) {
      timer = window.setTimeout(() => window.location.reload(), seconds * 1000);
    }
  };
  box.addEventListener('change', () => {
    window.localStorage.setItem(key, box.checked ? 'on' : 'off');
    arm();
  });
  document.addEventListener('visibilitychange', arm);
  arm();
})();
