/* Live console: comments arrive over the room WebSocket (see docs/dashboard.md, "Live console messages")
 * and are queued; one requestAnimationFrame per frame renders the whole queue as a single
 * DocumentFragment, trims the list to MAX_ROWS and refreshes the side panels at most every PANEL_MS.
 * This keeps the page responsive at thousands of comments per second. */
(function () {
  "use strict";
  const boot = JSON.parse(document.getElementById("live-boot").textContent);
  const MAX_ROWS = 400, PANEL_MS = 500, CHART_MS = 1500;
  const stream = document.getElementById("stream");
  const status = document.getElementById("ws-status");
  const queue = [];
  const seen = new Set();
  const agg = { total: 0, blocked: 0, questions: new Map(), words: new Map(), senti: new Map() };
  let snapshot = null, scheduled = false, lastPanel = 0, lastChart = 0, autoScroll = true;

  stream.addEventListener("scroll", function () {
    autoScroll = stream.scrollTop + stream.clientHeight >= stream.scrollHeight - 30;
  });

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function withMark(text, span) {
    const f = document.createDocumentFragment();
    if (!span || span.length !== 2 || span[0] >= span[1]) { f.appendChild(document.createTextNode(text)); return f; }
    f.appendChild(document.createTextNode(text.slice(0, span[0])));
    f.appendChild(el("mark", "", text.slice(span[0], span[1])));
    f.appendChild(document.createTextNode(text.slice(span[1])));
    return f;
  }
  function row(c) {
    const m = c.moderation || {};
    const u = el("span", "u", (c.user_id || "") + (c.ts ? " " + window.kc.fmts.time.format(new Date(c.ts * 1000)) : ""));
    if (m.action === "block") {
      const d = el("details", "blocked");
      d.dataset.id = c.comment_id || "";
      const s = el("summary", "", "⛔ " + (boot.i18n.blocked || "blocked") + " · " + (m.category || "?") +
        (m.matched ? " · “" + m.matched + "”" : ""));
      d.appendChild(s);
      const body = el("div");
      body.appendChild(u);
      body.appendChild(withMark(c.text || "", m.span));
      d.appendChild(body);
      return d;
    }
    const div = el("div", "c" + (c.is_question ? " q" : ""));
    div.dataset.id = c.comment_id || "";
    div.appendChild(u);
    div.appendChild(withMark(c.text || "", m.action === "review" ? m.span : null));
    const s = c.sentiment || {};
    if (s.label) div.appendChild(el("span", "pill " + s.label, s.label));
    if (m.action === "review") div.appendChild(el("span", "pill negative", "review: " + (m.category || "")));
    if (c.is_question) div.appendChild(el("span", "pill neutral", "?"));
    return div;
  }
  function tally(c) {
    agg.total++;
    const m = c.moderation || {};
    if (m.action === "block") { agg.blocked++; return; }
    if (c.is_question) {
      const k = (c.normalized || c.text || "").slice(0, 60);
      agg.questions.set(k, (agg.questions.get(k) || 0) + 1);
    }
    (c.keywords || []).forEach(function (w) { agg.words.set(w, (agg.words.get(w) || 0) + 1); });
    const s = c.sentiment || {};
    if (s.label) {
      const b = Math.floor((c.ts || Date.now() / 1000) / 60) * 60;
      const e = agg.senti.get(b) || { positive: 0, negative: 0, neutral: 0 };
      e[s.label] = (e[s.label] || 0) + 1;
      agg.senti.set(b, e);
    }
  }
  function enqueue(list) {
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (c.comment_id) { if (seen.has(c.comment_id)) continue; seen.add(c.comment_id); }
      queue.push(c);
      tally(c);
    }
    if (seen.size > 20000) seen.clear();
    schedule();
  }
  function schedule() { if (!scheduled) { scheduled = true; requestAnimationFrame(flush); } }
  function flush(now) {
    scheduled = false;
    if (queue.length) {
      // Only the newest MAX_ROWS can ever be visible: skip building nodes for the rest.
      const batch = queue.splice(0, queue.length).slice(-MAX_ROWS);
      const frag = document.createDocumentFragment();
      for (let i = 0; i < batch.length; i++) frag.appendChild(row(batch[i]));
      stream.appendChild(frag);
      let extra = stream.childElementCount - MAX_ROWS;
      while (extra-- > 0) stream.removeChild(stream.firstElementChild);
      if (autoScroll) stream.scrollTop = stream.scrollHeight;
    }
    if (now - lastPanel > PANEL_MS) { lastPanel = now; panels(); }
    if (now - lastChart > CHART_MS) { lastChart = now; charts(); }
  }
  function list(id, items, fmt) {
    const ul = document.getElementById(id);
    if (!ul) return;
    const frag = document.createDocumentFragment();
    items.forEach(function (it) { frag.appendChild(fmt(it)); });
    ul.replaceChildren(frag);
  }
  function top(map, n) { return Array.from(map.entries()).sort(function (a, b) { return b[1] - a[1]; }).slice(0, n); }
  function panels() {
    document.getElementById("n-comments").textContent = agg.total;
    document.getElementById("n-blocked").textContent = agg.blocked;
    const snapQ = snapshot && snapshot.top_questions;
    const qs = snapQ ? snapQ.map(function (q) { return [q.text || q.question || q.representative || "", q.count || q.n || 0]; }) : top(agg.questions, 8);
    list("questions", qs, function (q) { const li = el("li", "", q[0]); li.appendChild(el("span", "pill neutral", "×" + q[1])); return li; });
    const snapW = snapshot && snapshot.trending;
    const ws = snapW ? snapW.map(function (w) { return [w.word || w.term || w[0], w.count || w.score || w[1] || 0]; }) : top(agg.words, 15);
    list("trending", ws, function (w) { return el("span", "", w[0] + " " + (typeof w[1] === "number" ? Math.round(w[1] * 10) / 10 : w[1])); });
    const m = (snapshot && snapshot.metrics) || {};
    if (m.viewers !== undefined) document.getElementById("n-viewers").textContent = m.viewers;
    if (m.gmv !== undefined) document.getElementById("n-gmv").textContent = Number(m.gmv).toFixed(2);
    const hl = (snapshot && snapshot.highlights) || [];
    list("highlights", hl, function (h) {
      const s = h.start_s !== undefined ? h.start_s : (h.offset_s || 0);
      const e = h.end_s !== undefined ? h.end_s : s + (h.duration_s || 0);
      return el("li", "", fmtOff(s) + " – " + fmtOff(e) + (h.score !== undefined ? " · score " + Number(h.score).toFixed(2) : "") + (h.reason ? " · " + h.reason : ""));
    });
  }
  function fmtOff(s) { s = Math.max(0, Math.round(s)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
  function charts() {
    if (!window.Plotly) return;
    const keys = Array.from(agg.senti.keys()).sort(function (a, b) { return a - b; }).slice(-60);
    const x = keys.map(function (k) { return new Date(k * 1000); });
    const tr = ["positive", "neutral", "negative"].map(function (l, i) {
      return { type: "scatter", mode: "lines", stackgroup: "s", name: l, x: x,
        y: keys.map(function (k) { return agg.senti.get(k)[l] || 0; }),
        line: { color: ["#3aa67a", "#9aa4b2", "#c44e52"][i] } };
    });
    const rows = keys.map(function (k) { const e = agg.senti.get(k); return [new Date(k * 1000).toISOString(), e.positive || 0, e.neutral || 0, e.negative || 0]; });
    const tb = document.getElementById("sentiment-table");
    tb.replaceChildren.apply(tb, rows.map(function (r) { const tr = el("tr"); r.forEach(function (v) { tr.appendChild(el("td", "", String(v))); }); return tr; }));
    document.getElementById("sentiment-csv").href = "data:text/csv;charset=utf-8," + encodeURIComponent(
      "minute,positive,neutral,negative\n" + rows.map(function (r) { return r.join(","); }).join("\n"));
    window.Plotly.react("sentiment-plot", tr, { margin: { l: 40, r: 10, t: 10, b: 30 }, height: 200,
      legend: { orientation: "h" }, font: { family: "Noto Sans CJK SC, sans-serif" } }, { displaylogo: false, responsive: true });
  }
  function handle(msg) {
    if (Array.isArray(msg)) { enqueue(msg); return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "snapshot" || msg.recent) {
      snapshot = msg;
      if (msg.recent) enqueue(msg.recent);
      schedule();
    }
    if (Array.isArray(msg.comments)) enqueue(msg.comments);
    else if (msg.type === "comment" || (msg.text !== undefined && msg.moderation)) enqueue([msg.comment || msg]);
    if (msg.metrics && !msg.recent) { snapshot = Object.assign({}, snapshot || {}, { metrics: msg.metrics }); schedule(); }
  }
  function connect() {
    if (!boot.ws) { status.textContent = boot.i18n.replay; return; }
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(proto + location.host + boot.ws);
    status.textContent = boot.i18n.connecting;
    // "live" once the first message arrives: the server sends it after the room's pipeline is warm, so a
    // comment posted from then on reaches this console at once
    function up() { if (status.className !== "up") { status.textContent = "● " + boot.i18n.live; status.className = "up"; } }
    ws.onmessage = function (ev) { up(); try { handle(JSON.parse(ev.data)); } catch (e) { /* ignore a bad frame */ } };
    ws.onclose = function () { status.textContent = "○ reconnecting…"; status.className = "down"; setTimeout(connect, 2000); };
  }
  if (boot.series.length) {
    const last = boot.series[boot.series.length - 1];
    document.getElementById("n-viewers").textContent = last.viewers;
    document.getElementById("n-gmv").textContent = boot.series.reduce(function (a, s) { return a + (s.gmv || 0); }, 0).toFixed(2);
  }
  enqueue(boot.history);
  panels();
  charts(); // draw the sentiment plot once now, so later updates are cheap Plotly.react calls
  window.kcLive = { handle: handle, stats: agg };
  connect();
})();
