//! The page's inline stylesheet and script, kept apart from the Rust that
//! renders the HTML around them.

pub(super) const STYLE: &str = r#"
*{box-sizing:border-box}
html{scroll-padding-top:4rem}
body{font-family:system-ui,sans-serif;margin:0;padding:0 1rem 2rem;line-height:1.4;color:#111;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.5rem}h3{font-size:1rem}
section,article{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:.75rem 0}
.status{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.25rem 1rem;margin:0}
.status dt{font-weight:600}.status dd{margin:0;overflow-wrap:anywhere}
.badge{padding:.1rem .5rem;border-radius:1rem;color:#fff}.ok{background:#1a7f37}.bad{background:#b42318}
.row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
.scroll{position:relative;overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;min-width:100%}
th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top;white-space:nowrap}
td.num{text-align:right}tr.diff td{background:#fff4e5}
button,select{font:inherit;padding:.4rem .8rem;border:1px solid #555;border-radius:4px;background:#fff;min-height:2.5rem}
button:hover{background:#eef}
button:focus-visible,select:focus-visible{outline:3px solid #1f6feb;outline-offset:2px}
button[disabled]{opacity:.6}
#result{position:sticky;top:0;background:#fafafa;min-height:1.5rem;padding:.25rem 0;word-break:break-word}
#result.err{color:#b42318}
.sr{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:10rem}
.conflict td{white-space:normal;overflow-wrap:break-word;min-width:6rem}
.pick{display:flex;gap:.4rem;align-items:flex-start;cursor:pointer}
.pick input{width:1.2rem;height:1.2rem;margin:.1rem 0 0;flex:none}
input[type=radio]:focus-visible{outline:3px solid #1f6feb;outline-offset:2px}
.note{color:#444;font-size:.9rem}
.charts{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem}
.chart{margin:.25rem 0;flex:1 1 14rem;max-width:28rem}
.chart svg{width:100%;height:4rem;background:#f5f7fa;border-radius:4px;display:block}
.bar{fill:#1f6feb}.bar.bad{fill:#b42318}
.spark{width:12rem;max-width:100%;height:1.6rem;vertical-align:middle;margin-left:.5rem;background:#f5f7fa;border-radius:4px}
.spark polyline{fill:none;stroke:#1f6feb;stroke-width:1.5}
.progress{background:#e7f0ff;border:1px solid #9bbcf5;border-radius:6px;padding:.4rem .75rem;margin:.5rem 0}
@media (max-width:600px){body{padding:0 .5rem}section,article{padding:.5rem}
.conflict thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.conflict table,.conflict tbody,.conflict tr,.conflict th,.conflict td{display:block;min-width:0}
.conflict tr{border-bottom:1px solid #ddd;padding:.3rem 0}
.conflict th,.conflict td{border:0;padding:.15rem .25rem}
.conflict td{display:flex;gap:.5rem;align-items:flex-start}
.conflict td::before{content:attr(data-label);font-weight:600;width:4.5rem;flex:none}}
"#;

pub(super) const SCRIPT: &str = r#"
(function () {
  const headers = TOKEN ? { Authorization: 'Bearer ' + TOKEN } : {};
  const result = document.getElementById('result');
  const progress = document.getElementById('progress');
  const live = document.getElementById('live');
  let last = '';
  function show(msg, err) { result.textContent = msg; result.className = err ? 'err' : ''; }
  async function api(method, path, body) {
    const h = Object.assign({}, headers);
    // Every write says JSON, bodyless ones too: the node refuses others.
    const write = method !== 'GET';
    if (write) h['Content-Type'] = 'application/json';
    const r = await fetch(path, { method: method, headers: h, body: write ? JSON.stringify(body === undefined ? {} : body) : undefined });
    const j = await r.json().catch(function () { return null; });
    if (!r.ok) throw new Error((j && j.error && j.error.message) || ('HTTP ' + r.status));
    return j;
  }
  function path(d, kind, action) { return '/api/database/' + kind + '/' + encodeURIComponent(d.model || '') + '/' + encodeURIComponent(d.key || '') + (action ? '/' + action : ''); }
  // Swaps in a fresh live part, keeping radio choices and the focused
  // control. Calls while one runs coalesce into one more afterwards.
  let reloading = null, again = false;
  function reload() {
    if (reloading) { again = true; return reloading; }
    reloading = swap().finally(function () {
      reloading = null;
      if (again) { again = false; return reload(); }
    });
    return reloading;
  }
  async function swap() {
    const url = location.pathname + '?fragment=1' + (TOKEN ? '&token=' + encodeURIComponent(TOKEN) : '');
    const r = await fetch(url, { headers: headers });
    if (!r.ok) return;
    const html = await r.text();
    const picks = {};
    live.querySelectorAll('input[type=radio]:checked').forEach(function (i) { picks[i.name] = i.value; });
    // A choice made in a drop-down but not applied yet survives the swap too.
    const chosen = {};
    live.querySelectorAll('select[id]').forEach(function (s) {
      const d = Array.from(s.options).find(function (o) { return o.defaultSelected; });
      if (d && d.value !== s.value) chosen[s.id] = s.value;
    });
    const a = document.activeElement;
    const same = function (el) {
      if (!a || !live.contains(a) || el.tagName !== a.tagName || el.type !== a.type) return false;
      if (a.type === 'radio') return el.name === a.name && el.value === a.value;
      if (a.type === 'submit') { const f = a.form, g = el.form; return !!f && !!g && f.dataset.model === g.dataset.model && f.dataset.key === g.dataset.key; }
      const x = a.dataset, y = el.dataset;
      return ['act', 'model', 'key', 'keep', 'direction'].every(function (k) { return x[k] === y[k]; }) && (a.id || '') === (el.id || '');
    };
    const hadFocus = a && live.contains(a);
    live.innerHTML = html;
    live.querySelectorAll('input[type=radio]').forEach(function (i) { if (picks[i.name] !== undefined) i.checked = picks[i.name] === i.value; });
    Object.keys(chosen).forEach(function (id) { const s = document.getElementById(id); if (s) s.value = chosen[id]; });
    if (hadFocus) { const el = Array.from(live.querySelectorAll('button, input, select')).find(same); if (el) el.focus(); }
    relTimes();
    drawLag();
  }
  // Times read as "3 min ago" (exact on hover), against the node's clock:
  // `skew` is the node's time minus this browser's, from the last status.
  let skew = 0;
  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return null;
    const s = Math.round((Date.now() + skew - t) / 1000), a = Math.abs(s);
    if (a < 5) return 'just now';
    const v = a < 60 ? a + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
    return s < 0 ? 'in ' + v : v + ' ago';
  }
  function relTimes() {
    document.querySelectorAll('time[datetime]').forEach(function (el) {
      const r = ago(el.getAttribute('datetime'));
      if (r) el.textContent = r;
    });
  }
  // Replication lag as this page samples it (the node keeps no history):
  // the status's `replicationLagSeconds` every few seconds, the last ten
  // minutes drawn as a line.
  const lags = [];
  function lagWords(x) { return x < 10 ? x.toFixed(1) + ' s' : x < 120 ? Math.round(x) + ' s' : x < 7200 ? Math.round(x / 60) + ' min' : Math.round(x / 3600) + ' h'; }
  function sampleLag(s) {
    const x = s && s.replicationLagSeconds;
    if (typeof x !== 'number') return;
    const now = Date.now();
    lags.push([now, x]);
    while (lags.length && lags[0][0] < now - 600000) lags.shift();
    const el = document.getElementById('st-lag');
    if (el) { el.textContent = lagWords(x); el.dataset.lag = String(x); }
    drawLag();
  }
  function drawLag() {
    const svg = document.getElementById('lag-chart');
    if (!svg || lags.length < 2) return;
    const t0 = lags[0][0], span = Math.max(lags[lags.length - 1][0] - t0, 1);
    const top = Math.max.apply(null, lags.map(function (p) { return p[1]; }).concat([1]));
    const pts = lags.map(function (p) { return ((p[0] - t0) / span * 240).toFixed(1) + ',' + (38 - p[1] / top * 36).toFixed(1); }).join(' ');
    let line = svg.querySelector('polyline');
    if (!line) { line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline'); svg.appendChild(line); }
    line.setAttribute('points', pts);
    svg.querySelector('title').textContent = 'Replication lag over the last ' + Math.max(1, Math.round(span / 60000)) + ' min: now ' + lagWords(lags[lags.length - 1][1]) + ', at most ' + lagWords(top);
  }
  // Runs known to be over: a progress event still on its way about one is
  // stale. Runs take turns, so one that started before the last known end
  // (both times from the node's clock) is over too, even if this page never
  // showed it.
  const ended = new Set();
  let shown = null, lastEnd = NaN;
  function stale(p) {
    return ended.has(p.startedAt) || Date.parse(p.startedAt) <= lastEnd;
  }
  function showProgress(s) {
    const p = s && s.syncing && !stale(s.syncing) ? s.syncing : null;
    shown = p ? p.startedAt : shown;
    if (!p) { progress.hidden = true; progress.textContent = ''; return; }
    progress.hidden = false;
    progress.textContent = 'Sync running: ' + p.direction + ' (' + p.trigger + '), ' + p.phase + (p.table ? ' ' + p.table : '') + ', ' + p.rows + ' rows so far';
  }
  function summary(rep) {
    if (!rep || typeof rep !== 'object') return 'done';
    let processed = 0, failed = 0, conflicts = 0;
    for (const m in (rep.results || {})) { const r = rep.results[m]; processed += r.recordsProcessed || 0; failed += r.recordsFailed || 0; conflicts += r.conflicts || 0; }
    const errs = Object.keys(rep.errors || {});
    return (rep.success ? 'success' : 'failed') + ': ' + processed + ' rows processed, ' + failed + ' failed, ' + conflicts + ' conflicts' + (errs.length ? ' (' + rep.errors[errs[0]] + ')' : '');
  }
  // While a sync started here runs, the status is polled fast for progress.
  async function syncing(label, body) {
    show('Syncing ' + label + '…');
    const timer = setInterval(function () { if (!streaming) api('GET', '/api/database/status').then(showProgress, function () {}); }, 300);
    try {
      const rep = await api('POST', '/api/database/status', body);
      const end = Date.parse(rep && rep.timestamp);
      if (!Number.isNaN(end) && !(end <= lastEnd)) lastEnd = end;
      show('Sync ' + label + ' ' + summary(rep), rep && rep.success === false);
    }
    finally { clearInterval(timer); if (shown) ended.add(shown); showProgress(null); }
  }
  // The verification's result, built with DOM nodes and textContent only
  // (row values are data, never markup). It stays until the next one.
  function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
  function showVerify(rep) {
    const box = document.getElementById('verify'), body = document.getElementById('verify-body');
    body.replaceChildren();
    body.appendChild(el('p', rep.consistent
      ? 'The replica matches the server (' + rep.pending + ' rows with local changes not yet pushed).'
      : rep.differences + ' rows differ from the server (' + rep.pending + ' rows with local changes listed apart).', rep.consistent ? '' : 'err'));
    (rep.models || []).forEach(function (m) {
      if (!m.differences.length && !m.pending.length) return;
      const art = el('article'); art.dataset.model = m.model;
      art.appendChild(el('h3', m.model + ': ' + m.localRows + ' local rows, ' + m.serverRows + ' server rows, ' + m.differences.length + ' differing'));
      if (m.differences.length) {
        const wrap = el('div', undefined, 'scroll'), t = el('table'), head = el('tr');
        ['Key', 'Columns', 'Local', 'Server'].forEach(function (x) { const th = el('th', x); th.scope = 'col'; head.appendChild(th); });
        t.appendChild(el('thead')).appendChild(head);
        const tb = t.appendChild(el('tbody'));
        m.differences.forEach(function (d) {
          const tr = el('tr'); tr.className = 'difference';
          tr.appendChild(el('td', JSON.stringify(d.key)));
          tr.appendChild(el('td', d.columns.join(', ')));
          tr.appendChild(el('td', d.local === null ? '(missing)' : JSON.stringify(d.local), 'wrap'));
          tr.appendChild(el('td', d.server === null ? '(missing)' : JSON.stringify(d.server), 'wrap'));
          tb.appendChild(tr);
        });
        wrap.appendChild(t); art.appendChild(wrap);
        const b = el('button', 'Resync ' + m.model); b.type = 'button'; b.dataset.act = 'resync'; b.dataset.model = m.model;
        art.appendChild(b);
      }
      if (m.pending.length) art.appendChild(el('p', 'Local changes not yet pushed: ' + m.pending.map(function (p) { return JSON.stringify(p.key) + ' ' + p.status; }).join('; ')));
      body.appendChild(art);
    });
    box.hidden = false;
  }
  async function act(btn) {
    const d = btn.dataset;
    if (d.act === 'discard' && !confirm('Discard the local change to ' + d.model + ' ' + d.key + ' and take the server\'s row?')) return;
    if (d.act === 'resolve' && d.keep === 'server' && !confirm('Keep the server\'s row for ' + d.model + ' ' + d.key + '? Your local change to it will be discarded.')) return;
    if (d.act === 'resync' && !confirm('Copy ' + d.model + ' again from the server? Rows with local changes are kept.')) return;
    btn.disabled = true;
    try {
      if (d.act === 'sync') await syncing(d.direction, { direction: d.direction });
      else if (d.act === 'sync-model') await syncing(d.model, { direction: 'BIDIRECTIONAL', models: [d.model] });
      else if (d.act === 'resolve') { await api('POST', path(d, 'conflicts', 'resolve'), { keep: d.keep }); show('Resolved ' + d.model + ' ' + d.key + ' (kept ' + d.keep + ')'); }
      else if (d.act === 'verify') { show('Verifying…'); const rep = await api('GET', '/api/database/verify'); showVerify(rep); show(rep.consistent ? 'Verified: the replica matches the server' : 'Verified: ' + rep.differences + ' rows differ', !rep.consistent); }
      else if (d.act === 'resync') { show('Resyncing ' + d.model + '…'); const rep = await api('POST', '/api/database/resync', { model: d.model }); document.getElementById('verify').hidden = true; show('Resync ' + d.model + ' ' + summary(rep), rep && rep.success === false); }
      else if (d.act === 'retry') { await api('POST', path(d, 'failed', 'retry')); show('Queued ' + d.model + ' ' + d.key + ' again'); }
      else if (d.act === 'discard') { await api('POST', path(d, 'failed', 'discard')); show('Discarded the local change to ' + d.model + ' ' + d.key); }
    } catch (e) { show(String(e.message || e), true); }
    btn.disabled = false;
    await reload();
  }
  // Field-by-field merge: the server's row with the columns picked "local" taken from the local row.
  async function merge(form) {
    const d = form.dataset;
    const c = await api('GET', path(d, 'conflicts'));
    const merged = Object.assign({}, c.server);
    form.querySelectorAll('input[type=radio]:checked').forEach(function (i) { if (i.value === 'local') merged[i.dataset.col] = c.local[i.dataset.col]; });
    await api('POST', path(d, 'conflicts', 'resolve'), { merged: merged });
    show('Resolved ' + d.model + ' ' + d.key + ' with the chosen fields');
  }
  document.addEventListener('click', function (ev) {
    const btn = ev.target.closest('button[data-act]');
    if (btn) { ev.preventDefault(); act(btn); }
  });
  document.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    const form = ev.target;
    if (form.id === 'mode-form') {
      const mode = form.querySelector('select').value;
      try { const r = await api('PUT', '/api/database/mode', { mode: mode }); show('Mode: ' + r.mode + (r.usingLocalDatabase ? ' (local database)' : ' (remote database)')); }
      catch (e) { show(String(e.message || e), true); }
    } else if (form.classList.contains('merge')) {
      const b = form.querySelector('button[type=submit]');
      if (b) b.disabled = true;
      try { await merge(form); } catch (e) { show(String(e.message || e), true); }
      if (b) b.disabled = false;
    }
    await reload();
  });
  async function onStatus(s) {
    const t = Date.parse(s && s.timestamp);
    if (!Number.isNaN(t)) skew = t - Date.now();
    sampleLag(s);
    showProgress(s);
    const sig = JSON.stringify([s.isOnline, s.mode, s.usingLocalDatabase, s.pendingChanges, s.conflicts, s.failed, s.lastSyncAt, s.lastAttempt]);
    if (sig !== last) {
      const first = last === '';
      last = sig;
      const inForm = document.activeElement && document.activeElement.tagName === 'SELECT';
      if (!first && !inForm) await reload();
    }
  }
  async function poll() {
    if (streaming) return;
    try { await onStatus(await api('GET', '/api/database/status')); }
    catch (e) { /* offline or server down: keep the last view */ }
  }
  // Live events (GET /api/database/events, Server-Sent Events read over
  // fetch so the bearer token goes along): status changes, the progress of
  // any run, and data changes. While the stream is open the polling below
  // stands by; it takes over when the stream fails, which retries in 5 s.
  let streaming = false;
  async function stream() {
    try {
      const r = await fetch('/api/database/events', { headers: Object.assign({ Accept: 'text/event-stream' }, headers) });
      if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      streaming = true;
      for (;;) {
        const c = await reader.read();
        if (c.done) break;
        buf += dec.decode(c.value, { stream: true }).replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = 'message', data = '';
          block.split('\n').forEach(function (l) {
            if (l.startsWith('event:')) name = l.slice(6).trim();
            else if (l.startsWith('data:')) data += l.slice(5).trim();
          });
          let d = null;
          try { d = JSON.parse(data); } catch (e) { continue; }
          // Everything the page shows follows the status (counts, last
          // sync), so `changed` (data) events need nothing here. Not
          // awaited: the next events are read while the page reloads.
          if (name === 'status') onStatus(d);
          else if (name === 'progress') showProgress({ syncing: d });
        }
      }
    } catch (e) { /* fall back to polling */ }
    streaming = false;
    setTimeout(stream, 5000);
  }
  stream();
  poll();
  setInterval(poll, 3000);
  relTimes();
  setInterval(relTimes, 15000);
  // The lag moves without any status change: sample it while streaming too.
  setInterval(function () { if (streaming) api('GET', '/api/database/status').then(sampleLag, function () {}); }, 5000);
})();
"#;
