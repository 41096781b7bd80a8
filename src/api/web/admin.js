// The admin console: polls the admin API and /api/stats every two seconds and sends operator
// actions to the admin API. The browser adds the Basic credentials it was given for /admin/.
// Listeners come a page at a time, searched on the server: a station may have tens of thousands.
'use strict';

(() => {
  const POLL_MS = 2000;
  const HISTORY = 60; // samples kept per chart: two minutes
  const PAGE_ROWS = 100; // listener rows per page
  const SEARCH_DELAY_MS = 250; // typing pause before a search is sent
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  const mountCards = new Map();
  const history = { listeners: [], bandwidth: [] }; // per shard: array of samples
  let lastSample = null; // { at, bytes: [] }
  const view = { offset: 0, q: '' }; // the listener page shown

  // Resolved against the origin: a page opened with user:pass@ in its address would otherwise
  // hand fetch() a URL with credentials, which it refuses.
  function url(path, params) {
    const u = new URL(path, location.origin);
    if (params) u.search = new URLSearchParams(params).toString();
    return u;
  }

  async function getJSON(path, params) {
    const res = await fetch(url(path, params), { cache: 'no-store', credentials: 'same-origin' });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON: reported by status below */ }
    if (res.status === 401) throw new Error('The server no longer accepts these credentials: reload the page to sign in again.');
    if (!res.ok && !(body && body.iceresponse)) throw new Error(`${path}: HTTP ${res.status}`);
    return body;
  }

  function notice(text, error) {
    const el = $('notice');
    el.textContent = text;
    el.classList.toggle('error', !!error);
    el.hidden = false;
    clearTimeout(notice.timer);
    if (!error) notice.timer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  // Runs an admin command; its iceresponse says whether it did anything.
  async function command(name, params) {
    try {
      const body = await getJSON(`/admin/${name}.json`, params);
      const r = (body && body.iceresponse) || {};
      notice(r.message || 'Done', r.return !== 1);
      return r.return === 1;
    } catch (err) {
      notice(err.message, true);
      return false;
    }
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'data') Object.assign(node.dataset, v);
      else if (k.startsWith('aria-') || k === 'for' || k === 'role') node.setAttribute(k, v);
      else node[k] = v;
    }
    node.append(...children);
    return node;
  }

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs || 0));
    const d = Math.floor(secs / 86400);
    const h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60;
    const s = secs % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    n = Number(n) || 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function bits(perSec) {
    const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
    let i = 0;
    let n = perSec;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }

  function slug(mount) {
    return mount.replace(/[^A-Za-z0-9]/g, '-');
  }

  function mountCard(mount) {
    const id = slug(mount);
    const field = (name) => el('dd', { data: { field: name } }, '–');
    const input = el('input', { type: 'text', name: 'song', id: `title${id}`, placeholder: 'Artist - Title', maxLength: 1024, autocomplete: 'off' });
    const form = el('form', { class: 'title-form', data: { mount } },
      el('label', { for: `title${id}`, class: 'visually-hidden' }, `New title for ${mount}`),
      input,
      el('button', { type: 'submit', class: 'primary' }, 'Set title'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const song = input.value.trim();
      if (!song) { input.focus(); return; }
      if (await command('metadata', { mount, mode: 'updinfo', song })) {
        input.value = '';
        poll();
      }
    });
    const skip = el('button', { type: 'button', data: { action: 'skip', mount } }, 'Skip to next track');
    skip.addEventListener('click', async () => { if (await command('skip', { mount })) poll(); });
    const kill = el('button', { type: 'button', class: 'danger', data: { action: 'killsource', mount } }, 'Kill source');
    kill.addEventListener('click', async () => {
      if (!window.confirm(`Disconnect the live source on ${mount}?`)) return;
      if (await command('killsource', { mount })) poll();
    });
    const card = el('article', { class: 'card mount', data: { mount }, 'aria-labelledby': `m${id}` },
      el('header', {}, el('h3', { id: `m${id}` }, mount),
        el('span', { class: 'badges' },
          el('span', { class: 'badge silent', data: { field: 'silent' }, hidden: true, title: 'The live source is connected but silent: the playlist or fallback plays until sound returns' }, 'Dead air'),
          el('span', { class: 'badge auto', data: { field: 'mode' } }, ''))),
      el('dl', {},
        el('dt', {}, 'Now playing'), field('title'),
        el('dt', {}, 'Source'), field('agent'),
        el('dt', {}, 'Address'), field('ip'),
        el('dt', {}, 'Connected since'), field('since'),
        el('dt', {}, 'Bitrate'), field('bitrate'),
        el('dt', {}, 'Listeners'), field('listeners'),
        el('dt', {}, 'Received'), field('received')),
      form,
      el('div', { class: 'row' }, skip, kill));
    return card;
  }

  function renderMounts(list) {
    const box = $('mounts');
    if (!mountCards.size) box.textContent = '';
    if (!list.length) { box.textContent = 'No mounts yet.'; return; }
    for (const src of list) {
      let card = mountCards.get(src.mount);
      if (!card) {
        card = mountCard(src.mount);
        mountCards.set(src.mount, card);
        box.append(card);
      }
      const f = (name) => card.querySelector(`[data-field="${name}"]`);
      const badge = f('mode');
      setText(badge, src.live ? 'Live DJ' : 'AutoDJ');
      badge.classList.toggle('live', !!src.live);
      badge.classList.toggle('auto', !src.live);
      setText(f('title'), src.title || '—');
      // A silent source is still connected: it stays shown, and can still be killed.
      f('silent').hidden = !src.silent;
      const connected = src.live || src.silent;
      setText(f('agent'), connected ? (src.user_agent || 'unknown client') : 'Playlist (AutoDJ)');
      setText(f('ip'), src.source_ip || '—');
      if (src.stream_start_iso8601) {
        const since = new Date(src.stream_start_iso8601.replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));
        setText(f('since'), `${since.toLocaleString()} (${duration(src.connected_seconds)})`);
      } else {
        setText(f('since'), '—');
      }
      setText(f('bitrate'), src.bitrate ? `${src.bitrate} kbps` : '—');
      const hls = src.hls_listeners ? `, HLS ${src.hls_listeners}` : '';
      setText(f('listeners'), `${src.listeners} (peak ${src.listener_peak})${hls}`);
      setText(f('received'), bytes(src.total_bytes_read));
      card.querySelector('[data-action="killsource"]').disabled = !connected;
    }
  }

  function listenerRow(l) {
    const kick = el('button', { type: 'button', class: 'danger', data: { action: 'kick' }, 'aria-label': `Kick listener ${l.ID}` }, 'Kick');
    kick.addEventListener('click', async () => {
      kick.disabled = true;
      if (await command('killclient', { mount: l.mount, id: String(l.ID) })) {
        row.remove();
        updateEmpty();
      } else {
        kick.disabled = false;
      }
      poll();
    });
    const row = el('tr', { data: { id: String(l.ID), mount: l.mount } },
      el('td', { class: 'num' }, String(l.ID)),
      el('td', {}, l.mount),
      el('td', {}, l.IP),
      el('td', { class: 'agent' }, l.UserAgent || '—'),
      el('td', { data: { field: 'connected' } }, ''),
      el('td', { class: 'num' }, String(l.shard)),
      el('td', { class: 'num', data: { field: 'sent' } }, ''),
      el('td', {}, kick));
    return row;
  }

  function updateEmpty() {
    const body = $('listeners').tBodies[0];
    const rows = body.querySelectorAll('tr[data-id]').length;
    body.querySelector('tr.empty')?.toggleAttribute('hidden', rows > 0);
  }

  function renderPager(shown, total, all) {
    const first = shown ? view.offset + 1 : 0;
    const range = shown ? `${first}–${view.offset + shown} of ${total}` : `0 of ${total}`;
    setText($('page-range'), view.q ? `${range} matching` : range);
    setText($('listener-count'), view.q ? `(${total} of ${all})` : `(${all})`);
    $('page-prev').disabled = view.offset === 0;
    $('page-next').disabled = view.offset + shown >= total;
  }

  // Only the page's rows are in the table; rows still shown are updated in place.
  function renderListeners(list) {
    const body = $('listeners').tBodies[0];
    const rows = new Map([...body.querySelectorAll('tr[data-id]')].map((r) => [`${r.dataset.mount} ${r.dataset.id}`, r]));
    const seen = new Set();
    for (const l of list) {
      const key = `${l.mount} ${l.ID}`;
      seen.add(key);
      let row = rows.get(key);
      if (!row) {
        row = listenerRow(l);
        body.append(row);
      }
      setText(row.querySelector('[data-field="connected"]'), duration(l.Connected));
      setText(row.querySelector('[data-field="sent"]'), bytes(l.bytes_sent));
    }
    for (const [key, row] of rows) if (!seen.has(key)) row.remove();
    // Oldest first; rows only move when a new one arrives out of order.
    const current = [...body.querySelectorAll('tr[data-id]')];
    const sorted = [...current].sort((a, b) => Number(a.dataset.id) - Number(b.dataset.id));
    if (sorted.some((r, i) => r !== current[i])) body.append(...sorted);
    updateEmpty();
  }

  function push(series, shard, value) {
    const s = (series[shard] ||= []);
    s.push(value);
    if (s.length > HISTORY) s.shift();
  }

  function sample(stats) {
    const now = performance.now();
    const shards = stats.shards || [];
    const sent = shards.map((s) => Number(s.bytes_sent) || 0);
    shards.forEach((s, i) => push(history.listeners, i, Number(s.listeners) || 0));
    if (lastSample && now > lastSample.at) {
      const secs = (now - lastSample.at) / 1000;
      sent.forEach((b, i) => push(history.bandwidth, i, Math.max(0, (b - (lastSample.bytes[i] || 0)) * 8 / secs)));
    }
    lastSample = { at: now, bytes: sent };
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart(figure, series, format) {
    const svg = figure.querySelector('svg');
    const max = niceMax(Math.max(0, ...series.flat()));
    svg.replaceChildren();
    for (const y of [25, 50, 75]) {
      const line = document.createElementNS(SVG_NS, 'line');
      line.setAttribute('class', 'grid');
      line.setAttribute('x1', '0'); line.setAttribute('x2', '300');
      line.setAttribute('y1', String(y)); line.setAttribute('y2', String(y));
      svg.append(line);
    }
    // The window grows with the samples up to HISTORY, then slides.
    const span = Math.max(2, ...series.map((v) => (v ? v.length : 0)));
    series.forEach((values, shard) => {
      if (!values || !values.length) return;
      const offset = span - values.length;
      const points = values.map((v, i) => `${((offset + i) * 300 / (span - 1)).toFixed(1)},${(98 - v / max * 94).toFixed(1)}`);
      if (points.length === 1) points.unshift(points[0].replace(/^[^,]+/, '0'));
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('class', `c${shard % 8}`);
      line.setAttribute('points', points.join(' '));
      svg.append(line);
    });
    setText(figure.querySelector('[data-field="scale"]'), `top ${format(max)} · last ${Math.round((span - 1) * POLL_MS / 1000)} s`);
    const legend = figure.querySelector('.legend');
    legend.replaceChildren(...series.map((values, shard) => el('li', {},
      el('span', { class: `swatch c${shard % 8}`, 'aria-hidden': 'true' }),
      `shard ${shard}: ${values && values.length ? format(values[values.length - 1]) : '–'}`)));
  }

  async function pollShards() {
    try {
      // The charts need the shard totals only, not the listener rows.
      const stats = await getJSON('/api/stats', { listeners: '0' });
      if (!stats || !stats.shards) throw new Error('stats disabled');
      sample(stats);
      drawChart($('chart-listeners'), history.listeners, (v) => String(Math.round(v)));
      drawChart($('chart-bandwidth'), history.bandwidth, bits);
    } catch (_) {
      for (const id of ['chart-listeners', 'chart-bandwidth']) {
        setText($(id).querySelector('[data-field="scale"]'), 'unavailable (advanced.enable_stats is off)');
      }
    }
  }

  async function pollAdmin() {
    const asked = { offset: view.offset, q: view.q };
    const params = { offset: String(asked.offset), limit: String(PAGE_ROWS) };
    if (asked.q) params.q = asked.q;
    // The page of listeners covers every mount, so both requests go at once.
    const [stats, clients] = await Promise.all([
      getJSON('/admin/stats.json'),
      getJSON('/admin/listclients.json', params),
    ]);
    const tree = (stats && stats.icestats) || {};
    const list = tree.source || [];
    renderMounts(list);
    setText($('summary'), `${tree.listeners ?? 0} listeners · ${list.length} mount${list.length === 1 ? '' : 's'} · ${tree.server_id || ''}`);
    // The search or page changed meanwhile: this answer is for a view no longer shown.
    if (asked.offset !== view.offset || asked.q !== view.q) { poll(); return; }
    const page = (clients && clients.icestats) || {};
    const sources = page.source || [];
    const total = Number(page.total) || 0;
    if (view.offset > 0 && view.offset >= total) {
      // Listeners left: show the last page there is.
      view.offset = Math.max(0, Math.ceil(total / PAGE_ROWS) - 1) * PAGE_ROWS;
      poll();
      return;
    }
    const listeners = sources.flatMap((s) => (s.listener || []).map((l) => ({ ...l, mount: s.mount })));
    renderListeners(listeners);
    const all = sources.reduce((n, s) => n + (Number(s.Listeners) || 0), 0);
    renderPager(listeners.length, total, all);
  }

  let pending = null;
  let again = false;
  let timer = null;
  // One poll at a time; an action asks for another as soon as the current one ends.
  function poll() {
    clearTimeout(timer);
    if (pending) {
      again = true;
      return pending;
    }
    pending = Promise.all([
      pollAdmin().catch((err) => notice(err.message, true)),
      pollShards(),
    ]).finally(() => {
      pending = null;
      timer = setTimeout(poll, again ? 0 : POLL_MS);
      again = false;
    });
    return pending;
  }

  function showPage(offset) {
    view.offset = Math.max(0, offset);
    poll();
  }

  $('page-prev').addEventListener('click', () => showPage(view.offset - PAGE_ROWS));
  $('page-next').addEventListener('click', () => showPage(view.offset + PAGE_ROWS));
  let searchTimer = null;
  $('listener-search').addEventListener('input', (ev) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = ev.target.value.trim();
      if (q === view.q) return;
      view.q = q;
      showPage(0);
    }, SEARCH_DELAY_MS);
  });

  poll();
})();
