// lara dashboard: plain JavaScript (no framework, no build step), served from the binary.
// Talks to the service's JSON API with the bearer token the operator enters once (kept in the
// tab's session storage) and follows the alarm stream (Server-Sent Events).
(function () {
  'use strict';

  const TOKEN_KEY = 'lara-token';
  const REFRESH_MS = 5000;
  const SCAN_ROWS = 100000; // newest rows of an entity scanned for the 1 h / 24 h alarm counts
  const HOUR = 3600e3;
  const DAY = 24 * HOUR;
  const LIVE_MAX = 100;
  const STATES = ['warmup', 'normal', 'suspect', 'collecting', 'adapted'];
  // Sort order of states: the ones that need a look first.
  const STATE_RANK = { suspect: 0, collecting: 1, adapted: 2, warmup: 3, normal: 4 };
  const ADAPTATIONS = ['adapt', 'reselect', 'retrain'];
  const EVENT_STYLE = {
    train: { color: '#6b7480', label: 'T', name: 'train' },
    suspect: { color: '#c77a00', label: 'S', name: 'suspect' },
    collect: { color: '#b5422b', label: 'C', name: 'collect' },
    dismiss: { color: '#8a93a0', label: 'D', name: 'dismiss' },
    adapt: { color: '#2f6fdd', label: 'A', name: 'adapt' },
    reselect: { color: '#1f9bb0', label: 'R', name: 'reselect' },
    validate: { color: '#2d8a4e', label: 'V', name: 'validate' },
    rollback: { color: '#8e3fb5', label: 'B', name: 'roll back' },
    retrain: { color: '#0b5a33', label: 'N', name: 'retrain' },
    error: { color: '#d6333f', label: '!', name: 'error' },
  };
  const SERIES_COLORS = ['#2f6fdd', '#e0862d', '#2d8a4e', '#8e3fb5', '#1f9bb0', '#b5422b', '#6b7480', '#c2a100'];

  const S = {
    token: null,
    entities: [],
    sort: { key: 'state', dir: 1 },
    alarmCache: new Map(), // entity -> {next, prevAnom, starts: [{row, t}]}
    eventCache: new Map(), // entity -> {count, lastAdapt}
    models: new Map(), // model id -> Promise<model>
    liveMarks: new Map(), // entity -> alarm id
    liveIds: new Set(),
    es: null,
    timer: null,
    kick: () => {},
    gen: 0, // bumped on every view change: stale answers are dropped
    ent: null, // the entity view's state
  };

  // ------------------------------------------------------------------ helpers

  const $ = (sel, root) => (root || document).querySelector(sel);

  /** Builds an element: h('td', {class: 'num', dataset: {x: 1}}, 'text', child, ...). */
  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'style') e.style.cssText = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) {
      if (k == null || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  const enc = encodeURIComponent;

  function fmt(x, digits) {
    if (x == null || typeof x !== 'number' || !isFinite(x)) return '—';
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
    return x.toLocaleString('en-US', { maximumFractionDigits: digits == null ? 3 : digits });
  }

  function int(x) {
    return x == null ? '—' : Number(x).toLocaleString('en-US');
  }

  /** A stored time stamp as epoch ms, or null when it is not a time (numbers below 1e8 are
   *  taken for counters, not epoch seconds). */
  function parseTime(s) {
    if (s == null) return null;
    const str = String(s).trim();
    if (/^-?\d+(\.\d+)?$/.test(str)) {
      const n = Number(str);
      if (n >= 1e11) return n; // epoch milliseconds
      if (n >= 1e8) return n * 1000; // epoch seconds
      return null;
    }
    if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i.test(str)) {
      const t = Date.parse(str.replace(' ', 'T').replace(/\s+/g, ''));
      return isNaN(t) ? null : t;
    }
    return null;
  }

  const pad2 = (n) => String(n).padStart(2, '0');

  /** A stored time stamp for display: local date and time when it is a time (the time alone
   *  when `short` and it is today), else as stored. */
  function stamp(s, short) {
    if (s == null) return '—';
    const t = parseTime(s);
    if (t == null) return String(s);
    const d = new Date(t);
    const day = d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate());
    const time = pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    return short && d.toDateString() === new Date().toDateString() ? time : day + ' ' + time;
  }

  function ago(ms) {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    return Math.round(s / 3600) + ' h ago';
  }

  function showFatal(msg) {
    const f = $('#fatal');
    f.textContent = msg;
    f.hidden = !msg;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** Calls the API with the token; a 401 sends the operator back to the token prompt. */
  async function api(path, opts) {
    const o = opts || {};
    const headers = {};
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    let r;
    try {
      r = await fetch(path, { method: o.method || 'GET', headers, body: o.body, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'the service does not answer (' + e.message + ')');
    }
    const text = await r.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (r.status === 401) {
      tokenRefused('The service refused the token (it may have changed). Enter it again.');
      throw new ApiError(401, 'token refused');
    }
    if (!r.ok) throw new ApiError(r.status, (body && body.error) || 'HTTP ' + r.status);
    return body;
  }

  function model(id) {
    if (!S.models.has(id)) {
      const p = api('/v1/models/' + enc(id)).catch((e) => {
        S.models.delete(id);
        throw e;
      });
      S.models.set(id, p);
    }
    return S.models.get(id);
  }

  function columnNames(m, dims) {
    return (dims || []).map((j) => (m && m.columns && m.columns[j] != null ? m.columns[j] : 'column ' + j));
  }

  // ------------------------------------------------------------------ token

  /** 'ok' or 'refused' for a token ('' = none). */
  async function probe(token) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const r = await fetch('/v1/entities', { headers, cache: 'no-store' });
    if (r.status === 401) return 'refused';
    if (!r.ok) throw new Error('GET /v1/entities: HTTP ' + r.status);
    return 'ok';
  }

  function showLogin(error) {
    stopAll();
    document.body.dataset.view = 'login';
    $('#app').hidden = true;
    $('#forget-token').hidden = true;
    $('#login').hidden = false;
    const err = $('#token-error');
    err.textContent = error || '';
    err.hidden = !error;
    const input = $('#token-input');
    input.value = '';
    input.focus();
  }

  function tokenRefused(msg) {
    if (document.body.dataset.view === 'login') return;
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = null;
    showLogin(msg);
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const token = $('#token-input').value.trim();
    const err = $('#token-error');
    if (!token) {
      err.textContent = 'Enter the token.';
      err.hidden = false;
      return;
    }
    $('#token-submit').disabled = true;
    try {
      const p = await probe(token);
      if (p === 'refused') {
        showLogin('Token refused by the service. Check it and try again.');
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      enter(token);
    } catch (e) {
      err.textContent = 'Cannot check the token: ' + e.message;
      err.hidden = false;
    } finally {
      $('#token-submit').disabled = false;
    }
  }

  async function start() {
    $('#token-form').addEventListener('submit', submitToken);
    $('#forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      S.token = null;
      showLogin('');
    });
    bindStatic();
    try {
      const saved = sessionStorage.getItem(TOKEN_KEY);
      if (saved) {
        if ((await probe(saved)) === 'ok') return enter(saved);
        sessionStorage.removeItem(TOKEN_KEY);
        return showLogin('The stored token was refused; enter it again.');
      }
      // A service without --token-file answers without one.
      if ((await probe('')) === 'ok') return enter('');
      showLogin('');
    } catch (e) {
      showLogin('The service does not answer: ' + e.message);
    }
  }

  function enter(token) {
    S.token = token;
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#forget-token').hidden = !token;
    connectLive();
    route();
  }

  function stopAll() {
    S.gen++;
    clearTimeout(S.timer);
    if (S.es) {
      S.es.close();
      S.es = null;
    }
    setLive('off');
  }

  // ------------------------------------------------------------------ routing

  function route() {
    if (!S.token && S.token !== '') return;
    S.gen++;
    clearTimeout(S.timer);
    const m = location.hash.match(/^#\/entity\/(.+)$/);
    if (m) showEntity(decodeURIComponent(m[1]));
    else showFleet();
  }

  /** Runs `refresh` now and every REFRESH_MS while the view is current; `S.kick()` runs it
   *  again soon. Never two at once (the fleet's alarm scan is incremental). */
  function loop(refresh) {
    const gen = S.gen;
    let running = false;
    let again = false;
    const tick = async () => {
      if (gen !== S.gen) return;
      clearTimeout(S.timer);
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        await refresh(gen);
        if (gen === S.gen) showFatal('');
      } catch (e) {
        if (e.status !== 401 && gen === S.gen) showFatal(e.message);
      }
      running = false;
      if (gen !== S.gen) return;
      if (again) {
        again = false;
        tick();
      } else {
        S.timer = setTimeout(tick, REFRESH_MS);
      }
    };
    S.kick = () => setTimeout(tick, 200);
    tick();
  }

  function bindStatic() {
    window.addEventListener('hashchange', route);
    $('#state-filter').addEventListener('change', renderFleet);
    $('#id-filter').addEventListener('input', renderFleet);
    for (const th of document.querySelectorAll('#fleet th[data-sort]')) {
      th.addEventListener('click', () => {
        const k = th.dataset.sort;
        S.sort = S.sort.key === k ? { key: k, dir: -S.sort.dir } : { key: k, dir: 1 };
        renderFleet();
      });
    }
    $('#adapt-now').addEventListener('click', () => control('adapt'));
    $('#rollback').addEventListener('click', () => control('rollback'));
    $('#range').addEventListener('change', () => {
      if (S.ent) {
        S.ent.zoom = null;
        refreshEntity(S.gen, true).catch((e) => showFatal(e.message));
      }
    });
    $('#cols-none').addEventListener('click', () => S.ent && selectColumns([]));
    $('#cols-top').addEventListener('click', () => {
      if (!S.ent) return;
      // The alarms' top columns, the most frequent first (at most 6).
      const freq = new Map();
      for (const ep of S.ent.episodes || []) {
        (ep.first.top_dims || []).slice(0, 3).forEach((j, k) => freq.set(j, (freq.get(j) || 0) + 3 - k));
      }
      const top = [...freq.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([j]) => j);
      if (top.length) selectColumns(top);
    });
    $('#reset-zoom').addEventListener('click', () => {
      if (S.ent) {
        S.ent.zoom = null;
        drawCharts();
      }
    });
    let resize = null;
    window.addEventListener('resize', () => {
      clearTimeout(resize);
      resize = setTimeout(() => S.ent && S.ent.plots.length && drawCharts(), 150);
    });
  }

  // ------------------------------------------------------------------ fleet

  function showFleet() {
    document.body.dataset.view = 'fleet';
    $('#entity-view').hidden = true;
    $('#fleet-view').hidden = false;
    destroyPlots();
    S.ent = null;
    loop(refreshFleet);
  }

  async function refreshFleet(gen) {
    const data = await api('/v1/entities');
    const ents = data.entities || [];
    const ids = new Set(ents.map((e) => e.id));
    for (const m of [S.alarmCache, S.eventCache]) for (const k of [...m.keys()]) if (!ids.has(k)) m.delete(k);
    await Promise.all(ents.map((e) => Promise.all([scanAlarms(e), scanEvents(e)]).catch((err) => (e.error = err.message))));
    if (gen !== S.gen) return;
    S.entities = ents.map(enrich);
    renderFleet();
    $('#fleet-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  /** Adds the episode starts (alarms) among the entity's rows not scanned yet. */
  async function scanAlarms(e) {
    let c = S.alarmCache.get(e.id);
    if (!c || e.rows < c.next) {
      c = { next: Math.max(0, e.rows - SCAN_ROWS), prevAnom: -2, starts: [] };
      S.alarmCache.set(e.id, c);
    }
    if (e.rows <= c.next) return;
    const to = e.rows - 1;
    if (e.last_alarm_row != null && e.last_alarm_row >= c.next) {
      const r = await api('/v1/entities/' + enc(e.id) + '/alarms?from=' + c.next + '&to=' + to);
      for (const a of r.alarms || []) {
        if (a.row !== c.prevAnom + 1) c.starts.push({ row: a.row, t: parseTime(a.timestamp) });
        c.prevAnom = a.row;
      }
    }
    c.next = to + 1;
    const now = Date.now();
    c.starts = c.starts.filter((s) => (s.t != null && s.t >= now - DAY) || s.row >= e.rows - 1440);
  }

  async function scanEvents(e) {
    const c = S.eventCache.get(e.id);
    if (c && c.count === e.events) return;
    let last = null;
    if (e.events > 0) {
      const r = await api('/v1/entities/' + enc(e.id) + '/events');
      for (const ev of r.events || []) if (ADAPTATIONS.includes(ev.kind)) last = ev;
    }
    S.eventCache.set(e.id, { count: e.events, lastAdapt: last });
  }

  function enrich(e) {
    const c = S.alarmCache.get(e.id) || { starts: [] };
    const timed = c.starts.some((s) => s.t != null) || parseTime(e.last_timestamp) != null;
    const now = Date.now();
    let a1h, a24h;
    if (timed) {
      a1h = c.starts.filter((s) => s.t != null && s.t >= now - HOUR).length;
      a24h = c.starts.filter((s) => s.t != null && s.t >= now - DAY).length;
    } else {
      a1h = c.starts.filter((s) => s.row >= e.rows - 60).length;
      a24h = c.starts.filter((s) => s.row >= e.rows - 1440).length;
    }
    const ev = S.eventCache.get(e.id);
    const la = ev && ev.lastAdapt;
    return Object.assign({}, e, {
      a1h,
      a24h,
      byRows: !timed,
      lastAdapt: la,
      last_adapt_row: la ? la.row : null,
    });
  }

  function compare(a, b, key) {
    if (key === 'state') return (STATE_RANK[a.state] ?? 9) - (STATE_RANK[b.state] ?? 9) || a.id.localeCompare(b.id);
    const x = a[key];
    const y = b[key];
    if (x == null && y == null) return a.id.localeCompare(b.id);
    if (x == null) return 1;
    if (y == null) return -1;
    if (typeof x === 'number' && typeof y === 'number') return x - y || a.id.localeCompare(b.id);
    return String(x).localeCompare(String(y)) || a.id.localeCompare(b.id);
  }

  function renderFleet() {
    const stateFilter = $('#state-filter').value;
    const idFilter = $('#id-filter').value.trim().toLowerCase();
    const counts = {};
    for (const e of S.entities) counts[e.state] = (counts[e.state] || 0) + 1;
    const cs = $('#state-counts');
    cs.replaceChildren(
      ...STATES.filter((s) => counts[s]).map((s) =>
        h('span', { class: 'badge', dataset: { state: s, count: counts[s] }, title: 'entities in state ' + s }, s + ' ' + counts[s]),
      ),
    );
    const { key, dir } = S.sort;
    const rows = S.entities
      .filter((e) => (!stateFilter || e.state === stateFilter) && (!idFilter || e.id.toLowerCase().includes(idFilter)))
      .sort((a, b) => dir * compare(a, b, key));
    for (const th of document.querySelectorAll('#fleet th[data-sort]')) {
      if (th.dataset.sort === key) th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    const tbody = $('#fleet tbody');
    tbody.replaceChildren(...rows.map(fleetRow));
    $('#fleet-empty').hidden = rows.length > 0;
  }

  function countCell(n, byRows, span) {
    return h(
      'td',
      { class: 'num' + (n > 0 ? ' hot' : ''), title: byRows ? 'no time stamps: alarms among the last ' + span + ' rows' : null },
      String(n),
      byRows ? h('span', { class: 'tag' }, 'rows') : null,
    );
  }

  function fleetRow(e) {
    const live = S.liveMarks.get(e.id);
    const href = '#/entity/' + enc(e.id);
    const la = e.lastAdapt;
    const tr = h(
      'tr',
      {
        class: live ? 'live-alarm' : null,
        dataset: Object.assign({ entity: e.id, state: e.state }, live ? { liveAlarm: live } : {}),
        onclick: (ev) => {
          if (ev.target.tagName !== 'A') location.hash = href;
        },
      },
      h('td', { class: 'id' }, h('a', { href }, e.id), live ? h('span', { class: 'dot', title: 'live alarm ' + live }) : null),
      h('td', { class: 'state' }, h('span', { class: 'badge', dataset: { state: e.state } }, e.state)),
      h('td', { title: e.cold_start ? 'shared base model, cold start' : null }, e.model, e.cold_start ? h('span', { class: 'tag' }, 'base') : null),
      h('td', { class: 'num version' }, String(e.model_version)),
      h('td', { class: 'num' }, int(e.rows)),
      countCell(e.a1h, e.byRows, 60),
      countCell(e.a24h, e.byRows, 1440),
      h('td', { class: 'num alarms' }, int(e.alarms)),
      h('td', { class: 'num' }, e.last_alarm_row == null ? '—' : int(e.last_alarm_row)),
      h('td', { class: 'last-adapt' }, la ? la.kind + ' · row ' + int(la.row) + ' · v' + la.model_version : '—'),
      h('td', { class: 'muted', title: e.last_timestamp == null ? null : stamp(e.last_timestamp) + ' (stored: ' + e.last_timestamp + ')' }, stamp(e.last_timestamp, true)),
    );
    if (e.error) tr.title = 'partly loaded: ' + e.error;
    return tr;
  }

  // ------------------------------------------------------------------ entity

  function showEntity(id) {
    document.body.dataset.view = 'entity';
    $('#fleet-view').hidden = true;
    $('#entity-view').hidden = false;
    $('#entity-view').dataset.entity = id;
    if (!S.ent || S.ent.id !== id) {
      destroyPlots();
      S.ent = { id, key: null, info: null, model: null, selected: null, results: [], events: [], plots: [], zoom: null };
      $('#entity-title').textContent = id;
      $('#entity-state').textContent = '';
      $('#entity-meta').textContent = '';
      $('#columns').replaceChildren();
      $('#alarm-list tbody').replaceChildren();
      $('#explain').hidden = true;
      $('#action-result').hidden = true;
      $('#chart').removeAttribute('data-ready');
    }
    loop((gen) => refreshEntity(gen, false));
  }

  async function refreshEntity(gen, force) {
    const st = S.ent;
    if (!st) return;
    const e = await api('/v1/entities/' + enc(st.id));
    if (gen !== S.gen || st !== S.ent) return;
    st.info = e;
    renderEntityHeader(e);
    if (!st.model || st.model.id !== e.model) {
      try {
        st.model = await model(e.model);
      } catch (err) {
        st.model = { id: e.model, columns: [] };
      }
      renderColumns();
    }
    const range = Number($('#range').value) || 2000;
    const key = e.rows + ':' + e.events + ':' + range;
    if (!force && key === st.key) return;
    const from = Math.max(0, e.rows - range);
    const base = '/v1/entities/' + enc(st.id);
    const [sc, ev] = await Promise.all([
      api(base + '/scores?values=true&from=' + from + '&limit=' + range),
      api(base + '/events'),
    ]);
    if (gen !== S.gen || st !== S.ent) return;
    st.key = key;
    st.from = from;
    st.results = sc.results || [];
    st.events = ev.events || [];
    st.episodes = episodes(st.results);
    $('#cols-top').disabled = st.episodes.length === 0;
    drawCharts();
    renderAlarms();
  }

  function renderEntityHeader(e) {
    const b = $('#entity-state');
    b.textContent = e.state;
    b.dataset.state = e.state;
    $('#entity-meta').textContent =
      'model ' + e.model + (e.cold_start ? ' (shared base)' : '') + ' · version ' + e.model_version + ' · policy ' + e.policy +
      ' · ' + int(e.rows) + ' rows · ' + int(e.alarms) + ' alarms' + (e.last_timestamp ? ' · last time stamp ' + stamp(e.last_timestamp) : '');
  }

  function columnSummary() {
    const st = S.ent;
    const cols = (st.model && st.model.columns) || [];
    const sel = [...st.selected].sort((a, b) => a - b).map((j) => cols[j]);
    const shown = sel.length > 6 ? sel.slice(0, 6).join(', ') + ', …' : sel.join(', ') || 'none';
    $('#columns-summary').textContent = 'Columns: ' + shown + ' (' + sel.length + ' of ' + cols.length + ')';
  }

  /** Selects `js` (column indices) and redraws. */
  function selectColumns(js) {
    const st = S.ent;
    st.selected = new Set(js);
    for (const box of document.querySelectorAll('#columns input[data-index]')) box.checked = st.selected.has(Number(box.dataset.index));
    columnSummary();
    drawCharts();
  }

  function renderColumns() {
    const st = S.ent;
    const cols = (st.model && st.model.columns) || [];
    if (!st.selected) st.selected = new Set(cols.slice(0, 4).map((_, j) => j));
    $('#columns-box').open = cols.length > 1 && cols.length <= 8;
    columnSummary();
    $('#columns').replaceChildren(
      ...cols.map((c, j) =>
        h(
          'label',
          {},
          h('input', {
            type: 'checkbox',
            checked: st.selected.has(j),
            dataset: { column: c, index: j },
            onchange: (ev) => {
              if (ev.target.checked) st.selected.add(j);
              else st.selected.delete(j);
              columnSummary();
              drawCharts();
            },
          }),
          h('span', { class: 'swatch', style: 'background:' + SERIES_COLORS[j % SERIES_COLORS.length] }),
          c,
        ),
      ),
    );
  }

  /** Runs of consecutive anomalous rows among the results shown. */
  function episodes(results) {
    const out = [];
    let cur = null;
    for (let i = 0; i < results.length; i++) {
      const r = results[i];
      if (r.is_anomaly) {
        if (cur && r.row === cur.end + 1) {
          cur.end = r.row;
          cur.n++;
          if (r.score > cur.peak) cur.peak = r.score;
        } else {
          cur = { start: r.row, end: r.row, n: 1, first: r, peak: r.score };
          out.push(cur);
        }
      } else {
        cur = null;
      }
    }
    return out;
  }

  function destroyPlots() {
    if (S.ent) {
      for (const p of S.ent.plots) p.destroy();
      S.ent.plots = [];
    }
    $('#marker-tip').hidden = true;
  }

  function num(x) {
    return typeof x === 'number' && isFinite(x) ? x : null;
  }

  function drawCharts() {
    const st = S.ent;
    if (!st) return;
    const keepZoom = st.zoom;
    destroyPlots();
    const res = st.results;
    $('#chart-empty').hidden = res.length > 0;
    $('#chart').hidden = res.length === 0;
    renderEventLegend();
    if (!res.length) return;
    const cols = (st.model && st.model.columns) || [];
    const xs = res.map((r) => r.row);
    const lastX = xs[xs.length - 1];
    const xPad = Math.max(1, Math.round((lastX - xs[0]) * 0.015));
    const tsByRow = new Map();
    for (const r of res) if (r.timestamp != null) tsByRow.set(r.row, r.timestamp);
    const sel = [...st.selected].filter((j) => j < cols.length).sort((a, b) => a - b);
    const width = Math.max(300, $('#chart').clientWidth - 10);
    const xValue = (u, v) => (v == null ? '—' : int(v) + (tsByRow.has(v) ? ' · ' + stamp(tsByRow.get(v)) : ''));
    // Rows are whole numbers: whole-number ticks only.
    const incrs = [];
    for (let m = 1; m <= 1e9; m *= 10) incrs.push(m, 2 * m, 5 * m);
    const xAxis = { label: 'row', labelSize: 18, size: 36, incrs, values: (u, vals) => vals.map((v) => int(v)) };
    let syncing = false;
    const onScale = (u, key) => {
      if (key !== 'x') return;
      const { min, max } = u.scales.x;
      markRange(u);
      if (syncing) return;
      syncing = true;
      for (const p of st.plots) if (p !== u) p.setScale('x', { min, max });
      syncing = false;
      const full = min <= xs[0] && max >= xs[xs.length - 1];
      st.zoom = full ? null : { min, max };
    };
    const common = {
      width,
      cursor: { sync: { key: 'lara-' + st.id, setSeries: false }, drag: { x: true, y: false } },
      // A little room after the newest row, so a decision taken there stays visible.
      scales: { x: { time: false, range: (u, min, max) => [min, max >= lastX ? lastX + xPad : max] } },
      legend: { live: true },
      hooks: { setScale: [onScale] },
    };
    const valuesData = [xs, ...sel.map((j) => res.map((r) => (r.values ? num(r.values[j]) : null)))];
    const valuesOpts = Object.assign({}, common, {
      height: 230,
      plugins: [bandsPlugin(st), markersPlugin(st, false)],
      series: [
        { label: 'row', value: xValue },
        ...sel.map((j) => ({ label: cols[j], stroke: SERIES_COLORS[j % SERIES_COLORS.length], width: 1.4, points: { show: false }, value: (u, v) => fmt(v) })),
      ],
      axes: [xAxis, { label: 'value', labelSize: 18, size: 64, values: (u, vals) => vals.map((v) => fmt(v)) }],
    });
    const scoreOpts = Object.assign({}, common, {
      height: 190,
      plugins: [bandsPlugin(st), markersPlugin(st, true)],
      series: [
        { label: 'row', value: xValue },
        { label: 'score', stroke: '#18202b', width: 1.4, points: { show: false }, value: (u, v) => fmt(v) },
        { label: 'threshold', stroke: '#d6333f', width: 1.2, dash: [6, 4], points: { show: false }, value: (u, v) => fmt(v) },
      ],
      axes: [xAxis, { label: 'score', labelSize: 18, size: 64, values: (u, vals) => vals.map((v) => fmt(v)) }],
    });
    const scoreData = [xs, res.map((r) => num(r.score)), res.map((r) => num(r.threshold))];
    $('#chart-values').replaceChildren();
    $('#chart-score').replaceChildren();
    // A chart without any column selected would be empty: it is left out.
    if (sel.length) st.plots.push(new uPlot(valuesOpts, valuesData, $('#chart-values')));
    st.plots.push(new uPlot(scoreOpts, scoreData, $('#chart-score')));
    if (keepZoom) for (const p of st.plots) p.setScale('x', keepZoom);
    for (const p of st.plots) markRange(p);
    const c = $('#chart');
    c.dataset.rows = String(res.length);
    c.dataset.columns = sel.map((j) => cols[j]).join(',');
    c.dataset.ready = '1';
  }

  /** Notes the rows a chart shows on its panel (data-x-min, data-x-max), for whoever reads the
   *  page (tests included). */
  function markRange(u) {
    const panel = u.root && u.root.parentNode;
    if (!panel || !panel.dataset || u.scales.x.min == null) return;
    panel.dataset.xMin = String(Math.round(u.scales.x.min));
    panel.dataset.xMax = String(Math.round(u.scales.x.max));
  }

  /** Shades the rows of every alarm episode. */
  function bandsPlugin(st) {
    return {
      hooks: {
        drawAxes: [
          (u) => {
            const { left, top, width, height } = u.bbox;
            const ctx = u.ctx;
            ctx.save();
            ctx.beginPath();
            ctx.rect(left, top, width, height);
            ctx.clip();
            ctx.fillStyle = 'rgba(214, 51, 63, 0.14)';
            for (const ep of st.episodes || []) {
              const x0 = u.valToPos(ep.start - 0.5, 'x', true);
              const x1 = u.valToPos(ep.end + 0.5, 'x', true);
              ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  /** One hoverable marker per monitor decision; its evidence shows on hover. */
  function markersPlugin(st, labelled) {
    return {
      hooks: {
        draw: [
          (u) => {
            for (const m of u.over.querySelectorAll('.marker')) m.remove();
            const { min, max } = u.scales.x;
            for (const ev of st.events) {
              if (ev.row < min || ev.row > max) continue;
              const style = EVENT_STYLE[ev.kind] || { color: '#555', label: '?', name: ev.kind };
              const m = h('div', {
                class: 'marker' + (labelled ? ' labelled' : ''),
                dataset: { kind: ev.kind, row: ev.row, label: labelled ? style.label : '' },
                style: 'left:' + u.valToPos(ev.row, 'x') + 'px;--mk:' + style.color,
                'aria-label': ev.kind + ' at row ' + ev.row,
              });
              m.addEventListener('mouseenter', () => {
                showTip(m, ev);
                highlightRows(st, ev.rows);
              });
              m.addEventListener('mouseleave', () => {
                $('#marker-tip').hidden = true;
                highlightRows(st, null);
              });
              u.over.append(m);
            }
          },
        ],
      },
    };
  }

  /** Shades the rows a decision used (`rows: [first, last]`) on every chart; null clears. */
  function highlightRows(st, rows) {
    for (const u of st.plots) {
      for (const d of u.over.querySelectorAll('.used-rows')) d.remove();
      if (!rows) continue;
      const x0 = u.valToPos(rows[0] - 0.5, 'x');
      const x1 = u.valToPos(rows[1] + 0.5, 'x');
      u.over.append(h('div', { class: 'used-rows', style: 'left:' + x0 + 'px;width:' + Math.max(2, x1 - x0) + 'px' }));
    }
  }

  function showTip(marker, ev) {
    const tip = $('#marker-tip');
    const style = EVENT_STYLE[ev.kind] || { name: ev.kind };
    const rows = [
      ['row', int(ev.row)],
      ['state after', ev.state],
      ['model version', ev.model_version],
    ];
    if (ev.statistic != null) rows.push(['change statistic', fmt(ev.statistic)]);
    if (ev.rows) rows.push(['rows used', int(ev.rows[0]) + ' – ' + int(ev.rows[1])]);
    if (ev.nll_before != null) rows.push(['mean NLL before', fmt(ev.nll_before)]);
    if (ev.nll_after != null) rows.push(['mean NLL after', fmt(ev.nll_after)]);
    if (ev.elapsed_ms != null) rows.push(['took', fmt(ev.elapsed_ms, 1) + ' ms']);
    tip.replaceChildren(
      h('b', {}, style.name),
      ev.detail ? h('div', {}, ev.detail) : null,
      h('table', {}, rows.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, String(v))))),
    );
    tip.dataset.kind = ev.kind;
    tip.hidden = false;
    const chart = $('#chart').getBoundingClientRect();
    const r = marker.getBoundingClientRect();
    let left = r.left - chart.left + 14;
    if (left + tip.offsetWidth > chart.width) left = Math.max(0, r.left - chart.left - tip.offsetWidth - 4);
    tip.style.left = left + 'px';
    tip.style.top = r.top - chart.top + 18 + 'px';
  }

  function renderEventLegend() {
    const st = S.ent;
    const kinds = [...new Set((st.events || []).map((e) => e.kind))];
    $('#event-legend').replaceChildren(
      h('span', { class: 'key' }, h('span', { class: 'sw', style: 'background:rgba(214,51,63,0.25)' }), 'alarm rows'),
      h('span', { class: 'key' }, h('span', { class: 'sw', style: 'background:none;border-top:2px dashed #d6333f;height:0' }), 'threshold'),
      ...kinds.map((k) => {
        const s = EVENT_STYLE[k] || { color: '#555', label: '?', name: k };
        return h('span', { class: 'key' }, h('span', { class: 'sw', style: 'background:' + s.color + ';color:#fff;font-size:9px;text-align:center;line-height:12px' }, s.label), s.name);
      }),
      kinds.length ? h('span', {}, '(hover a marker for its evidence)') : h('span', {}, 'no monitor decision yet'),
    );
  }

  function renderAlarms() {
    const st = S.ent;
    const cols = (st.model && st.model.columns) || [];
    const eps = (st.episodes || []).slice().reverse().slice(0, 200);
    $('#alarm-list tbody').replaceChildren(
      ...eps.map((ep) => {
        const continued = ep.start === st.from && st.from > 0;
        const id = st.id + ':' + ep.start;
        const top = columnNames({ columns: cols }, (ep.first.top_dims || []).slice(0, 3));
        return h(
          'tr',
          {
            dataset: { alarm: id, row: ep.start },
            title: continued ? 'this episode may have started before the rows shown' : 'click to zoom to it',
            onclick: (ev) => {
              if (ev.target.tagName === 'BUTTON') return;
              const pad = Math.max(20, ep.n * 2);
              st.zoom = { min: ep.start - pad, max: ep.end + pad };
              for (const p of st.plots) p.setScale('x', st.zoom);
            },
          },
          h('td', {}, id, continued ? h('span', { class: 'tag' }, 'cut') : null),
          h('td', { class: 'num' }, int(ep.start)),
          h('td', { class: 'muted', title: ep.first.timestamp == null ? null : 'stored: ' + ep.first.timestamp }, stamp(ep.first.timestamp)),
          h('td', { class: 'num' }, int(ep.n)),
          h('td', { class: 'num' }, fmt(ep.first.score)),
          h('td', { class: 'num' }, fmt(ep.first.threshold)),
          h('td', { class: 'cols' }, top.map((c) => h('span', {}, c))),
          h('td', {}, h('button', { type: 'button', class: 'explain', onclick: () => explain(id) }, 'Explain')),
        );
      }),
    );
    $('#alarm-empty').hidden = eps.length > 0;
  }

  async function explain(id) {
    const box = $('#explain');
    box.hidden = false;
    box.dataset.alarm = id;
    box.replaceChildren(h('span', { class: 'muted' }, 'Explaining ' + id + ' …'));
    try {
      const x = await api('/v1/alarms/' + enc(id) + '/explain');
      box.replaceChildren(
        h('b', {}, 'Alarm ' + x.id),
        h('span', { class: 'muted' }, ' · score ' + fmt(x.score) + ' (threshold ' + fmt(x.threshold) + ') · p_anomaly ' + (typeof x.p_anomaly !== 'number' ? '—' : x.p_anomaly > 0.999999 ? '> 0.999999' : x.p_anomaly.toFixed(6)) + ' · window of ' + x.window_rows + ' rows'),
        h(
          'table',
          {},
          h('tr', {}, ['column', 'value', 'window mean', 'window min', 'window max', 'z'].map((t) => h('th', {}, t))),
          (x.top_columns || []).map((c) =>
            h('tr', {}, h('td', {}, c.column), h('td', {}, fmt(c.value)), h('td', {}, fmt(c.window_mean)), h('td', {}, fmt(c.window_min)), h('td', {}, fmt(c.window_max)), h('td', {}, fmt(c.z, 2))),
          ),
        ),
        h('p', {}, x.reason ? 'Reason (LLM): ' + x.reason : typeof x.llm === 'string' ? 'LLM: ' + x.llm : x.llm && x.llm.error ? 'LLM: ' + x.llm.error : ''),
      );
    } catch (e) {
      box.replaceChildren(h('span', { class: 'error' }, 'Explain ' + id + ': ' + e.message));
    }
  }

  async function control(kind) {
    const st = S.ent;
    if (!st) return;
    const question =
      kind === 'adapt'
        ? 'Adapt ' + st.id + ' now on its newest rows?\n\nThe new model is validated on the next rows and rolled back automatically if it does worse.'
        : 'Roll ' + st.id + ' back to the pattern the latest switch replaced?';
    if (!window.confirm(question)) return;
    const out = $('#action-result');
    for (const b of [$('#adapt-now'), $('#rollback')]) b.disabled = true;
    try {
      const r = await api('/v1/entities/' + enc(st.id) + '/' + kind, { method: 'POST' });
      const kinds = (r.events || []).map((e) => e.kind);
      out.textContent =
        (kind === 'adapt' ? 'Adapt now' : 'Roll back') + ': done. State ' + r.entity.state + ', model version ' + r.entity.model_version +
        (kinds.length ? '; decisions: ' + kinds.join(', ') : '') + '.';
      out.className = 'result';
      out.dataset.outcome = 'ok';
    } catch (e) {
      out.textContent = (kind === 'adapt' ? 'Adapt now' : 'Roll back') + ' refused: ' + e.message;
      out.className = 'result failed';
      out.dataset.outcome = 'failed';
    } finally {
      out.hidden = false;
      for (const b of [$('#adapt-now'), $('#rollback')]) b.disabled = false;
    }
    await refreshEntity(S.gen, true).catch((e) => showFatal(e.message));
  }

  // ------------------------------------------------------------------ live alarms

  function setLive(state) {
    const s = $('#live-status');
    s.dataset.live = state;
    s.textContent = { on: 'live', off: 'live: off', retrying: 'live: reconnecting', connecting: 'live: connecting' }[state] || state;
  }

  function connectLive() {
    if (S.es) S.es.close();
    const url = '/v1/alarms/stream' + (S.token ? '?access_token=' + enc(S.token) : '');
    const es = new EventSource(url);
    S.es = es;
    setLive('connecting');
    es.onopen = () => setLive('on');
    es.addEventListener('alarm', (m) => {
      let a;
      try {
        a = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      addLiveAlarm(a);
    });
    es.onerror = () => {
      if (S.es !== es) return;
      setLive('retrying');
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 401): check the token, then reconnect.
        setTimeout(async () => {
          if (S.es !== es) return;
          try {
            if ((await probe(S.token)) === 'refused') return tokenRefused('The service refused the token. Enter it again.');
          } catch (_) {
            /* still unreachable: retry */
          }
          if (S.es === es) connectLive();
        }, 3000);
      }
    };
  }

  function addLiveAlarm(a) {
    if (!a || !a.id || S.liveIds.has(a.id)) return;
    S.liveIds.add(a.id);
    const list = $('#live-alarms');
    const received = Date.now();
    const when = h('span', { class: 'when', dataset: { at: received } }, new Date(received).toLocaleTimeString());
    const cols = h('span', { class: 'cols' });
    const li = h(
      'li',
      { dataset: { alarm: a.id, entity: a.entity } },
      when,
      h('a', { href: '#/entity/' + enc(a.entity) }, a.entity),
      ' · row ' + int(a.row),
      h('div', { class: 'what' }, 'score ' + fmt(a.score) + ' > ' + fmt(a.threshold), a.timestamp != null ? ' · ' + stamp(a.timestamp, true) : '', ' ', cols),
    );
    list.prepend(li);
    while (list.children.length > LIVE_MAX) list.lastElementChild.remove();
    $('#live-empty').hidden = true;
    // Top columns by name, once the entity's model is known.
    const ent = S.entities.find((e) => e.id === a.entity);
    const fill = (m) => {
      const names = columnNames(m, (a.top_dims || []).slice(0, 3));
      if (names.length) cols.textContent = '· top: ' + names.join(', ');
    };
    if (ent) model(ent.model).then(fill, () => fill(null));
    else if (S.ent && S.ent.id === a.entity && S.ent.model) fill(S.ent.model);
    // Mark the fleet row now; the next refresh brings the counts.
    S.liveMarks.set(a.entity, a.id);
    const tr = document.querySelector('#fleet tbody tr[data-entity="' + CSS.escape(a.entity) + '"]');
    if (tr) tr.replaceWith(fleetRow(S.entities.find((e) => e.id === a.entity) || Object.assign({}, ent || {}, { id: a.entity })));
    // The counts (fleet) or the chart (this entity's view) follow at once.
    if (!S.ent || S.ent.id === a.entity) S.kick();
  }

  setInterval(() => {
    for (const w of document.querySelectorAll('#live-alarms .when')) w.title = ago(Number(w.dataset.at));
  }, 10000);

  document.addEventListener('DOMContentLoaded', () => {
    if (typeof window.uPlot !== 'function') {
      showFatal('The chart library did not load (/assets/uplot.iife.min.js).');
    }
    start();
  });
})();
