// cutover dashboard: polls the admin API with the operator's token and shows
// the live pool, both pools, traffic, the deployment, gates and history.
// Every value from the server is set as text, never parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'cutover.adminToken';
  const ACTOR = 'dashboard';
  const POLL_MS = 1500;
  const HISTORY_EVERY_MS = 10000;
  const WINDOW_MS = 5 * 60 * 1000; // how long request rates are kept
  const TRAFFIC_EVERY_MS = 10000; // the traffic history's resolution
  const RATE_MS = 5000; // rates are averaged over about this long
  const POOLS = ['blue', 'green'];
  const TERMINAL = new Set(['completed', 'failed', 'aborted', 'rolled_back']);
  const PHASE_TONE = {
    pending: 'warn', warming: 'warn', validating: 'warn', canary: 'warn', ready: 'info', promoted: 'ok', retiring: 'warn',
    completed: '', failed: 'bad', aborted: '', rolled_back: 'bad',
  };
  const DEADLINE_LABEL = {
    progress: 'Progress deadline', validation: 'Validation deadline', auto_promote: 'Auto-promotes', retention: 'Retention ends', drain: 'Drain deadline', canary_step: 'Canary step ends',
  };
  const ELAPSED_LABEL = {
    progress: 'Warm-up time used', validation: 'Validation time used', auto_promote: 'Until auto-promotion', retention: 'Retention elapsed', drain: 'Drain time used', canary_step: 'Step time used',
  };
  const ACTION_LABEL = { promote: 'Promote', rollback: 'Rollback', abort: 'Abort', retire: 'Retire' };

  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    gen: 0, // bumped on connect and forget: older polls stop
    polling: 0, // gen of the poll in flight, 0 when none
    again: false, // poll again as soon as the one in flight ends
    timer: 0,
    status: null,
    counters: [], // request counters of recent polls: {t, blue, green}
    samples: [], // request rates: {t, blue, green}
    traffic: null, // the last GET /api/v1/traffic answer
    trafficAt: 0, // when it was asked for (Date.now()), 0: ask at the next poll
    historyRev: null,
    historyAt: 0,
    shown: {}, // JSON of what each section shows, to redraw only on change
    skew: 0, // server clock minus browser clock, ms (when more than 2 s)
    busy: false,
    pending: '', // action waiting for confirmation
    pendingRev: 0, // the revision the confirmation was opened at
    pendingNeedsForce: false, // the action is refused without force
    updatedAt: 0,
  };

  // ---- DOM helpers ----

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false || c === '') continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function svgEl(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c);
    return el;
  }

  // changed reports whether v differs from what section key shows now.
  function changed(key, v) {
    const j = JSON.stringify(v);
    if (state.shown[key] === j) return false;
    state.shown[key] = j;
    return true;
  }

  // ---- formatting ----

  const now = () => Date.now() + state.skew;
  const other = (pool) => (pool === 'blue' ? 'green' : 'blue');
  const fmtInt = (n) => (Number(n) || 0).toLocaleString('en-US');
  const fmtRate = (v) => (v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium', hourCycle: 'h23' });
  const isSet = (t) => t && !t.startsWith('0001-');

  function fmtClock(iso) {
    const d = new Date(iso);
    return new Date(now()).toDateString() === d.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
  }

  function fmtDur(ms) {
    let sec = Math.max(0, Math.round(ms / 1000));
    if (sec < 60) return `${sec}s`;
    const d = Math.floor(sec / 86400); sec -= d * 86400;
    const hr = Math.floor(sec / 3600); sec -= hr * 3600;
    const m = Math.floor(sec / 60); sec -= m * 60;
    if (d) return `${d}d ${hr}h`;
    if (hr) return `${hr}h ${m}m`;
    return `${m}m ${sec}s`;
  }

  function relative(iso) {
    const ms = new Date(iso).getTime() - now();
    return ms >= 0 ? `in ${fmtDur(ms)}` : `${fmtDur(-ms)} ago`;
  }

  const sameURL = (a, b) => a.replace(/\/+$/, '') === b.replace(/\/+$/, '');

  // shortURL drops the http:// that every plain replica URL has.
  const shortURL = (u) => u.replace(/^http:\/\//, '');

  // timeEl is a <time> that tick() keeps relative ("3m 2s ago", "in 5s").
  const timeEl = (iso, cls) => h('time', { class: cls, datetime: iso, title: dateFmt.format(new Date(iso)), dataset: { rel: iso } }, relative(iso));

  const percent = (frac) => Math.round(Math.min(1, Math.max(0, frac)) * 100);

  // sizedFill is the filled part of a bar.
  function sizedFill(frac) {
    const f = h('span');
    f.style.width = `${percent(frac)}%`;
    return f;
  }

  // bar is a labelled progress bar whose fill is frac (0..1), or tracks the
  // time between from and to when those are given (tick() moves it).
  function bar(frac, label, value, opts = {}) {
    const b = h('div', {
      class: `bar${opts.ok ? ' bar-ok' : ''}`, role: 'progressbar', 'aria-label': label,
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': percent(frac),
      dataset: opts.from ? { from: opts.from, to: opts.to } : undefined,
    }, sizedFill(frac));
    return h('div', { class: 'progress' }, h('div', { class: 'progress-label' }, h('span', {}, label), h('span', {}, value)), b);
  }

  // ---- admin API ----

  class APIError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code || '';
    }
  }

  // Bidirectional controls (U+202E and the like) in a server string would
  // reorder the text around them on screen (an actor, a model name, a
  // reason); they are shown as their escapes, as the CLI shows them.
  const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function visibleBidi(s) {
    return s.replace(BIDI, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}`, 'X-Cutover-Actor': ACTOR, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new APIError(0, `the gateway did not answer (${e.message})`, 'unreachable');
    }
    const date = Date.parse(resp.headers.get('Date') || '');
    if (!Number.isNaN(date)) {
      const skew = date - Date.now();
      state.skew = Math.abs(skew) > 2000 ? skew : 0;
    }
    let data = null;
    try {
      data = JSON.parse(await resp.text(), (k, v) => (typeof v === 'string' ? visibleBidi(v) : v));
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const e = data && data.error;
      throw new APIError(resp.status, (e && e.message) || `HTTP ${resp.status} ${resp.statusText}`, e && e.code);
    }
    return data;
  }

  // ---- token ----

  function showLogin(message) {
    $('app').hidden = true;
    $('btn-forget').hidden = true;
    $('gateway-meta').replaceChildren();
    $('login').hidden = false;
    $('token-error').textContent = message || '';
    $('token-error').hidden = !message;
    setConn('off', 'not connected');
    const input = $('token-input');
    input.value = '';
    input.focus();
  }

  function forget(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(state.timer);
    Object.assign(state, {
      token: '', gen: state.gen + 1, status: null, counters: [], samples: [], traffic: null, trafficAt: 0, historyRev: null, shown: {},
    });
    hideError();
    showLogin(message);
  }

  async function connect(token) {
    state.token = token;
    const gen = ++state.gen;
    $('token-submit').disabled = true;
    try {
      const st = await api('GET', '/api/v1/status');
      if (gen !== state.gen) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $('login').hidden = true;
      $('app').hidden = false;
      $('btn-forget').hidden = false;
      onStatus(st);
      loadTraffic(gen);
      poll(gen);
    } catch (e) {
      if (gen !== state.gen) return;
      state.token = '';
      showLogin(e.status === 401 ? 'The gateway did not accept this token.' : `Could not connect: ${e.message}`);
    } finally {
      $('token-submit').disabled = false;
    }
  }

  // ---- polling ----

  function refresh() {
    if (state.polling === state.gen) {
      state.again = true;
      return;
    }
    clearTimeout(state.timer);
    poll(state.gen);
  }

  async function poll(gen) {
    if (gen !== state.gen || !state.token) return;
    clearTimeout(state.timer);
    state.polling = gen;
    try {
      const st = await api('GET', '/api/v1/status');
      if (gen !== state.gen) return;
      onStatus(st);
      if (Date.now() - state.trafficAt > TRAFFIC_EVERY_MS) loadTraffic(gen);
      if (st.revision !== state.historyRev || Date.now() - state.historyAt > HISTORY_EVERY_MS) {
        const hist = await api('GET', '/api/v1/history?limit=50');
        if (gen !== state.gen) return;
        state.historyRev = st.revision;
        state.historyAt = Date.now();
        renderHistory(hist.events || []);
      }
    } catch (e) {
      if (gen !== state.gen) return;
      if (e.status === 401) {
        forget('The gateway no longer accepts this token: enter it again.');
        return;
      }
      setConn('bad', `connection lost: ${e.message}; retrying`);
    } finally {
      if (state.polling === gen) state.polling = 0;
    }
    if (gen !== state.gen) return;
    const delay = state.again ? 0 : POLL_MS;
    state.again = false;
    state.timer = setTimeout(() => poll(gen), delay);
  }

  function setConn(kind, text) {
    $('conn').dataset.state = kind;
    $('conn-text').textContent = text;
  }

  function onStatus(st) {
    state.status = st;
    state.updatedAt = Date.now();
    setConn('ok', 'live · updated just now');
    recordTraffic(st);
    renderMeta(st);
    renderLive(st);
    for (const name of POOLS) renderPool(st, name);
    renderChart();
    renderDeployment(st);
    renderCapacity(st);
    renderGates(st.deployment);
    renderActions(st);
  }

  // recordTraffic turns the pools' request counters into rates, each over
  // the last RATE_MS or so, like a Prometheus rate(). A counter that went
  // down (a restart, new replicas) starts the series over.
  function recordTraffic(st) {
    const cur = { t: Date.now() };
    for (const p of POOLS) cur[p] = (st.pools[p] && st.pools[p].requests) || 0;
    const hist = state.counters;
    const prev = hist[hist.length - 1];
    if (prev && POOLS.some((p) => cur[p] < prev[p])) hist.length = 0;
    if (prev && cur.t - prev.t < 500) return; // too close to the last poll to say anything
    hist.push(cur);
    while (hist.length > 2 && cur.t - hist[1].t >= RATE_MS) hist.shift();
    const base = hist[0];
    if (base === cur) return;
    const dt = (cur.t - base.t) / 1000;
    const sample = { t: cur.t };
    for (const p of POOLS) sample[p] = (cur[p] - base[p]) / dt;
    state.samples.push(sample);
    const cut = cur.t - WINDOW_MS - 5000;
    while (state.samples.length && state.samples[0].t < cut) state.samples.shift();
  }

  const currentRate = (pool) => {
    const last = state.samples[state.samples.length - 1];
    return last ? last[pool] : 0;
  };

  // ---- rendering ----

  function renderMeta(st) {
    document.title = `${st.live} live · cutover`;
    const fleet = st.fleet && { leader: st.fleet.leader, store: st.fleet.store, members: (st.fleet.members || []).map((m) => [m.name, m.admin, m.revision]) };
    if (!changed('meta', [st.revision, st.model_name, fleet])) return;
    const items = [h('span', {}, 'gateway ', h('b', {}, window.location.host)), h('span', {}, 'revision ', h('b', {}, String(st.revision)))];
    if (st.model_name) items.push(h('span', {}, 'model name ', h('b', {}, st.model_name)));
    if (st.fleet) items.push(...fleetMeta(st.fleet));
    $('gateway-meta').replaceChildren(...items);
  }

  // fleetMeta shows a fleet's store, leader and members (api.Fleet); a
  // single gateway has none.
  function fleetMeta(f) {
    const store = f.store || {};
    const up = store.healthy
      ? h('b', {}, `${store.kind} reachable`)
      : h('b', { class: 'is-down', title: 'serving the last routing table; changes are refused' }, `${store.kind} UNREACHABLE since `, timeEl(store.since));
    const members = (f.members || []).map((m) => `${m.name}${m.name === f.leader ? ' (leader)' : ''} @${m.revision}`).join(', ');
    return [
      h('span', { 'data-testid': 'fleet-store' }, 'store ', up, store.from_local_copy ? ' (started from the local copy)' : ''),
      h('span', { 'data-testid': 'fleet-leader' }, 'leader ', h('b', {}, f.leader || 'none')),
      h('span', { 'data-testid': 'fleet-members', title: members }, 'fleet ', h('b', {}, `${(f.members || []).length} gateways`), ` (${members})`),
    ];
  }

  function renderLive(st) {
    const prot = st.protection || {};
    if (changed('protection', prot)) {
      const el = $('live-protection');
      el.textContent = prot.summary ? `Protection: ${prot.summary}` : '';
      el.classList.toggle('is-unprotected', !!prot.summary && prot.summary.startsWith('nothing'));
    }
    if (!changed('live', [st.live, st.previous, st.switched_at, st.pools[st.live] && st.pools[st.live].model])) return;
    const p = st.pools[st.live] || {};
    $('live-card').dataset.pool = st.live;
    $('live-pool').textContent = st.live;
    $('live-model').textContent = p.model || 'no model';
    $('live-since').replaceChildren(...(isSet(st.switched_at)
      ? ['switched ', timeEl(st.switched_at), st.previous ? ` from ${st.previous}` : '']
      : ['live since the first start']));
  }

  // poolRole shows the role the gateway gives the pool (api.Pool.Role:
  // live, candidate, retained, retiring, standby), the same word the CLI
  // prints.
  function poolRole(st, name) {
    const p = st.pools[name];
    const d = st.deployment;
    if (p.live) return { text: 'live', cls: 'badge-live' };
    switch (p.role) {
      case 'candidate': return { text: d ? `new · ${d.phase}` : 'candidate', cls: `badge-${(d && PHASE_TONE[d.phase]) || 'info'}` };
      case 'retained': return { text: 'retained', cls: 'badge-info' };
      case 'retiring': return { text: 'retiring', cls: 'badge-warn' };
      default: return { text: 'standby', cls: '' };
    }
  }

  // gatewayQueueTitle sums up a pool's gateway queue (balancer: llm) as
  // `cutover status` does.
  function gatewayQueueTitle(q) {
    const done = q.held - q.waiting;
    const mean = done > 0 ? Math.round(1000 * q.wait_seconds / done) : 0;
    return `${fmtInt(q.held)} held (mean wait ${mean} ms): ${fmtInt(q.dispatched)} dispatched, ${fmtInt(q.timed_out)} timed out, ${fmtInt(q.canceled)} canceled; ${fmtInt(q.overflowed)} overflowed`;
  }

  function renderPool(st, name) {
    const p = st.pools[name];
    const el = $(`pool-${name}`);
    const rate = currentRate(name);
    const role = p ? poolRole(st, name) : null;
    if (!changed(`pool-${name}`, [p, role, fmtRate(rate)])) return;
    if (!p) {
      el.replaceChildren(h('p', { class: 'empty' }, `pool ${name} is not configured`));
      return;
    }
    const total = p.replicas.length;
    const tone = total === 0 ? '' : p.healthy_replicas === total ? 'text-ok' : p.healthy_replicas === 0 ? 'text-bad' : 'text-warn';
    el.classList.toggle('is-live', p.live);
    const rows = p.replicas.flatMap((r) => [h('tr', { dataset: { replica: r.url }, class: r.last_error ? 'has-error' : '' },
      h('td', { class: 'url', title: r.url }, shortURL(r.url),
        r.engine && h('div', { class: 'engine', dataset: { testid: 'engine' }, title: `engine metrics read ${relative(r.engine.scraped_at)} (balancer: llm)` },
          `queue ${fmtInt(r.engine.waiting)} · running ${fmtInt(r.engine.running)} · batch ${r.engine.batch_known ? '' : '≥'}${fmtInt(r.engine.batch || 0)} · KV ${Math.round(r.engine.kv_cache_usage * 100)}% · prefix hits ${Math.round(r.engine.prefix_cache_hit_rate * 100)}%`)),
      h('td', {}, h('span', {
        class: `health ${r.healthy || (r.asleep && !r.last_error) ? 'text-ok' : 'text-bad'}`,
        title: [isSet(r.checked_at) && `checked ${relative(r.checked_at)}`, isSet(r.changed_at) && `changed ${relative(r.changed_at)}`].filter(Boolean).join(', '),
      }, r.asleep && !r.last_error ? 'asleep' : r.healthy ? 'healthy' : 'unhealthy')),
      h('td', { class: 'num' }, fmtInt(r.in_flight)),
      h('td', { class: 'num' }, fmtInt(r.requests))),
    r.last_error && h('tr', { class: 'error-row' }, h('td', { colspan: 4, class: 'last-error' }, r.last_error))]).filter(Boolean);
    el.replaceChildren(
      h('div', { class: 'pool-head' },
        h('h2', { class: 'pool-name' }, name),
        h('span', { class: `badge ${role.cls}` }, role.text),
        h('span', { class: `pool-health ${tone}` }, `${p.healthy_replicas}/${total} healthy`)),
      h('div', { class: 'pool-model', title: 'model id' }, p.model || 'no model'),
      h('dl', { class: 'stats' },
        h('div', {}, h('dt', {}, 'In flight'), h('dd', { dataset: { testid: `inflight-${name}` } }, fmtInt(p.in_flight))),
        h('div', {}, h('dt', {}, 'Requests'), h('dd', {}, fmtInt(p.requests))),
        h('div', {}, h('dt', {}, 'Rate'), h('dd', {}, `${fmtRate(rate)}/s`)),
        p.gateway_queue && h('div', { title: gatewayQueueTitle(p.gateway_queue) },
          h('dt', {}, 'Held at gateway'), h('dd', { dataset: { testid: `gateway-queue-${name}` } }, fmtInt(p.gateway_queue.waiting)))),
      total === 0
        ? h('p', { class: 'empty' }, 'No replicas.')
        : h('table', { class: 'replicas' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Replica'), h('th', { scope: 'col', class: 'col-health' }, 'Health'),
            h('th', { scope: 'col', class: 'num col-num' }, 'In flight'), h('th', { scope: 'col', class: 'num col-num' }, 'Requests'))),
          h('tbody', {}, rows)));
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // The traffic chart: three panels (requests/s, errors as % of requests,
  // TTFT p95) per pool, drawn from GET /api/v1/traffic, which the gateway
  // keeps for the last hour in 10 s points.
  const CHART_PANELS = [
    { id: 'requests', title: 'Requests/s', value: (p) => p.requests_per_second, fmt: (v) => fmtRate(v) },
    { id: 'errors', title: 'Errors (% of requests)', value: (p) => (p.requests_per_second > 0 ? 100 * p.error_ratio : 0), fmt: (v) => `${Number(v.toPrecision(3))}%` },
    { id: 'ttft', title: 'TTFT p95 (ms, streams)', value: (p) => p.ttft_p95_ms, fmt: (v) => `${Math.round(v)} ms` },
  ];
  const CHART_SPANS = [5, 15, 30, 60].map((m) => m * 60000);

  async function loadTraffic(gen) {
    state.trafficAt = Date.now();
    try {
      const tr = await api('GET', '/api/v1/traffic');
      if (gen !== state.gen) return;
      state.traffic = tr;
      renderChart();
    } catch (e) {
      if (gen !== state.gen) return;
      state.trafficAt = 0; // the status poll reports the connection; try again next poll
    }
  }

  // lastValue is the newest non-null value of a panel for pool, or null.
  function lastValue(panel, pool) {
    const pts = (state.traffic && state.traffic.pools[pool]) || [];
    for (let i = pts.length - 1; i >= 0; i--) {
      const v = panel.value(pts[i]);
      if (v !== null && v !== undefined) return v;
    }
    return null;
  }

  function renderChart() {
    const box = $('traffic-chart');
    const live = state.status ? state.status.live : '';
    const tr = state.traffic;
    const W = Math.max(320, box.clientWidth);
    const H = 112;
    const pad = { l: 48, r: 10, t: 8, b: 20 };
    const t1 = now();
    const res = ((tr && tr.resolution_seconds) || 10) * 1000;
    const series = {};
    let oldest = t1;
    for (const name of POOLS) {
      series[name] = ((tr && tr.pools[name]) || []).map((p) => ({ ...p, at: Math.min(t1, new Date(p.t).getTime() + res / 2) }));
      if (series[name].length) oldest = Math.min(oldest, new Date(series[name][0].t).getTime());
    }
    const span = CHART_SPANS.find((ms) => t1 - oldest <= ms) || CHART_SPANS[CHART_SPANS.length - 1];
    const t0 = t1 - span;
    const x = (t) => pad.l + ((t - t0) / span) * (W - pad.l - pad.r);
    $('traffic-sub').textContent = `last ${span / 60000} minutes · ${res / 1000} s points`;
    const panels = CHART_PANELS.map((panel) => {
      const vals = POOLS.flatMap((n) => series[n].filter((p) => p.at >= t0).map(panel.value)).filter((v) => v !== null && v !== undefined);
      const max = niceMax(Math.max(0, ...vals));
      const y = (v) => pad.t + (1 - v / max) * (H - pad.t - pad.b);
      const svg = svgEl('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
      for (let i = 0; i <= 2; i++) {
        const v = (max * i) / 2;
        svg.append(svgEl('line', { class: i ? 'grid' : 'axis', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
        svg.append(svgEl('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(Number(v.toPrecision(3)))));
      }
      for (let i = 5; i >= 0; i--) {
        const m = (span / 60000) * (i / 5);
        svg.append(svgEl('text', { x: x(t1 - m * 60000), y: H - 4, 'text-anchor': i === 5 ? 'start' : i === 0 ? 'end' : 'middle' }, i ? `-${m}m` : 'now'));
      }
      for (const name of [other(live), live]) {
        if (!name) continue;
        // A null value (no streams in a slot) breaks the line.
        const runs = [[]];
        for (const p of series[name]) {
          if (p.at < t0) continue;
          const v = panel.value(p);
          if (v === null || v === undefined) {
            if (runs[runs.length - 1].length) runs.push([]);
            continue;
          }
          runs[runs.length - 1].push([x(p.at), y(v)]);
        }
        for (const run of runs) {
          if (!run.length) continue;
          if (run.length === 1) { // a lone point: a dot
            svg.append(svgEl('circle', { class: `dot dot-${name}`, 'data-pool': name, cx: run[0][0].toFixed(1), cy: run[0][1].toFixed(1), r: 2.5 }));
            continue;
          }
          const coords = run.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`);
          if (name === live && panel.id === 'requests') {
            const base = y(0).toFixed(1);
            svg.append(svgEl('polygon', { class: `area-${name}`, points: `${run[0][0].toFixed(1)},${base} ${coords.join(' ')} ${run[run.length - 1][0].toFixed(1)},${base}` }));
          }
          svg.append(svgEl('polyline', { class: `line line-${name}${name === live ? ' live' : ''}`, 'data-pool': name, points: coords.join(' ') }));
        }
      }
      const latest = POOLS.map((n) => {
        const v = lastValue(panel, n);
        return `${n} ${v === null ? 'no data' : panel.fmt(v)}`;
      }).join(', ');
      svg.setAttribute('aria-label', `${panel.title} per pool over the last ${span / 60000} minutes; latest ${latest}`);
      return h('div', { class: 'chart-panel', dataset: { testid: `chart-${panel.id}` } },
        h('div', { class: 'chart-title' }, h('span', {}, panel.title), h('span', { class: 'chart-now' }, latest)), svg);
    });
    box.replaceChildren(...panels);
    $('traffic-legend').replaceChildren(...POOLS.map((n) => h('span', { class: `k-${n}` }, h('i'), n, h('b', {}, `${fmtRate(currentRate(n))}/s`))));
  }

  function renderDeployment(st) {
    const d = st.deployment;
    const target = d && st.pools[d.pool];
    const warm = d && d.phase === 'warming' && target
      ? target.replicas.filter((r) => r.healthy && d.replicas.some((u) => sameURL(u, r.url))).length
      : null;
    // Gates have their own card; here they only feed the samples bar.
    const prot = d && st.protection && st.protection.deployment === d.id ? st.protection : {};
    if (!changed('deployment', [d && { ...d, gates: d.phase === 'validating' ? d.gates : undefined }, warm, prot])) return;
    const phase = $('deployment-phase');
    const body = $('deployment-body');
    if (!d) {
      phase.className = 'phase';
      phase.textContent = '';
      body.replaceChildren(h('p', { class: 'empty' }, 'No deployment yet. Start one with ',
        h('code', {}, 'cutover deploy --model ID --replica URL'), '.'));
      return;
    }
    phase.className = `phase badge badge-${PHASE_TONE[d.phase] || ''}`;
    phase.textContent = d.phase.replace('_', ' ');
    const rows = [['Phase since', [fmtClock(d.phase_since), ' (', timeEl(d.phase_since), ')']]];
    if (isSet(d.deadline)) {
      rows.push([DEADLINE_LABEL[d.deadline_kind] || 'Deadline',
        [h('span', { class: 'countdown', id: 'deadline-countdown', dataset: { rel: d.deadline } }, relative(d.deadline)), ` at ${fmtClock(d.deadline)}`]]);
    }
    if (d.reason) rows.push(['Reason', d.reason]);
    if (d.waiting) rows.push(['Waiting for', d.waiting]);
    if (d.created_by) rows.push(['Started by', [d.created_by, ' · ', timeEl(d.created_at)]]);
    // What still protects the live pool, as the server says (not after a
    // rollback or a retire that ended it).
    if (isSet(prot.auto_rollback_until)) rows.push(['Gates watch until', `${fmtClock(prot.auto_rollback_until)} (automatic rollback)`]);
    if (isSet(prot.retained_until)) rows.push(['Rollback until', fmtClock(prot.retained_until)]);
    if (isSet(d.retired_at)) rows.push(['Retired', `${d.from} at ${fmtClock(d.retired_at)}`]);
    if (d.pending_hooks && d.pending_hooks.length) rows.push(['Pending hooks', d.pending_hooks.join(', ')]);
    if (d.cost) rows.push(['GPU overlap', `${gpuSecs(d.cost.overlap_gpu_seconds)} (both pools holding GPUs)`]);
    const merged = fleetSources(d);
    if (merged) rows.push(['Fleet', h('span', { dataset: { testid: 'fleet-sources' } }, merged)]);

    const parts = [
      h('div', { class: 'dep-title' }, `${d.id}: ${d.model} → ${d.pool}`),
      h('div', { class: 'dep-sub' }, `from ${d.from || '—'} (${d.from_model || 'no model'}) · ${d.replicas.length} replica${d.replicas.length === 1 ? '' : 's'}`),
      h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    ];
    if (warm !== null) {
      parts.push(bar(warm / Math.max(1, d.replicas.length), 'Replicas healthy', `${warm} of ${d.replicas.length}`, { ok: true }));
    }
    if (d.canary && (d.phase === 'canary' || d.phase === 'ready')) {
      const c = d.canary;
      parts.push(h('div', { id: 'canary-weight' }, bar(c.weight / 100, `Canary weight · step ${c.step} of ${c.steps}`,
        `${c.weight}% of new requests to ${d.pool}${d.phase === 'canary' && !isSet(c.step_ends_at) ? ' · waits for promote' : ''}`, { ok: true })));
    }
    const gated = d.phase === 'validating' && Array.isArray(d.gates) ? d.gates.filter((g) => g.min_samples > 0) : [];
    if (gated.length) {
      const got = gated.reduce((n, g) => n + Math.min(g.samples || 0, g.min_samples), 0);
      const need = gated.reduce((n, g) => n + g.min_samples, 0);
      const passing = d.gates.filter((g) => g.verdict === 'pass').length;
      parts.push(bar(got / need, 'Gate samples collected', `${Math.round((100 * got) / need)}% · ${passing} of ${d.gates.length} gates pass`, { ok: true }));
    }
    if (isSet(d.deadline) && !TERMINAL.has(d.phase)) {
      const since = d.deadline_kind === 'canary_step' && d.canary ? d.canary.step_started_at : d.phase_since;
      const from = new Date(since).getTime();
      const to = new Date(d.deadline).getTime();
      parts.push(bar((now() - from) / Math.max(1, to - from), ELAPSED_LABEL[d.deadline_kind] || 'Time to the deadline',
        `of ${fmtDur(to - from)}`, { from: since, to: d.deadline }));
    }
    if (d.retire_error) {
      parts.push(h('div', { class: 'alert-box', role: 'alert' }, h('strong', {}, `Retirement failing (attempt ${d.retire_attempts || 1}`,
        isSet(d.next_retire_attempt) ? [', next ', timeEl(d.next_retire_attempt)] : '', '): '), d.retire_error));
    }
    if (d.hooks && d.hooks.length) {
      parts.push(h('div', { class: 'subhead' }, 'Hook outcomes'));
      parts.push(h('table', { class: 'hooks' },
        h('thead', {}, h('tr', {}, ['Event', 'Result', 'Hook', 'Time'].map((c) => h('th', { scope: 'col', class: c === 'Time' ? 'num' : '' }, c)))),
        h('tbody', {}, d.hooks.slice().reverse().map(hookRow))));
    }
    body.replaceChildren(...parts);
  }

  // gpuSecs prints GPU-seconds, with GPU-hours beyond an hour.
  function gpuSecs(s) {
    return s >= 3600 ? `${Math.round(s)} GPU-s (${(s / 3600).toFixed(2)} GPU-h)` : `${Math.round(s)} GPU-s`;
  }

  // renderCapacity shows the GPUs each pool holds by state with their
  // GPU-seconds (api.Cost), each agent up or down, a launch and the
  // restores in progress replica by replica, and the replicas still to stop. Hidden without
  // any of them.
  function renderCapacity(st) {
    const cost = st.cost && st.cost.usage && st.cost.usage.length ? st.cost : null;
    const agents = st.agents || [];
    const launch = st.launch || null;
    const orphans = st.orphans || [];
    const restores = st.restores || [];
    if (!changed('capacity', [cost, agents, launch, orphans, restores])) return;
    const card = $('capacity');
    card.hidden = !cost && !agents.length && !launch && !orphans.length && !restores.length;
    if (card.hidden) return;
    const parts = [];
    if (cost) {
      $('capacity-sub').textContent = `overlap ${gpuSecs(cost.overlap_gpu_seconds)}`;
      parts.push(h('table', { class: 'hooks', 'data-testid': 'gpu-usage' },
        h('thead', {}, h('tr', {}, ['Pool', 'State', 'GPUs', 'GPU-seconds'].map((c) => h('th', { scope: 'col', class: c === 'Pool' || c === 'State' ? '' : 'num' }, c)))),
        h('tbody', {}, cost.usage.map((u) => h('tr', {}, h('td', {}, u.pool), h('td', {}, u.state.replace('_', ' ')),
          h('td', { class: 'num' }, String(u.gpus)), h('td', { class: 'num' }, gpuSecs(u.gpu_seconds)))))));
    }
    if (agents.length) {
      parts.push(h('div', { class: 'subhead' }, 'Agents'));
      parts.push(h('ul', { class: 'agents', 'data-testid': 'agents' }, agents.map((a) => h('li', { dataset: { up: String(a.up) } },
        h('b', {}, a.name), ' ', h('span', { class: `badge badge-${a.up ? 'ok' : 'bad'}` }, a.up ? 'up' : 'down'),
        isSet(a.since) ? [' since ', timeEl(a.since)] : '', ` · ${a.free_gpus}/${a.gpus} GPUs free`,
        !a.up && a.last_error ? h('div', { class: 'muted' }, a.last_error) : ''))));
    }
    const slots = (rs) => rs.map((r) => h('li', {},
      h('b', {}, r.agent), ` ${r.state}`, r.id ? ` · ${r.id} (${r.gpus} GPU${r.gpus === 1 ? '' : 's'})` : '', r.error ? ` · ${r.error}` : ''));
    if (launch) {
      parts.push(h('div', { class: 'subhead' }, `Launching ${launch.model}`));
      parts.push(h('ul', { class: 'agents', 'data-testid': 'launch' }, slots(launch.replicas)));
    }
    for (const r of restores) {
      parts.push(h('div', { class: 'subhead' }, `Restoring ${r.pool} to full size: ${r.wanted} replica${r.wanted === 1 ? '' : 's'} of ${r.model}`,
        ` (${r.deployment}, ${r.background ? 'in the background' : 'for the rollback'}) since `, timeEl(r.since)));
      parts.push(h('ul', { class: 'agents', 'data-testid': 'restore' }, slots(r.replicas || [])));
    }
    if (orphans.length) {
      parts.push(h('div', { class: 'subhead' }, 'In no pool, still to stop (retried while the agent does not answer)'));
      parts.push(h('ul', { class: 'agents', 'data-testid': 'orphans' }, orphans.map((r) => h('li', {},
        h('b', {}, r.agent), ` ${r.id} · ${r.url} (${r.gpus} GPU${r.gpus === 1 ? '' : 's'})`))));
    }
    $('capacity-body').replaceChildren(...parts);
  }

  // fleetSources says how many gateways of a fleet the gates' samples and
  // the shadow pairs come from (gates_from_gateways, shadow_from_gateways,
  // as `cutover status` prints them); "" for a single gateway, which has
  // neither.
  function fleetSources(d) {
    const gates = Number(d.gates_from_gateways) || 0;
    const shadow = Number(d.shadow_from_gateways) || 0;
    const gateways = (n) => `${fmtInt(n)} gateway${n === 1 ? '' : 's'}`;
    if (gates > 0 && shadow > 0) return `gate samples from ${gateways(gates)}, shadow pairs from ${fmtInt(shadow)}`;
    if (gates > 0) return `gate samples from ${gateways(gates)}`;
    if (shadow > 0) return `shadow pairs from ${gateways(shadow)}`;
    return '';
  }

  function hookResult(o) {
    const code = o.status ? `HTTP ${o.status}` : o.exit_code ? `exit ${o.exit_code}` : '';
    return [o.ok ? 'ok' : 'failed', code].filter(Boolean).join(' · ');
  }

  function hookRow(o) {
    const detail = [o.error, o.output].filter(Boolean).join('\n');
    return h('tr', {},
      h('td', {}, o.event),
      h('td', {}, h('span', { class: `badge ${o.ok ? 'badge-ok' : 'badge-bad'}` }, hookResult(o))),
      h('td', { class: 'url' }, o.hook, detail && h('details', { class: 'output' }, h('summary', {}, 'output'), h('pre', {}, detail))),
      h('td', { class: 'num nowrap' }, `${o.duration_ms} ms`, h('br'), timeEl(o.start, 'muted')));
  }

  // renderGates shows deployment.gates (see api.Gate): value against
  // threshold, samples against min_samples, verdict. Fields it does not
  // know are listed as they are.
  function renderGates(d) {
    const gates = d && Array.isArray(d.gates) && d.gates.length ? d.gates : null;
    $('gates-card').hidden = !gates;
    if (!changed('gates', [gates, d && d.phase]) || !gates) return;
    $('gates-sub').textContent = d.phase === 'validating' ? 'the candidate against the live pool'
      : d.phase === 'promoted' && isSet(d.post_promotion_until) && new Date(d.post_promotion_until).getTime() > now() ? `the new live pool against its baseline, until ${fmtClock(d.post_promotion_until)}`
        : 'final values';
    const known = new Set(['name', 'value', 'threshold', 'op', 'samples', 'min_samples', 'verdict', 'consecutive_failures', 'detail']);
    const OPS = { '<=': '≤', '>=': '≥', '<': '<', '>': '>' };
    const fmt = (v) => (v === undefined || v === null ? '—'
      : typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(3)))
        : typeof v === 'object' ? JSON.stringify(v) : String(v));
    const tone = (v) => ({ pass: 'badge-ok', fail: 'badge-bad' })[String(v).toLowerCase()] || 'badge-warn';
    const rows = gates.map((g) => {
      const notes = [g.detail, g.consecutive_failures ? `${g.consecutive_failures} failing in a row` : '',
        ...Object.entries(g).filter(([k]) => !known.has(k)).map(([k, v]) => `${k}: ${fmt(v)}`)].filter(Boolean);
      const enough = typeof g.min_samples === 'number' && g.min_samples > 0;
      return h('tr', { dataset: { gate: String(g.name) } },
        h('td', {}, h('span', { class: 'gate-name' }, fmt(g.name)), notes.length ? h('div', { class: 'gate-note' }, notes.join(' · ')) : ''),
        h('td', { class: 'num' }, fmt(g.value)),
        h('td', { class: 'num nowrap' }, g.op ? `${OPS[g.op] || g.op} ` : '', fmt(g.threshold)),
        h('td', { class: 'num' }, enough ? [`${fmt(g.samples)}/${fmt(g.min_samples)}`,
          h('div', { class: `bar mini-bar${(g.samples || 0) >= g.min_samples ? ' bar-ok' : ''}` }, sizedFill((g.samples || 0) / g.min_samples))] : fmt(g.samples)),
        h('td', {}, h('span', { class: `badge ${tone(g.verdict)}` }, fmt(g.verdict))));
    });
    $('gates').replaceChildren(h('table', { class: 'gates' },
      h('thead', {}, h('tr', {}, ['Gate', 'Value', 'Limit', 'Samples', 'Verdict'].map((c, i) => h('th', { scope: 'col', class: i && i < 4 ? 'num' : '' }, c)))),
      h('tbody', {}, rows)));
  }

  function renderHistory(events) {
    if (!changed('history', events)) return;
    const items = events.slice().reverse().map((e) => {
      const bad = (e.hook && !e.hook.ok) || e.action === 'retire_failed' || (e.action === 'phase' && ['failed', 'rolled_back'].includes(e.to));
      const toPool = ['promote', 'rollback', 'init'].includes(e.action) && POOLS.includes(e.to) ? ` to-${e.to}` : '';
      const change = e.hook ? e.hook.event : e.to ? `${e.from ? `${e.from} ` : ''}→ ${e.to}` : '';
      const meta = [`by ${e.actor || 'unknown'}`, e.deployment, `rev ${e.revision}`, fmtClock(e.time)].filter(Boolean).join(' · ');
      return h('li', { class: 'event', dataset: { action: e.action } },
        h('span', { class: `ev-dot${bad ? ' bad' : toPool}`, 'aria-hidden': 'true' }),
        h('div', { class: 'ev-head' }, h('span', { class: 'ev-action' }, e.action.replace('_', ' ')), change && h('span', { class: 'ev-change' }, change), timeEl(e.time)),
        h('div', { class: 'ev-meta' }, meta),
        e.hook
          ? h('div', { class: 'ev-hook' }, h('span', { class: `badge ${e.hook.ok ? 'badge-ok' : 'badge-bad'}` }, hookResult(e.hook)), ` ${e.hook.hook} · ${e.hook.duration_ms} ms`)
          : e.reason && h('p', { class: 'ev-reason' }, e.reason),
        e.hook && !e.hook.ok && e.reason && h('p', { class: 'ev-reason text-bad' }, e.reason));
    });
    $('history').replaceChildren(...(items.length ? items : [h('li', { class: 'empty' }, 'No events yet.')]));
  }

  // ---- actions ----

  // describe says what an action will do, for its button and confirmation.
  function describe(action, st) {
    const live = st.live;
    const standby = other(live);
    const d = st.deployment;
    const active = d && !TERMINAL.has(d.phase) ? d : null;
    const model = (pool) => (st.pools[pool] && st.pools[pool].model) || 'no model';
    switch (action) {
      case 'promote': {
        const deploying = active && ['pending', 'warming', 'validating', 'ready'].includes(active.phase) ? active : null;
        const target = deploying ? deploying.pool : standby;
        const text = deploying
          ? `Deployment ${deploying.id} (${deploying.model}) goes live in ${target}. New requests go to ${target} at once; requests and streams already running on ${live} finish there. before_promote hooks run first and can refuse. ${live} is kept for an instant rollback.`
          : `${target} (${model(target)}) becomes live. New requests go to it at once; requests and streams already running on ${live} finish there. The gateway refuses if ${target} has no healthy replica that lists its model.`;
        return { button: `Promote ${target}`, title: `Promote ${target}?`, text, verb: `Promote ${target}`, danger: false };
      }
      case 'rollback': {
        const cv = verdict('rollback', st);
        if (active && st.weights && cv.allowed && cv.reason) {
          // A canary: the rollback stops it; no live pool changes.
          const why = cv.reason.charAt(0).toUpperCase() + cv.reason.slice(1);
          return { button: 'Stop the canary', title: 'Roll back the canary?', text: `${why}. Requests and streams already running on ${active.pool} finish there.`, verb: 'Stop the canary', danger: false };
        }
        if (!st.previous) return { button: 'Roll back', title: 'Roll back?', text: `${live} has been live since the first start: there is no previous pool to return to, and the gateway will refuse.`, verb: 'Roll back', danger: false };
        const target = st.previous;
        // The server says what this rollback does (at once, after a wake,
        // or after bringing a shrunk pool back to full size).
        const v = verdict('rollback', st);
        let text = v.allowed && v.reason
          ? `${v.reason}. Requests and streams already running on ${live} finish there.`
          : `${target} (${model(target)}) becomes live again. New requests go to it at once; requests and streams already running on ${live} finish there.`;
        if (active && active.phase === 'promoted') text += ` Deployment ${active.id} ends as rolled back and on_rollback hooks run.`;
        // restore: it starts replicas first; the box switches at once instead.
        const now = v.allowed && v.restore > 0
          ? `Now: switch at once onto the replicas ${target} has left, without starting the ${v.restore} missing first (they are started in the background after).`
          : '';
        return { button: `Roll back to ${target}`, title: `Roll back to ${target}?`, text, verb: `Roll back to ${target}`, danger: false, option: now };
      }
      case 'abort': {
        if (!active) return { button: 'Abort', title: 'Abort the deployment?', text: 'No deployment is in progress: the gateway will refuse.', verb: 'Abort', danger: true };
        const text = active.phase === 'promoted'
          ? `Deployment ${active.id} is already live: aborting it is a rollback. ${active.from} becomes live again and on_rollback hooks run.`
          : `Deployment ${active.id} (${active.model} in ${active.pool}) stops now; ${active.pool} never receives client traffic.`;
        return { button: `Abort ${active.id}`, title: `Abort deployment ${active.id}?`, text, verb: `Abort ${active.id}`, danger: true };
      }
      case 'retire': {
        if (active && active.phase === 'retiring') {
          return {
            button: `Retire ${active.from}`, title: `Retry retiring ${active.from}?`, force: true, verb: 'Retire now', danger: true,
            text: `${active.from} is being retired${active.retire_error ? ` and its on_retire hooks fail (${active.retire_error})` : ''}. This runs them again now.`,
          };
        }
        if (active && active.phase === 'promoted') {
          return {
            button: `Retire ${active.from}`, title: `Retire ${active.from} now?`, verb: `Retire ${active.from}`, danger: true,
            text: `The retention of ${active.from} ends now: it is drained and the on_retire hooks run (that is where its GPUs are freed). After that, rolling back to ${active.from} is refused.`,
          };
        }
        return { button: 'Retire', title: 'Retire the old pool?', text: 'No promoted deployment holds an old pool: the gateway will refuse.', verb: 'Retire', danger: true };
      }
    }
    return null;
  }

  // verdict is the server's answer for action in the status (see
  // api.Action): allowed, else code, reason and whether force overrides it.
  // An older gateway without it allows everything (the server still checks).
  function verdict(action, st) {
    const a = st.actions && st.actions[action];
    return a || { allowed: true, reason: '' };
  }

  function renderActions(st) {
    for (const action of Object.keys(ACTION_LABEL)) {
      const btn = $(`btn-${action}`);
      const v = verdict(action, st);
      btn.textContent = describe(action, st).button;
      // Refused: disabled with the reason, unless force can override it.
      const refused = !v.allowed && !v.force;
      btn.disabled = state.busy || refused;
      btn.title = v.allowed ? v.reason : `${v.allowed === false && v.force ? 'Needs force: ' : 'Refused: '}${v.reason}`;
      btn.dataset.code = v.code || '';
      btn.classList.toggle('is-refused', refused);
      btn.classList.toggle('needs-force', !v.allowed && !!v.force);
    }
  }

  // FORCE_TEXT is what force does, per action, for the confirmation.
  const FORCE_TEXT = {
    promote: 'Force: make it live although it did not pass what the configuration asks (recorded as forced in the history).',
    retire: 'Force: end the post-promotion checks and their automatic rollback too.',
  };

  function openConfirm(action) {
    if (!state.status || state.busy) return;
    const st = state.status;
    const c = describe(action, st);
    const v = verdict(action, st);
    if (!v.allowed && !v.force) return; // the button is disabled: nothing to confirm
    const needsForce = !v.allowed && v.force;
    state.pending = action;
    state.pendingRev = st.revision;
    state.pendingNeedsForce = needsForce;
    $('confirm-title').textContent = c.title;
    $('confirm-text').textContent = needsForce ? `Refused without force: ${v.reason}` : c.text;
    $('confirm-force-row').hidden = !(c.force || c.option || needsForce);
    $('confirm-force').checked = false;
    $('confirm-force-text').textContent = needsForce ? (FORCE_TEXT[action] || 'Force: do it anyway.')
      : c.option || 'Force: mark it retired without the failing hooks (you freed its GPUs yourself; replicas started through the agents are still stopped).';
    const yes = $('confirm-yes');
    yes.textContent = needsForce ? `${c.verb} (force)` : c.verb;
    yes.className = `btn ${c.danger || needsForce ? 'btn-danger' : 'btn-primary'}`;
    yes.disabled = needsForce;
    // Escape closes the dialog without a value, keeping the last one: clear it.
    $('confirm').returnValue = '';
    $('confirm').showModal();
  }

  async function runAction(action, force, rev) {
    state.busy = true;
    renderActions(state.status);
    hideError();
    try {
      // The revision the operator decided on: the server refuses
      // (revision_mismatch) if the state changed since.
      const body = { expected_revision: rev };
      if (force && (action === 'retire' || action === 'promote')) body.force = true;
      if (force && action === 'rollback') body.now = true; // the box's option: see describe
      const res = await api('POST', `/api/v1/${action}`, body);
      let first = '';
      if (res.restored) first = ` First started ${res.restored} replica(s) of ${res.live} through the agents (${(res.restore_ms / 1000).toFixed(1)} s).`;
      if (res.woke) first += ` First woke ${res.woke} replica(s) of ${res.live} (${(res.wake_ms / 1000).toFixed(1)} s).`;
      showNotice(action === 'promote' || action === 'rollback'
        ? (res.note
          ? `${ACTION_LABEL[action]}${res.forced ? ' (forced)' : ''}: ${res.note}, revision ${res.revision}.`
          : `${ACTION_LABEL[action]}${res.forced ? ' (forced)' : ''}: ${res.live} is live (was ${res.previous}), revision ${res.revision}.${first}`)
        : `${ACTION_LABEL[action]}: deployment ${res.id} is ${res.phase}.`);
    } catch (e) {
      if (e.status === 401) {
        forget('The gateway no longer accepts this token: enter it again.');
        return;
      }
      // The server's reason often starts with "<action> refused: ".
      const reason = e.message.replace(new RegExp(`^${action} refused: `, 'i'), '');
      showError(`${ACTION_LABEL[action]} ${e.status >= 400 && e.status < 500 ? 'refused' : 'failed'}${e.status ? ` (HTTP ${e.status})` : ''}:`, reason);
    } finally {
      state.busy = false;
      if (state.status) renderActions(state.status);
    }
    refresh();
  }

  function showError(title, text) {
    $('error-title').textContent = title;
    $('error-text').textContent = text;
    $('error-banner').hidden = false;
    $('notice').hidden = true;
  }

  function hideError() {
    $('error-banner').hidden = true;
  }

  let noticeTimer = 0;
  function showNotice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 8000);
  }

  // tick keeps relative times, countdowns and time bars current between
  // polls.
  function tick() {
    for (const el of document.querySelectorAll('[data-rel]')) el.textContent = relative(el.dataset.rel);
    for (const el of document.querySelectorAll('.bar[data-from]')) {
      const from = new Date(el.dataset.from).getTime();
      const to = new Date(el.dataset.to).getTime();
      const pct = percent((now() - from) / Math.max(1, to - from));
      el.firstChild.style.width = `${pct}%`;
      el.setAttribute('aria-valuenow', String(pct));
    }
    if (state.status && $('conn').dataset.state === 'ok') {
      const age = Date.now() - state.updatedAt;
      $('conn-text').textContent = age < 2500 ? 'live · updated just now' : `live · updated ${fmtDur(age)} ago`;
    }
  }

  // ---- wiring ----

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    if (token) connect(token);
  });
  $('btn-forget').addEventListener('click', () => forget('Token forgotten. Enter it again to reconnect.'));
  $('error-dismiss').addEventListener('click', hideError);
  for (const action of Object.keys(ACTION_LABEL)) {
    $(`btn-${action}`).addEventListener('click', () => openConfirm(action));
  }
  $('confirm-no').addEventListener('click', () => $('confirm').close('cancel'));
  $('confirm-yes').addEventListener('click', () => $('confirm').close('yes'));
  $('confirm-force').addEventListener('change', () => {
    if (state.pendingNeedsForce) $('confirm-yes').disabled = !$('confirm-force').checked;
  });
  $('confirm').addEventListener('close', () => {
    const action = state.pending;
    state.pending = '';
    $('confirm-yes').disabled = false;
    if ($('confirm').returnValue === 'yes' && action) runAction(action, $('confirm-force').checked, state.pendingRev);
  });
  window.addEventListener('resize', () => { if (state.status) renderChart(); });
  setInterval(tick, 1000);

  if (state.token) connect(state.token);
  else showLogin('');
})();
