// The cloudmixer console: live mixers and recordings, on the service's own API.
//
// The token is asked once and kept in sessionStorage (this tab only); every fetch sends it as
// `Authorization: Bearer`. `POST /v1/session` also sets an HttpOnly cookie that the requests a
// page cannot add headers to (<img>, <video>, EventSource) authenticate with; the server takes
// that cookie for GET/HEAD only. Nothing from the API is ever put into the DOM as HTML: text
// goes through textContent, attributes through setAttribute/properties.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'cloudmixer.token';
  const PAGE_SIZE = 20;
  const LIST_MAX = 5000; // recordings fetched for sorting/filtering in the page

  const S = {
    token: sessionStorage.getItem(TOKEN_KEY),
    started: false,
    mixers: [],
    cards: new Map(), // mixer id -> card
    recs: [],
    recTotal: 0,
    outInfo: new Map(), // recording path -> latest outputInfo from the events
    sort: { key: 'modified', dir: -1 },
    page: 1,
    es: null,
    timers: {},
    snapSeq: 0,
    recsLoading: false,
    rows: new Map(), // recording path -> {tr, sig}: the rows on the page
    polling: false,
    pollAgain: false,
  };

  // ---- helpers -------------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
  }

  function fmtDur(ms) {
    if (typeof ms !== 'number' || !isFinite(ms) || ms < 0) return '–';
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  }

  function fmtDate(ms) {
    if (typeof ms !== 'number') return '–';
    const d = new Date(ms);
    const p = (x) => String(x).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // a recording's URL: each path component encoded (the path is `/`-separated names)
  function recUrl(path, suffix) {
    return '/v1/recordings/' + path.split('/').map(encodeURIComponent).join('/') + (suffix || '');
  }

  // a target for display: files as they are, URLs without credentials, query or stream key
  function targetLabel(t) {
    const m = /^([a-z][a-z0-9+.-]*):\/\/(?:[^@/]*@)?([^/?#]*)/i.exec(t || '');
    if (!m) return (t || '').replace(/^\//, '') || '(no target)';
    return `${m[1]}://${m[2]}/…`;
  }

  const MIXER_STATE = { 0: 'ended', 1: 'starting', 2: 'running', 3: 'failed', 4: 'stopping' };
  const OUT_STATE = {
    0: 'idle', 1: 'writing', 2: 'final', 3: 'failed', 4: 'uploading', 5: 'uploaded', 6: 'upload failed',
  };

  function isLive(t) { return /^[a-z][a-z0-9+.-]*:\/\//i.test(t || ''); }

  function toast(msg, kind) {
    const t = $('toast');
    t.textContent = msg;
    t.className = 'toast ' + (kind || 'error');
    t.hidden = false;
    clearTimeout(S.timers.toast);
    S.timers.toast = setTimeout(() => { t.hidden = true; }, kind === 'ok' ? 3000 : 8000);
  }

  class ApiError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  async function api(method, path) {
    const headers = {};
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      throw new ApiError(0, 'cannot reach the service (' + e.message + ')');
    }
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const b = await res.json();
        if (b && typeof b.error === 'string') msg = b.error;
      } catch (_) { /* not JSON */ }
      if (res.status === 401 && S.started && path !== '/v1/session') {
        signOut('Signed out: ' + msg);
      }
      throw new ApiError(res.status, msg);
    }
    if (res.status === 204) return null;
    const ct = res.headers.get('content-type') || '';
    return ct.includes('json') ? res.json() : res.text();
  }

  function confirmDialog(text, yes) {
    return new Promise((resolve) => {
      const d = $('confirm');
      $('confirm-text').textContent = text;
      $('confirm-yes').textContent = yes;
      const done = (v) => {
        $('confirm-yes').onclick = null;
        $('confirm-no').onclick = null;
        d.oncancel = null;
        if (d.open) d.close();
        resolve(v);
      };
      $('confirm-yes').onclick = () => done(true);
      $('confirm-no').onclick = () => done(false);
      d.oncancel = (e) => { e.preventDefault(); done(false); };
      d.showModal();
      $('confirm-no').focus();
    });
  }

  // ---- sign in / out -------------------------------------------------------------------

  function showLogin(msg) {
    $('login').hidden = false;
    $('tabs').hidden = true;
    $('logout').hidden = true;
    $('conn').hidden = true;
    $('view-live').hidden = true;
    $('view-recs').hidden = true;
    $('login-error').textContent = msg || '';
    $('token').focus();
  }

  function stopAll() {
    S.started = false;
    for (const k of Object.keys(S.timers)) { if (k !== 'toast') clearTimeout(S.timers[k]); }
    if (S.es) { S.es.close(); S.es = null; }
    for (const c of S.cards.values()) c.root.remove();
    S.cards.clear();
    $('rec-body').replaceChildren();
    S.rows.clear();
  }

  function signOut(msg) {
    S.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    stopAll();
    showLogin(msg);
  }

  async function boot() {
    wire();
    if (S.token) {
      try {
        await api('POST', '/v1/session');
        return start(false);
      } catch (e) {
        if (e.status === 401) { S.token = null; sessionStorage.removeItem(TOKEN_KEY); }
        return showLogin(e.status === 401 ? 'The saved token was refused; sign in again.' : e.message);
      }
    }
    // a service without a token answers without one
    try {
      await api('POST', '/v1/session');
      return start(true);
    } catch (e) {
      return showLogin(e.status === 401 ? '' : e.message);
    }
  }

  async function login(ev) {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    $('login-submit').disabled = true;
    S.token = t;
    try {
      await api('POST', '/v1/session');
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      start(false);
    } catch (e) {
      S.token = null;
      $('login-error').textContent = e.status === 401 ? 'That token was refused.' : e.message;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  async function logout() {
    try { await api('DELETE', '/v1/session'); } catch (_) { /* signed out anyway */ }
    signOut('Signed out.');
  }

  function start(open) {
    S.started = true;
    $('login').hidden = true;
    $('tabs').hidden = false;
    $('logout').hidden = open;
    $('conn').hidden = false;
    route();
    pollMixers();
    loadRecs();
    openEvents();
  }

  // ---- views ---------------------------------------------------------------------------

  function view() { return location.hash === '#recordings' ? 'recs' : 'live'; }

  function route() {
    if (!S.started) return;
    const v = view();
    $('view-live').hidden = v !== 'live';
    $('view-recs').hidden = v !== 'recs';
    $('tab-live').classList.toggle('active', v === 'live');
    $('tab-recs').classList.toggle('active', v === 'recs');
    if (v === 'recs') loadRecs();
  }

  // ---- live mixers ---------------------------------------------------------------------

  // one poll at a time: a call while one is in flight asks for another right after it
  async function pollMixers() {
    if (S.polling) { S.pollAgain = true; return; }
    clearTimeout(S.timers.mixers);
    if (!S.started) return;
    S.polling = true;
    try {
      const r = await api('GET', '/v1/mixers');
      S.mixers = Array.isArray(r && r.mixers) ? r.mixers : [];
      for (const m of S.mixers) {
        for (const o of m.outputs || []) {
          const p = (o.svrFilePathName || '').replace(/^\/+/, '');
          if (p && !isLive(o.svrFilePathName)) S.outInfo.set(p, o);
        }
      }
      renderMixers();
    } catch (e) {
      if (e.status !== 401) toast(e.message);
    } finally {
      S.polling = false;
    }
    if (S.started) {
      const every = S.pollAgain ? 50 : document.hidden ? 5000 : 1000;
      S.pollAgain = false;
      clearTimeout(S.timers.mixers);
      S.timers.mixers = setTimeout(pollMixers, every);
    }
  }

  function mixerCard(id) {
    const root = el('article', 'card mixer');
    root.dataset.id = id;
    const snapBox = el('div', 'snapbox');
    const img = el('img', 'snap');
    img.alt = 'latest picture of ' + id;
    snapBox.append(img);
    const badge = el('span', 'badge');
    snapBox.append(badge);
    const body = el('div', 'body');
    const title = el('h3', 'title', id);
    const dl = el('dl', 'stats');
    const field = (label) => {
      const d = el('div');
      d.append(el('dt', null, label));
      const dd = el('dd');
      d.append(dd);
      dl.append(d);
      return dd;
    };
    const f = {
      duration: field('Duration'),
      size: field('Size'),
      late: field('Late ticks'),
      frames: field('Frames'),
    };
    const outs = el('ul', 'outputs');
    const err = el('p', 'error');
    const actions = el('div', 'actions');
    const meta = el('span', 'muted small');
    const stop = el('button', 'danger stop', 'Stop');
    stop.type = 'button';
    stop.addEventListener('click', () => stopMixer(id));
    actions.append(meta, stop);
    body.append(title, dl, outs, err, actions);
    root.append(snapBox, body);
    return { root, snapBox, img, badge, f, outs, err, meta, stop, loading: false, lastSnap: 0 };
  }

  function renderMixers() {
    const showEnded = $('show-ended').checked;
    const seen = new Set();
    const list = S.mixers
      .filter((m) => showEnded || m.state !== 0)
      .sort((a, b) => (a.state === 0) - (b.state === 0) || (b.createdAt || 0) - (a.createdAt || 0));
    const grid = $('mixers');
    let prev = null;
    for (const m of list) {
      const id = String(m.mixerID);
      seen.add(id);
      let c = S.cards.get(id);
      if (!c) { c = mixerCard(id); S.cards.set(id, c); }
      // keep the order without re-inserting cards that are in place (no flicker)
      const want = prev ? prev.nextSibling : grid.firstChild;
      if (want !== c.root) grid.insertBefore(c.root, want);
      prev = c.root;
      updateCard(c, m);
    }
    for (const [id, c] of S.cards) {
      if (!seen.has(id)) { c.root.remove(); S.cards.delete(id); }
    }
    const running = S.mixers.filter((m) => m.state !== 0).length;
    $('live-count').textContent = running ? String(running) : '';
    $('live-empty').hidden = list.length > 0;
  }

  function updateCard(c, m) {
    const state = MIXER_STATE[m.state] || String(m.state);
    c.root.dataset.state = state;
    c.badge.textContent = state;
    c.badge.className = 'badge s-' + state;
    const outs = m.outputs || [];
    const st = m.stats || {};
    let dur = 0;
    let size = 0;
    for (const o of outs) {
      dur = Math.max(dur, o.duration || 0);
      size += o.fileSize || 0;
    }
    if (!dur && m.state !== 0 && m.createdAt) dur = Date.now() - m.createdAt;
    c.f.duration.textContent = fmtDur(dur);
    c.f.size.textContent = fmtBytes(size);
    c.f.late.textContent = String(st.lateTicks ?? '–');
    c.f.late.classList.toggle('warn', !!st.overloaded || (st.lateTicks || 0) > 0);
    c.f.frames.textContent = String(st.ticks ?? '–');
    c.meta.textContent = [m.encoder, m.backend].filter(Boolean).join(' · ');
    // outputs: files and live targets with their state
    const items = outs.map((o) => {
      const li = el('li');
      const live = isLive(o.svrFilePathName);
      li.append(el('span', 'kind', live ? 'live' : 'file'));
      li.append(el('span', 'target', targetLabel(o.svrFilePathName)));
      let s = OUT_STATE[o.state] || String(o.state);
      if (live && o.state === 1) s = 'up';
      if (live && o.state === 3) s = 'down, reconnecting';
      if (o.state === 4 && typeof o.progress === 'number') s += ` ${Math.round(o.progress)}%`;
      li.append(el('span', 'badge s-' + (OUT_STATE[o.state] || 'x').replace(' ', '-'), s));
      if (o.errDesc) li.title = o.errDesc;
      return li;
    });
    c.outs.replaceChildren(...items);
    const why = m.errDesc || '';
    c.err.textContent = why;
    c.err.hidden = !why;
    c.stop.hidden = m.state === 0;
    c.stop.disabled = m.state === 4 || c.stopping === true;
    if (m.state !== 0 && view() === 'live' && !document.hidden) refreshSnap(c, m.mixerID);
    c.root.classList.toggle('ended', m.state === 0);
  }

  // a new snapshot about once a second: loaded off-screen, then swapped in (no flicker)
  function refreshSnap(c, id) {
    const now = Date.now();
    if (c.loading || now - c.lastSnap < 900) return;
    c.loading = true;
    c.lastSnap = now;
    const im = new Image();
    im.className = 'snap';
    im.alt = 'latest picture of ' + id;
    im.decoding = 'async';
    im.onload = () => {
      c.loading = false;
      c.img.replaceWith(im);
      c.img = im;
      c.snapBox.classList.add('has');
    };
    im.onerror = () => { c.loading = false; };
    im.src = `/v1/mixers/${encodeURIComponent(id)}/snapshot.jpg?n=${++S.snapSeq}`;
  }

  async function stopMixer(id) {
    const ok = await confirmDialog(`Stop mixer “${id}”? Its recordings are made final.`, 'Stop');
    if (!ok) return;
    const c = S.cards.get(id);
    if (c) { c.stopping = true; c.stop.disabled = true; c.stop.textContent = 'Stopping…'; }
    try {
      await api('DELETE', `/v1/mixers/${encodeURIComponent(id)}`);
      toast(`Mixer ${id} stopped.`, 'ok');
    } catch (e) {
      toast(`Stopping ${id}: ${e.message}`);
    } finally {
      if (c) { c.stopping = false; c.stop.textContent = 'Stop'; }
      pollMixers();
      loadRecs();
    }
  }

  // ---- events --------------------------------------------------------------------------

  function openEvents() {
    if (S.es) S.es.close();
    const es = new EventSource('/v1/events');
    S.es = es;
    const conn = $('conn');
    es.onopen = () => { conn.classList.add('on'); conn.title = 'live updates: connected'; };
    es.onerror = () => {
      conn.classList.remove('on');
      conn.title = 'live updates: reconnecting';
      if (es.readyState === EventSource.CLOSED && S.started) {
        // refused (e.g. the session expired): check, and try again later
        clearTimeout(S.timers.es);
        S.timers.es = setTimeout(() => {
          if (!S.started) return;
          // a new cookie (the token still good), else signed out
          api('POST', '/v1/session').then(openEvents, (e) => {
            if (e.status === 401) signOut('Signed out: ' + e.message);
            else es.onerror();
          });
        }, 3000);
      }
    };
    const on = (name, f) => es.addEventListener(name, (e) => {
      let d;
      try { d = JSON.parse(e.data); } catch (_) { return; }
      f(d);
    });
    on('stats', (d) => {
      const m = S.mixers.find((x) => x.mixerID === d.mixerID);
      const c = S.cards.get(String(d.mixerID));
      if (m && c) { m.stats = d.stats; updateCard(c, m); }
    });
    on('stateChanged', () => pollMixers());
    on('outputInfoChanged', (d) => {
      const o = d.outputInfo || {};
      const p = (o.svrFilePathName || '').replace(/^\/+/, '');
      if (p && !isLive(o.svrFilePathName)) {
        S.outInfo.set(p, o);
        updateRecRow(p);
      }
      if ([2, 3, 5, 6].includes(o.state)) scheduleRecs(300);
      pollMixers();
    });
    on('error', (d) => toast(`Mixer ${d.mixerID}: ${d.desc || 'error ' + d.code}`));
  }

  // ---- recordings ----------------------------------------------------------------------

  function scheduleRecs(ms) {
    clearTimeout(S.timers.recs);
    S.timers.recs = setTimeout(loadRecs, ms);
  }

  async function loadRecs() {
    if (!S.started) return;
    if (S.recsLoading) { scheduleRecs(500); return; }
    S.recsLoading = true;
    try {
      const all = [];
      let total = 0;
      for (let page = 1; all.length < LIST_MAX; page++) {
        const r = await api('GET', `/v1/recordings?pageSize=1000&page=${page}`);
        const items = Array.isArray(r && r.recordings) ? r.recordings : [];
        total = r.total || 0;
        all.push(...items);
        if (items.length === 0 || all.length >= total) break;
      }
      S.recs = all;
      S.recTotal = total;
      renderRecs();
    } catch (e) {
      if (e.status !== 401) toast('Recordings: ' + e.message);
    } finally {
      S.recsLoading = false;
    }
    // files being written grow: refresh while one is listed and the view is open
    if (S.started && S.recs.some((r) => r.state === 'recording' || [1, 4].includes((S.outInfo.get(r.path) || {}).state))) {
      if (view() === 'recs' && !document.hidden) scheduleRecs(2000);
    }
  }

  function recDuration(r) {
    if (typeof r.duration === 'number') return r.duration;
    const o = S.outInfo.get(r.path);
    return o && typeof o.duration === 'number' && o.duration > 0 ? o.duration : undefined;
  }

  function filtered() {
    const q = $('f-mixer').value.trim().toLowerCase();
    const from = $('f-from').value ? new Date($('f-from').value + 'T00:00:00').getTime() : -Infinity;
    const to = $('f-to').value ? new Date($('f-to').value + 'T23:59:59.999').getTime() : Infinity;
    const key = S.sort.key;
    const dir = S.sort.dir;
    const val = (r) => (key === 'duration' ? recDuration(r) : r[key]);
    return S.recs
      .filter((r) => !q || String(r.mixerID || '').toLowerCase().includes(q) || r.path.toLowerCase().includes(q))
      .filter((r) => r.modified >= from && r.modified <= to)
      .sort((a, b) => {
        const x = val(a);
        const y = val(b);
        if (x === y) return a.path < b.path ? -1 : 1;
        if (x === undefined) return 1;
        if (y === undefined) return -1;
        return (x < y ? -1 : 1) * dir;
      });
  }

  function recState(r) {
    const o = S.outInfo.get(r.path);
    // a file of a mixer of this service: the output's state (uploads included)
    if (o && r.mixerID !== undefined) {
      if (o.state === 4) return { cls: 'uploading', text: 'uploading', progress: o.progress };
      if (o.state === 5) return { cls: 'uploaded', text: 'uploaded' };
      if (o.state === 6) return { cls: 'upload-failed', text: 'upload failed', title: o.errDesc };
      if (o.state === 3) return { cls: 'failed', text: 'failed', title: o.errDesc };
      if (o.state === 1) return { cls: 'writing', text: 'recording' };
    }
    if (r.state === 'recording') return { cls: 'writing', text: 'recording' };
    if (typeof r.state === 'string') {
      return { cls: r.state.replace(/[^a-z]+/gi, '-'), text: r.state, progress: typeof r.progress === 'number' ? r.progress : undefined };
    }
    return { cls: 'final', text: 'final' };
  }

  function stateCell(td, r) {
    const s = recState(r);
    const b = el('span', 'badge s-' + s.cls, s.text);
    if (s.title) b.title = s.title;
    const parts = [b];
    if (typeof s.progress === 'number') {
      const p = el('progress');
      p.max = 100;
      p.value = s.progress;
      p.title = Math.round(s.progress) + '%';
      parts.push(p, el('span', 'small', Math.round(s.progress) + '%'));
    }
    if (r.where) parts.push(el('span', 'where muted small', r.where));
    td.replaceChildren(...parts);
  }

  function thumb(r) {
    const img = el('img', 'thumb');
    img.loading = 'lazy';
    img.alt = '';
    img.width = 96;
    img.height = 54;
    img.addEventListener('error', () => img.replaceWith(el('span', 'thumb ph')), { once: true });
    img.src = recUrl(r.path, '/thumbnail.jpg');
    return img;
  }

  function recRow(r) {
    const tr = el('tr', 'rec');
    tr.dataset.path = r.path;
    const cell = (cls, label) => {
      const td = el('td', cls);
      if (label) td.dataset.label = label;
      tr.append(td);
      return td;
    };
    const tThumb = cell('c-thumb');
    const tb = el('button', 'thumbbtn');
    tb.type = 'button';
    tb.title = 'Play ' + r.path;
    tb.append(thumb(r));
    tb.addEventListener('click', () => play(r));
    tThumb.append(tb);
    const tName = cell('c-name');
    tName.append(el('span', 'name', r.path));
    const sub = [];
    if (r.mixerID !== undefined) sub.push('mixer ' + r.mixerID);
    if (r.width && r.height) sub.push(`${r.width}×${r.height}`);
    if (Array.isArray(r.codecs) && r.codecs.length) sub.push(r.codecs.join(', '));
    if (sub.length) tName.append(el('span', 'muted small sub', sub.join(' · ')));
    cell('c-date', 'Date').textContent = fmtDate(r.modified);
    cell('num c-dur', 'Duration').textContent = fmtDur(recDuration(r));
    cell('num c-size', 'Size').textContent = fmtBytes(r.size);
    stateCell(cell('c-state', 'State'), r);
    const act = cell('c-act');
    const pb = el('button', 'play', 'Play');
    pb.type = 'button';
    pb.addEventListener('click', () => play(r));
    const dl = el('a', 'button ghost download', 'Download');
    dl.href = recUrl(r.path);
    dl.setAttribute('download', r.path.split('/').pop());
    const del = el('button', 'ghost danger-text delete', 'Delete');
    del.type = 'button';
    del.addEventListener('click', () => deleteRec(r, del));
    act.append(pb, dl, del);
    return tr;
  }

  function renderRecs() {
    const list = filtered();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    if (S.page > pages) S.page = pages;
    // rows whose data did not change are kept (their thumbnails are not fetched again, and a
    // row being clicked is not replaced under the pointer)
    const keep = new Map();
    const rows = list.slice((S.page - 1) * PAGE_SIZE, S.page * PAGE_SIZE).map((r) => {
      const sig = JSON.stringify([r, recState(r), recDuration(r)]);
      const old = S.rows.get(r.path);
      const tr = old && old.sig === sig ? old.tr : recRow(r);
      keep.set(r.path, { tr, sig });
      return tr;
    });
    S.rows = keep;
    $('rec-body').replaceChildren(...rows);
    $('recs-empty').hidden = rows.length > 0;
    $('recs').classList.toggle('is-empty', rows.length === 0);
    $('page-info').textContent = list.length ? `page ${S.page} of ${pages}` : '';
    $('prev').disabled = S.page <= 1;
    $('next').disabled = S.page >= pages;
    const more = S.recTotal > S.recs.length ? ` (the newest ${S.recs.length} of ${S.recTotal} are listed)` : '';
    $('rec-summary').textContent = `${list.length} of ${S.recs.length} shown · ${fmtBytes(list.reduce((a, r) => a + (r.size || 0), 0))}${more}`;
    $('rec-count').textContent = S.recTotal ? String(S.recTotal) : '';
    for (const b of document.querySelectorAll('button.sort')) {
      const k = b.dataset.key;
      b.classList.toggle('asc', k === S.sort.key && S.sort.dir > 0);
      b.classList.toggle('desc', k === S.sort.key && S.sort.dir < 0);
      b.closest('th').setAttribute('aria-sort', k === S.sort.key ? (S.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    $('f-sort').value = `${S.sort.key}-${S.sort.dir > 0 ? 'asc' : 'desc'}`;
  }

  // one row's state, size and duration from an event, without re-rendering the table
  function updateRecRow(path) {
    const r = S.recs.find((x) => x.path === path);
    if (!r) return;
    const o = S.outInfo.get(path);
    if (o && typeof o.fileSize === 'number' && o.fileSize > 0) r.size = o.fileSize;
    for (const tr of $('rec-body').children) {
      if (tr.dataset.path !== path) continue;
      stateCell(tr.querySelector('.c-state'), r);
      tr.querySelector('.c-size').textContent = fmtBytes(r.size);
      tr.querySelector('.c-dur').textContent = fmtDur(recDuration(r));
    }
  }

  async function deleteRec(r, btn) {
    const ok = await confirmDialog(`Delete “${r.path}”? The file is removed from the storage; this cannot be undone.`, 'Delete');
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('DELETE', recUrl(r.path));
      S.recs = S.recs.filter((x) => x.path !== r.path);
      S.recTotal = Math.max(0, S.recTotal - 1);
      renderRecs();
      toast(`Deleted ${r.path}.`, 'ok');
    } catch (e) {
      btn.disabled = false;
      toast(`Cannot delete ${r.path}: ${e.message}`);
    }
    scheduleRecs(500);
  }

  function mediaError(v) {
    const e = v.error;
    if (!e) return '';
    const what = { 1: 'aborted', 2: 'network error', 3: 'cannot decode', 4: 'format not supported' }[e.code] || 'error';
    return what + (e.message ? ': ' + e.message : '');
  }

  function play(r) {
    const v = $('player-video');
    $('player-title').textContent = r.path;
    $('player-error').textContent = '';
    v.src = recUrl(r.path);
    $('player').showModal();
    v.play().catch(() => { /* a media error is shown by the error handler */ });
  }

  function closePlayer() {
    const v = $('player-video');
    v.pause();
    v.removeAttribute('src');
    v.load();
    if ($('player').open) $('player').close();
  }

  // ---- wiring --------------------------------------------------------------------------

  function wire() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    window.addEventListener('hashchange', route);
    $('show-ended').addEventListener('change', renderMixers);
    for (const b of document.querySelectorAll('button.sort')) {
      b.addEventListener('click', () => {
        const k = b.dataset.key;
        S.sort = { key: k, dir: S.sort.key === k ? -S.sort.dir : (k === 'path' ? 1 : -1) };
        S.page = 1;
        renderRecs();
      });
    }
    $('f-sort').addEventListener('change', () => {
      const [key, d] = $('f-sort').value.split('-');
      S.sort = { key, dir: d === 'asc' ? 1 : -1 };
      S.page = 1;
      renderRecs();
    });
    for (const id of ['f-mixer', 'f-from', 'f-to']) {
      $(id).addEventListener('input', () => { S.page = 1; renderRecs(); });
    }
    $('filters').addEventListener('submit', (e) => e.preventDefault());
    $('f-clear').addEventListener('click', () => {
      $('f-mixer').value = '';
      $('f-from').value = '';
      $('f-to').value = '';
      S.page = 1;
      renderRecs();
    });
    $('prev').addEventListener('click', () => { S.page--; renderRecs(); });
    $('next').addEventListener('click', () => { S.page++; renderRecs(); });
    $('player-close').addEventListener('click', closePlayer);
    $('player').addEventListener('close', closePlayer);
    $('player').addEventListener('click', (e) => { if (e.target === $('player')) closePlayer(); });
    $('player-video').addEventListener('error', () => {
      $('player-error').textContent = 'Cannot play: ' + mediaError($('player-video'));
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden && S.started) pollMixers(); });
  }

  boot();
})();
