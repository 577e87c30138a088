// wasque dashboard: reads the API once, then lives on the /api/events feed.
// Never lists all jobs: queues are paged, jobs are looked up by id.
// On a node with a password every API call carries it as a bearer token,
// asked for once in a small form and kept in sessionStorage (gone when the
// tab closes). The feed is read with fetch and a stream reader rather than
// EventSource, which cannot send headers (a token in the URL would end up
// in logs and history).
"use strict";

const HISTORY_SECS = 120;   // seconds drawn in the chart
const DOWN_AFTER_MS = 3500; // no tick for this long: the node is down
const MAX_EVENTS = 40;      // live events kept in the list
const MAX_FAILURES = 50;    // failures kept in the table

const state = {
  history: [],        // [{at, added, finished, failed}] per second, oldest first
  failures: [],       // newest first
  nodes: [],
  lastTickAt: 0,      // Date.now() of the last tick
  queueCursor: null,  // null: first page (live from ticks)
  queuePages: [],     // cursors of the pages before this one
  skipped: 0,
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

// ---- credentials -----------------------------------------------------------

const TOKEN_KEY = "wasque-token";

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

// The node wants a token (401): ask for it; a stored one was wrong.
function askToken() {
  const had = sessionStorage.getItem(TOKEN_KEY) !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  setConn("wait", "locked");
  $("#login-msg").textContent = had
    ? "That password was refused. Try again."
    : "This node has a password: enter it to see its data.";
  $("#login").hidden = false;
  $("#token").focus();
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("#token").value;
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  location.reload();
});

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store", headers: authHeaders() });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const e = body && body.error ? body.error : { class: "http-" + r.status, message: r.statusText };
    throw Object.assign(new Error(e.message), { cls: e.class, status: r.status });
  }
  return body;
}

const fmtRate = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmtInt = (n) => Number(n).toLocaleString("en-US");
function fmtMs(ms) {
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
const shortId = (id) => id.slice(0, 8) + "…" + id.slice(-4);
const clock = (ms) => new Date(ms).toLocaleTimeString();

// ---- connection and down detection ---------------------------------------

function setConn(kind, text) {
  const c = $("#conn");
  c.className = "conn conn-" + kind;
  c.dataset.state = kind;
  c.textContent = text;
}

function checkDown() {
  const since = Date.now() - state.lastTickAt;
  const down = state.lastTickAt === 0 ? false : since > DOWN_AFTER_MS;
  const banner = $("#banner");
  if (down) {
    banner.hidden = false;
    banner.textContent = `Node unreachable: no update for ${fmtMs(since)} (last at ${clock(state.lastTickAt)}).`;
    setConn("down", "DOWN");
    const downNodes = state.nodes.map((n) => Object.assign({}, n, { state: "down" }));
    renderNodes(downNodes);
    renderSummary(downNodes);
  } else {
    banner.hidden = true;
  }
}

// ---- nodes ----------------------------------------------------------------

// One row per member: this node first, then its peers as its membership
// sees them (state) with their last advert's figures (null until the
// first arrives: shown as "–"). A member seen down gets the row class
// "down" (red), a suspected one "suspect" (amber).
const orDash = (v, f) => (v === null || v === undefined ? "–" : f(v));

function renderNodes(nodes) {
  const tb = $("#nodes tbody");
  tb.replaceChildren(...nodes.map((n) => {
    const bar = el("span", { class: "bar" }, el("i", { style: `width:${Math.min(100, n.load * 100).toFixed(0)}%` }));
    const x = n.executor, j = n.jobs, r = n.rates;
    const rowClass = n.state === "down" ? "down" : n.state === "suspect" ? "suspect" : "";
    const http = n.addresses && n.addresses.http;
    // A link to a peer's own dashboard, where its address is a real one.
    const linkable = http && !/^(0\.0\.0\.0|\[::\]):/.test(http);
    const name = !n.self && linkable && n.state !== "down"
      ? el("a", { class: "link", href: `http://${http}/`, title: `${n.id}\nits own dashboard: http://${http}/` }, shortId(n.id))
      : shortId(n.id);
    return el("tr", { class: rowClass, "data-node": n.id, "data-state": n.state },
      el("td", { title: n.id }, name, n.self ? el("span", { class: "muted small" }, " (this)") : null),
      el("td", {}, el("span", { class: "badge st-" + n.state }, n.state.toUpperCase())),
      el("td", {}, bar, (n.load * 100).toFixed(0) + "%"),
      el("td", { class: "num" }, x ? `${x.busy} / ${x.slots}` : "–"),
      el("td", { class: "num" }, orDash(j, (j) => fmtInt(j.ready))),
      el("td", { class: "num" }, orDash(j, (j) => fmtInt(j.running))),
      el("td", { class: "num" }, orDash(j, (j) => fmtInt(j.held))),
      el("td", { class: "num" }, orDash(r, (r) => fmtRate(r.added_per_sec))),
      el("td", { class: "num" }, orDash(r, (r) => fmtRate(r.finished_per_sec))),
      el("td", { class: "num" }, orDash(r, (r) => fmtRate(r.failed_per_sec))),
      el("td", {}, orDash(n.uptime_secs, fmtUptime)),
      el("td", { title: n.version || "" }, n.self ? "now" : orDash(n.advert_age_ms, (ms) => fmtMs(ms) + " ago")),
      el("td", { class: "small", title: addrTitle(n.addresses) }, n.addresses ? n.addresses.quic : "–"));
  }));
  $("#mode").textContent = nodes.length > 1 ? `cluster of ${nodes.length}` : "single node";
}

function addrTitle(a) {
  if (!a) return "";
  return [["QUIC", a.quic], ["RESP", a.resp], ["HTTP", a.http]]
    .filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join("\n");
}

function renderSummary(nodes) {
  const up = nodes.filter((n) => n.state === "up").length;
  const down = nodes.filter((n) => n.state === "down").length;
  const live = nodes.filter((n) => n.state !== "down");
  const sum = (f) => live.reduce((a, n) => a + (f(n) || 0), 0);
  const s = $("#summary");
  s.replaceChildren(
    el("b", {}, `${up}/${nodes.length}`), " nodes up",
    down ? el("span", { class: "down-count" }, ` · ${down} down`) : null, " · ",
    el("b", {}, fmtInt(sum((n) => n.jobs && n.jobs.ready))), " ready · ",
    el("b", {}, fmtInt(sum((n) => n.jobs && n.jobs.running))), " running · ",
    el("b", {}, `${sum((n) => n.executor && n.executor.busy)}/${sum((n) => n.executor && n.executor.slots)}`), " slots busy");
}

// ---- queues ---------------------------------------------------------------

function renderQueues(page) {
  const tb = $("#queues tbody");
  tb.replaceChildren(...page.queues.map((q) => el("tr", { "data-queue": q.name },
    el("td", { title: q.name }, q.name),
    el("td", { class: "num" }, fmtInt(q.depth)),
    el("td", {}, q.oldest ? fmtMs(q.oldest.waiting_ms) : "–"),
    el("td", { class: "num" }, fmtRate(q.rates.added_per_sec)),
    el("td", { class: "num" }, fmtRate(q.rates.finished_per_sec)),
    el("td", { class: "num" }, fmtRate(q.rates.failed_per_sec)),
    el("td", {}, q.paused ? el("span", { class: "badge st-leaving" }, q.pause) : "–"))));
  if (page.queues.length === 0) tb.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No queues.")));
  $("#queues-next").disabled = !page.next;
  $("#queues-next").dataset.next = page.next || "";
  $("#queues-prev").disabled = state.queueCursor === null;
}

async function loadQueuePage(cursor) {
  const url = "/api/queues?limit=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  const page = await getJSON(url);
  state.queueCursor = cursor;
  renderQueues(page);
}

$("#queues-next").addEventListener("click", () => {
  const next = $("#queues-next").dataset.next;
  if (next) loadQueuePage(next).catch(showError);
});
$("#queues-prev").addEventListener("click", () => loadQueuePage(null).catch(showError));

// ---- chart ----------------------------------------------------------------

function pushSecond(s) {
  if (!s) return;
  const last = state.history[state.history.length - 1];
  if (last && last.at >= s.at) return;
  state.history.push(s);
  while (state.history.length > HISTORY_SECS) state.history.shift();
}

function niceMax(v) {
  if (v <= 5) return 5;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const c = $("#chart");
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight || 180;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const color = (v) => css.getPropertyValue(v).trim();
  const left = 48, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  const data = state.history;
  const max = niceMax(Math.max(1, ...data.map((s) => Math.max(s.added, s.finished, s.failed))));
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = color("--muted");
  g.strokeStyle = color("--line");
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    g.beginPath(); g.moveTo(left, y + 0.5); g.lineTo(left + pw, y + 0.5); g.stroke();
    g.textAlign = "right"; g.textBaseline = "middle";
    g.fillText(fmtInt(Math.round((max * i) / 4)), left - 6, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (let s = 0; s <= HISTORY_SECS; s += 30) {
    const x = left + pw - (pw * s) / HISTORY_SECS;
    g.fillText(s === 0 ? "now" : `-${s}s`, x, top + ph + 5);
  }
  if (data.length === 0) return;
  const newest = data[data.length - 1].at;
  const xOf = (at) => left + pw - (pw * (newest - at)) / HISTORY_SECS;
  const yOf = (v) => top + ph - (ph * v) / max;
  for (const [key, col] of [["added", "--blue"], ["finished", "--green"], ["failed", "--red"]]) {
    g.strokeStyle = color(col);
    g.lineWidth = 2;
    g.beginPath();
    data.forEach((s, i) => (i ? g.lineTo(xOf(s.at), yOf(s[key])) : g.moveTo(xOf(s.at), yOf(s[key]))));
    g.stroke();
  }
}

// ---- failures, events, job view -------------------------------------------

function jobLink(id) {
  return el("a", { class: "link", title: id, onclick: () => showJob(id) }, shortId(id));
}

function renderFailures() {
  const tb = $("#failures tbody");
  tb.replaceChildren(...state.failures.slice(0, MAX_FAILURES).map((f) => el("tr", {},
    el("td", {}, clock(f.at)),
    el("td", {}, jobLink(f.id)),
    el("td", { title: f.queue }, f.queue),
    el("td", {}, el("span", { class: "badge cls" }, f.class)),
    el("td", { class: "num" }, f.run_ms.toFixed(2) + " ms"))));
  $("#no-failures").hidden = state.failures.length > 0;
}

function addEvent(j) {
  const ul = $("#events");
  const cls = j.class ? " " + j.class : "";
  ul.prepend(el("li", { class: "ev-" + j.event, "data-job": j.id, "data-queue": j.queue },
    clock(j.at), " ", j.event.padEnd(9), " ", jobLink(j.id), " ", j.queue, cls));
  while (ul.children.length > MAX_EVENTS) ul.lastChild.remove();
  if (j.event === "failed") {
    state.failures.unshift({ at: j.at, id: j.id, queue: j.queue, class: j.class, run_ms: j.run_ms });
    state.failures.length = Math.min(state.failures.length, MAX_FAILURES);
    renderFailures();
  }
}

function showError(e) {
  console.error(e);
}

async function showJob(id) {
  id = id.trim();
  $("#job-id").value = id;
  const v = $("#job-view");
  v.className = "job-view";
  v.replaceChildren(el("span", { class: "muted" }, "loading…"));
  try {
    const path = "/api/jobs/" + encodeURIComponent(id);
    // The explanation is extra: a failure to get it leaves the job shown.
    const [j, x] = await Promise.all([getJSON(path), getJSON(path + "/explain").catch(() => null)]);
    const r = j.result;
    const rows = [
      ["id", j.id], ["state", j.state], ["queue", j.queue], ["priority", j.priority],
      ["attempts", j.attempts], ["module", j.module || "– (plain job)"],
      ["registered", new Date(j.registered_at * 1000).toLocaleString()], ["ttl", j.ttl + " s"],
      ["delivery", `node ${shortId(j.delivery_info.node)} · deliveries ${j.delivery_info.delivery_count} · acks ${j.delivery_info.ack_times}`],
    ];
    if (j.after) {
      rows.push([j.after.any ? "after-any" : "after",
        j.after.jobs.map((d) => `${d.id} ${d.state}${d.error ? ": " + d.error : ""}`).join(" · ")]);
    }
    if (j.idempotency_key) rows.push(["idempotency key", j.idempotency_key]);
    if (j.progress) {
      const p = j.progress;
      const pct = p.total > 0 ? ` (${Math.min(100, Math.floor((p.done * 100) / p.total))}%)` : "";
      rows.push(["progress", `${fmtInt(p.done)}${p.total > 0 ? " of " + fmtInt(p.total) : " done"}${pct}${p.note ? " · " + p.note : ""}`]);
    }
    if (r) {
      rows.push(["result", r.error_class ? `${r.error_class}: ${r.message}` : `exit ${r.exit_code}`]);
      rows.push(["ran", `${r.duration_ms} ms · fuel ${fmtInt(r.fuel_used)}`]);
    }
    const dl = el("dl", {});
    for (const [k, val] of rows) dl.append(el("dt", {}, k), el("dd", {}, String(val)));
    const kids = [dl];
    if (x) kids.push(explainView(x));
    if (r && r.output) kids.push(el("pre", {}, r.output.length > 2000 ? r.output.slice(0, 2000) + "…" : r.output));
    v.replaceChildren(...kids);
  } catch (e) {
    v.className = "job-view error";
    v.replaceChildren(`${e.cls || "error"}: ${e.message}`);
  }
}

// Why the job is where it is (/api/jobs/{id}/explain): the sentence, then
// each reason's kind and line; a node named elsewhere links to its page.
function explainView(x) {
  const ul = el("ul", { class: "reasons" });
  for (const r of x.reasons) ul.append(el("li", { "data-kind": r.kind }, el("b", {}, r.kind), " ", r.text));
  const box = el("div", { id: "job-explain", class: "explain" }, el("h3", {}, "Why"), el("p", {}, x.summary), ul);
  if (x.node_http) {
    box.append(el("p", { class: "muted small" }, "on that node: ",
      el("a", { class: "link", href: "http://" + x.node_http + "/", target: "_blank", rel: "noopener" }, x.node_http)));
  }
  return box;
}

$("#job-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("#job-id").value;
  if (id.trim()) showJob(id);
});

// ---- the feed -------------------------------------------------------------

function noteSkipped(n) {
  if (!n) return;
  state.skipped += n;
  $("#skipped").textContent = `(${fmtInt(state.skipped)} not shown: over the feed's rate)`;
}

function onTick(t) {
  state.lastTickAt = Date.now();
  noteSkipped(t.skipped_jobs);
  state.nodes = t.nodes;
  setConn("live", "LIVE");
  checkDown();
  renderNodes(t.nodes);
  renderSummary(t.nodes);
  pushSecond(t.second);
  drawChart();
  if (state.queueCursor === null) {
    renderQueues({ queues: t.queues, next: t.more_queues ? t.queues[t.queues.length - 1].name : null });
  }
}

const FEED_RETRY_MS = 2000; // wait before reconnecting a feed that ended

const feedHandlers = {
  hello: () => setConn("wait", "connected"),
  tick: (d) => onTick(JSON.parse(d)),
  job: (d) => addEvent(JSON.parse(d)),
  skipped: (d) => noteSkipped(JSON.parse(d).jobs),
  dropped: () => setConn("wait", "catching up"),
};

// One server-sent event block ("event: x\ndata: y"), dispatched.
function feedEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  const h = feedHandlers[event];
  if (h && data.length) h(data.join("\n"));
  else if (h && event !== "message") h("");
}

// Reads /api/events until it ends, then reconnects (as EventSource would).
async function connect() {
  try {
    const r = await fetch("/api/events", { cache: "no-store", headers: authHeaders() });
    if (r.status === 401) { askToken(); return; }
    if (!r.ok || !r.body) throw new Error("feed answered " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        feedEvent(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
  } catch (e) {
    console.error(e);
  }
  if (state.lastTickAt === 0) setConn("down", "unreachable");
  setTimeout(connect, FEED_RETRY_MS);
}

async function init() {
  try {
    const [cluster, activity, queues] = await Promise.all([
      getJSON("/api/cluster"), getJSON("/api/activity"), getJSON("/api/queues?limit=50"),
    ]);
    state.nodes = cluster.nodes;
    renderNodes(cluster.nodes);
    renderSummary(cluster.nodes);
    activity.history.forEach(pushSecond);
    state.failures = activity.failures.slice(0, MAX_FAILURES);
    renderFailures();
    renderQueues(queues);
    drawChart();
  } catch (e) {
    if (e.status === 401) { askToken(); return; }
    setConn("down", "unreachable");
    showError(e);
  }
  connect();
  setInterval(checkDown, 1000);
  window.addEventListener("resize", drawChart);
}

init();
