// Keeps the station page current by polling the public status APIs every two seconds.
'use strict';

(() => {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let uptime = null; // [server uptime in seconds, local time it was read]

  // Resolved against the origin, not the page URL: a URL that carries credentials would make
  // fetch() refuse the request.
  async function getJSON(path) {
    const res = await fetch(new URL(path, location.origin), { cache: 'no-store' });
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return res.json();
  }

  function sources(status) {
    const s = status && status.icestats && status.icestats.source;
    return s ? (Array.isArray(s) ? s : [s]) : [];
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setMode(badge, label, live) {
    badge.classList.toggle('live', live);
    badge.classList.toggle('auto', !live);
    setText(label, live ? 'Live DJ' : 'AutoDJ');
  }

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    const d = Math.floor(secs / 86400);
    const h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60;
    const s = secs % 60;
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m`;
    return `${m}m ${String(s).padStart(2, '0')}s`;
  }

  function tickUptime() {
    if (uptime) setText($('uptime'), duration(uptime[0] + (Date.now() - uptime[1]) / 1000));
  }

  // HLS where the browser plays it itself (Safari, iOS): no connection held, and a CDN can
  // carry it. Elsewhere the Icecast stream. Some browsers claim HLS yet cannot read packed
  // audio; their error switches the player back to the stream (see the error listener).
  const HLS_TYPE = 'application/vnd.apple.mpegurl';

  function preferHls(audio) {
    if (audio.dataset.hls && !audio.dataset.hlsFailed && audio.canPlayType(HLS_TYPE)) {
      audio.src = audio.dataset.hls;
    }
  }

  function slug(mount) {
    return 'mount' + mount.replace(/[^A-Za-z0-9]/g, '-');
  }

  // Same markup as the server renders, for mounts that appear after the page loaded.
  function playerCard(mount, hls) {
    const card = document.createElement('article');
    card.className = 'card player';
    card.dataset.mount = mount;
    const id = slug(mount);
    card.setAttribute('aria-labelledby', id);
    const header = document.createElement('header');
    const h3 = document.createElement('h3');
    h3.id = id;
    h3.textContent = mount;
    const badge = document.createElement('span');
    badge.className = 'badge auto';
    badge.dataset.field = 'mode';
    header.append(h3, badge);
    const title = document.createElement('p');
    title.className = 'player-title';
    title.dataset.field = 'title';
    const audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'none';
    audio.src = mount;
    audio.dataset.mount = mount;
    if (hls) audio.dataset.hls = hls;
    preferHls(audio);
    audio.setAttribute('aria-labelledby', id);
    const meta = document.createElement('p');
    meta.className = 'muted small';
    const listeners = document.createElement('span');
    listeners.dataset.field = 'listeners';
    const bitrate = document.createElement('span');
    bitrate.dataset.field = 'bitrate';
    meta.append(listeners, ' listening', bitrate);
    card.append(header, title, audio, meta);
    return card;
  }

  function renderMounts(list) {
    const players = $('players');
    const cards = new Map([...players.querySelectorAll('.player')].map((c) => [c.dataset.mount, c]));
    if (list.length) $('no-mounts')?.remove();
    // A mount a source created goes away after its source and listeners have left.
    const listed = new Set(list.map((src) => src.mount));
    for (const [mount, card] of cards) if (!listed.has(mount)) card.remove();
    for (const src of list) {
      let card = cards.get(src.mount);
      if (!card) {
        // Same-origin path of the playlist the status names (its host may be another name).
        card = playerCard(src.mount, src.hls_url ? new URL(src.hls_url).pathname : null);
        players.append(card);
      }
      const field = (name) => card.querySelector(`[data-field="${name}"]`);
      const badge = field('mode');
      setText(badge, src.live ? 'Live DJ' : 'AutoDJ');
      badge.classList.toggle('live', !!src.live);
      badge.classList.toggle('auto', !src.live);
      setText(field('title'), src.title || '');
      setText(field('listeners'), String((src.listeners ?? 0) + (src.hls_listeners ?? 0)));
      setText(field('bitrate'), src.bitrate ? ` · ${src.bitrate} kbps` : '');
    }
  }

  function renderStatus(api) {
    const meta = api.metadata || {};
    const title = meta.title || '';
    setText($('now-title'), title || (meta.artist ? '' : 'Nothing announced'));
    setText($('now-artist'), meta.artist || '');
    setMode($('mode'), $('mode-label'), !!api.source_connected);
    setText($('listeners'), String((api.listeners ?? 0) + (api.hls_listeners ?? 0)));
    if (api.station_name) {
      setText($('station-name'), api.station_name);
      if (document.title !== api.station_name) document.title = api.station_name;
    }
    if (typeof api.station_description === 'string') setText($('station-description'), api.station_description);
    if (typeof api.uptime_seconds === 'number') uptime = [api.uptime_seconds, Date.now()];
    tickUptime();
  }

  async function refresh() {
    try {
      const [api, ice] = await Promise.all([getJSON('/api/status'), getJSON('/status-json.xsl')]);
      renderStatus(api);
      renderMounts(sources(ice));
      setText($('connection'), 'Online');
    } catch (err) {
      setText($('connection'), 'Reconnecting…');
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  // A live stream paused for a while resumes from stale buffered audio; reloading the
  // source on play starts again at the live edge.
  document.addEventListener('pause', (ev) => {
    if (ev.target instanceof HTMLAudioElement) ev.target.dataset.pausedAt = String(Date.now());
  }, true);
  document.addEventListener('play', (ev) => {
    const audio = ev.target;
    if (!(audio instanceof HTMLAudioElement)) return;
    // One stream at a time: starting a player stops the others.
    for (const other of document.querySelectorAll('audio')) if (other !== audio) other.pause();
    if (!audio.dataset.pausedAt) return;
    const pausedFor = Date.now() - Number(audio.dataset.pausedAt);
    delete audio.dataset.pausedAt;
    if (pausedFor > 5000) {
      audio.load();
      audio.play().catch(() => {});
    }
  }, true);

  // A player that cannot read the HLS it was given falls back to the stream, once, and
  // goes on playing: the error comes from the listener's own play.
  document.addEventListener('error', (ev) => {
    const audio = ev.target;
    if (!(audio instanceof HTMLAudioElement) || !audio.dataset.hls || audio.dataset.hlsFailed) return;
    const playing = new URL(audio.currentSrc || audio.src, location.origin).pathname;
    if (playing !== new URL(audio.dataset.hls, location.origin).pathname) return;
    audio.dataset.hlsFailed = '1';
    audio.src = audio.dataset.mount;
    audio.play().catch(() => {});
  }, true);

  for (const audio of document.querySelectorAll('audio[data-hls]')) preferHls(audio);
  setInterval(tickUptime, 1000);
  refresh();
})();
