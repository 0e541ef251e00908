// Penwright dashboard: plain JS, no build step, no network beyond the daemon itself.
//
// The page has ONE state: the last `GET /api/dashboard` snapshot with the events that came after it applied
// (server/services/dashboard.py states the contract). render() draws every part of the page from it, so the
// Training card, the Jobs table and the "waiting" message always say the same thing. The snapshot is fetched
// again when the stream (re)connects and after events that change more than one job's numbers.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FINAL = ["succeeded", "failed", "cancelled"];
// Events after which the page asks for a new snapshot (adapters, pending words, the run list changed).
const REFETCH = /^(job\.(queued|started|finished|failed|cancelled)|gate|adapter\..+|curate|lore\.indexed|daemon\.ready)$/;

let state = null; // the daemon's state as this page knows it (null until the first snapshot)
const recent = []; // events received lately: re-applied on top of a snapshot older than they are
// What the author picked on this page (not daemon state). `follow`: the chart shows the newest run until the
// author picks another one.
const view = { runs: [], selectedRun: null, follow: true, logs: {}, chartRun: undefined };

// With server.api_key set, the page (which holds no data) asks for the key once (or takes it from #key=...)
// and keeps it for this tab only; every call sends it as a Bearer token.
const KEY_ITEM = "penwright-key";
const keyInUrl = location.hash.match(/(?:^#|&)key=([^&]+)/);
if (keyInUrl) {
  sessionStorage.setItem(KEY_ITEM, decodeURIComponent(keyInUrl[1]));
  history.replaceState(null, "", location.pathname);
}
const authHeaders = () => (sessionStorage.getItem(KEY_ITEM) ? { Authorization: `Bearer ${sessionStorage.getItem(KEY_ITEM)}` } : {});

async function api(method, path, body) {
  const send = () => fetch(path, { method, headers: { "Content-Type": "application/json", ...authHeaders() },
    body: body === undefined ? undefined : JSON.stringify(body) });
  let res = await send();
  if (res.status === 401) {
    const key = window.prompt("This Penwright daemon asks for its API key (server.api_key in penwright.yaml):");
    if (key) { sessionStorage.setItem(KEY_ITEM, key.trim()); res = await send(); }
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
  return data;
}

const fmt = (x, d = 3) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–");
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }

// ---- the state: events applied to the snapshot ----------------------------------------------------------------

const eventKey = (e) => (e.type === "job.progress" && e.phase ? `job.progress:${e.phase}` : e.type);

// Apply one event to `s` (in place); true when the page should fetch a new snapshot.
function applyEvent(s, e) {
  if (typeof e.id === "number") {
    if (e.id <= s.last_event_id) return false; // the snapshot already reflects it
    s.last_event_id = e.id;
  }
  const phase = s.event_phase[eventKey(e)];
  if (phase && e.job_id != null) applyJobEvent(s, e, phase);
  if (typeof e.pending_words === "number") s.status.pending_words = e.pending_words;
  if (e.type === "lore.indexed" && typeof e.entries === "number") s.status.lore_entries = e.entries;
  return REFETCH.test(e.type);
}

function applyJobEvent(s, e, phase) {
  let job = s.jobs.find((j) => j.id === e.job_id);
  if (!job) {
    if (e.type !== "job.queued" && e.type !== "job.started") return; // a job older than the table shows
    job = { id: e.job_id, status: "queued", phase: "queued", trigger: e.trigger || "", preset: e.preset || null,
      run_id: null, step: 0, total: 0, loss: null, eval_loss: null, error: null, decision: null, adapter_version: null };
    s.jobs.push(job);
    s.jobs.sort((a, b) => b.id - a.id);
  }
  if (FINAL.includes(job.status)) return; // the queue's record is final: a late event changes nothing
  if (phase === "done") {
    job.status = e.type === "job.failed" ? "failed" : "cancelled";
    job.phase = "done";
    job.error = e.error || job.error;
    s.status.running_job = null;
    s.status.waiting_for = undefined; // the scheduler's reason is unknown until the next snapshot
    return;
  }
  if (e.type === "job.queued") return; // queued is where every job starts; nothing to move
  job.status = "running";
  job.phase = phase;
  if (e.run_id) job.run_id = e.run_id;
  if (e.type === "job.progress" && e.step != null) {
    for (const k of ["step", "total", "loss", "eval_loss"]) if (e[k] != null) job[k] = e[k];
  }
  if (e.type === "gate") { job.adapter_version = e.version; job.decision = e.decision; }
  s.status.running_job = job.id;
  s.status.waiting_for = null;
}

// ---- drawing the state ----------------------------------------------------------------------------------------

// What the Training card says about the job that runs (or the next one queued).
function trainingText(job) {
  if (!job) return "idle";
  const steps = job.total ? ` ${job.step}/${job.total}` : "";
  const said = {
    queued: "queued", starting: "starting", training: `step${steps}`, paused: `paused while you write (step${steps})`,
    measuring: "measuring the candidate", judging: "the gate decides",
  };
  return `job ${job.id}: ${said[job.phase] || job.phase}`;
}

function render(s) {
  const running = s.jobs.find((j) => j.status === "running") || null;
  const queued = s.jobs.filter((j) => j.status === "queued").sort((a, b) => a.id - b.id);
  const current = running || queued[0] || null;
  const card = $("#progress-text");
  card.textContent = trainingText(current);
  card.dataset.job = current ? current.id : "";
  card.dataset.phase = current ? current.phase : "idle";
  $("#progress").max = (running && running.total) || 1;
  $("#progress").value = running ? running.step || 0 : 0;
  renderStatus(s.status, running, queued);
  renderJobs(s.jobs);
  renderLive(s.live);
  renderAdapters(s.adapters);
  $("#cancel").disabled = !current;
  document.body.dataset.lastEvent = s.last_event_id;
}

function renderStatus(st, running, queued) {
  $("#title").textContent = st.title || "";
  $("#pending").textContent = `${st.pending_words} / ${st.min_new_words} words`;
  let why;
  if (running) why = `training: job ${running.id}`;
  else if (queued.length) why = `job ${queued[0].id} queued`;
  else if (st.waiting_for === undefined) why = "…";
  else why = st.waiting_for ? `waiting: ${st.waiting_for}` : "ready to train";
  $("#waiting").textContent = why;
  $("#lore").textContent = st.lore_entries == null ? "–" : st.lore_entries;
}

function renderLive(live) {
  $("#live").textContent = live ? `${live.name}@v${live.version}` : "base model";
  const m = (live && live.metrics) || {};
  $("#live-metrics").textContent = live ? `perplexity ${fmt(m.perplexity, 2)} · style ${fmt(m.style_score, 1)} · eval loss ${fmt(m.eval_loss)}` : "no adapter promoted yet";
}

function renderJobs(jobs) {
  const body = $("#jobs tbody");
  body.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    tr.dataset.phase = j.phase;
    tr.append(cell(j.id), cell(j.status, `status-${j.status}`), cell(j.trigger), cell(`${j.step}/${j.total}`),
      cell(fmt(j.loss)), cell(j.adapter_version ? `v${j.adapter_version} ${j.decision || ""}` : (j.error || "")));
    const td = document.createElement("td");
    if (j.status === "queued" || j.status === "running") {
      const b = document.createElement("button");
      b.textContent = "cancel";
      b.onclick = () => cancelJob(j.id);
      td.append(b);
    }
    tr.append(td);
    body.append(tr);
  }
  const runs = jobs.filter((j) => j.run_id).map((j) => j.run_id);
  if (runs.join() !== view.runs.join()) {
    view.runs = runs;
    const sel = $("#run-select");
    sel.replaceChildren(...runs.map((r) => { const o = document.createElement("option"); o.value = r; o.textContent = r; return o; }));
    if (view.follow || !runs.includes(view.selectedRun)) view.selectedRun = runs[0] || null;
    sel.value = view.selectedRun || "";
  }
  if (view.chartRun !== view.selectedRun) showRun(view.selectedRun);
}

function renderAdapters(adapters) {
  const body = $("#adapters tbody");
  body.replaceChildren();
  const retired = adapters.filter((a) => a.status === "retired");
  const previous = retired.length ? retired[retired.length - 1] : null;
  $("#rollback").disabled = !previous;
  $("#rollback").dataset.version = previous ? previous.version : "";
  for (const a of [...adapters].reverse()) {
    const m = a.metrics || {};
    const tr = document.createElement("tr");
    tr.append(cell(`v${a.version}`), cell(a.status, `status-${a.status}`), cell(fmt(m.perplexity, 2)),
      cell(fmt(m.style_score, 1)), cell(a.reason || ""));
    const td = document.createElement("td");
    if (a.status !== "live" && a.status !== "rejected") {
      const b = document.createElement("button");
      b.textContent = a.status === "candidate" ? "promote" : "roll back to";
      b.onclick = () => act(a.status === "candidate" ? `/api/adapters/${a.version}/promote` : `/api/adapters/${a.version}/rollback`);
      td.append(b);
    }
    tr.append(td);
    body.append(tr);
  }
}

// ---- the loss chart: axes fit the data and are labelled ------------------------------------------------------

// A "nice" tick step (1, 2 or 5 times a power of ten) for about `count` intervals over `span`.
function niceStep(span, count) {
  const raw = span / count, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p;
  return p * (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10);
}

// The axis for values lo..hi: a margin of 8% of the range (never below 0 for data that is not), widened to
// whole ticks. Same rule as the evaluation report's charts (trainer/evaluate/report.py `axis`).
function axis(lo, hi, count = 5) {
  const margin = hi > lo ? (hi - lo) * 0.08 : Math.max(Math.abs(hi) * 0.05, 0.05);
  let a = lo - margin, b = hi + margin;
  if (lo >= 0 && a < 0) a = 0;
  const step = niceStep(b - a, count);
  a = Math.floor(a / step + 1e-9) * step; b = Math.ceil(b / step - 1e-9) * step;
  const ticks = [];
  for (let i = 0; a + i * step <= b + step / 2; i++) ticks.push(+(a + i * step).toPrecision(12));
  return { lo: ticks[0], hi: ticks[ticks.length - 1], step, ticks };
}

const tickLabel = (v, step) => v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));

function drawChart(rows) {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 64, R = 14, T = 12, B = 44;
  const pw = W - L - R, ph = H - T - B;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#d2d2d7"; ctx.lineWidth = 1;
  ctx.strokeRect(L, T, pw, ph);
  ctx.fillStyle = "#6e6e73"; ctx.font = "12px system-ui";
  ctx.textAlign = "center"; ctx.fillText("step", L + pw / 2, H - 6);
  ctx.save(); ctx.translate(14, T + ph / 2); ctx.rotate(-Math.PI / 2); ctx.fillText("loss", 0, 0); ctx.restore();
  canvas.dataset.points = String(rows.length);
  const vals = rows.flatMap((r) => [r.loss, r.eval_loss]).filter((v) => typeof v === "number" && isFinite(v));
  if (!vals.length) {
    ctx.textAlign = "left"; ctx.fillText("no training steps yet", L + 10, T + 20);
    Object.assign(canvas.dataset, { train: "0", eval: "0", yMin: "", yMax: "", yTicks: "", xTicks: "" });
    return;
  }
  const ya = axis(Math.min(...vals), Math.max(...vals));
  // x: the run's steps, first to last (one step alone gets a step either side); ticks on whole steps
  let s0 = Math.min(...rows.map((r) => r.step)), s1 = Math.max(...rows.map((r) => r.step));
  if (s0 === s1) { s0 -= 1; s1 += 1; }
  const xStep = Math.max(1, Math.round(niceStep(s1 - s0, 6)));
  const xTicks = [];
  for (let t = Math.ceil(s0 / xStep) * xStep; t <= s1; t += xStep) xTicks.push(t);
  const x = (st) => L + pw * ((st - s0) / (s1 - s0));
  const y = (v) => T + ph * (1 - (v - ya.lo) / (ya.hi - ya.lo));
  ctx.font = "11px system-ui"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of ya.ticks) {
    ctx.strokeStyle = "#eeeef0"; ctx.beginPath(); ctx.moveTo(L, y(t)); ctx.lineTo(L + pw, y(t)); ctx.stroke();
    ctx.fillText(tickLabel(t, ya.step), L - 6, y(t));
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const t of xTicks) ctx.fillText(String(t), x(t), T + ph + 6);
  ctx.textBaseline = "alphabetic";
  Object.assign(canvas.dataset, { yMin: String(ya.lo), yMax: String(ya.hi), yTicks: ya.ticks.join(","), xTicks: xTicks.join(",") });
  const series = (key, color) => {
    const pts = rows.filter((r) => typeof r[key] === "number" && isFinite(r[key]));
    if (!pts.length) return 0;
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    pts.forEach((r, i) => (i ? ctx.lineTo(x(r.step), y(r[key])) : ctx.moveTo(x(r.step), y(r[key]))));
    ctx.stroke();
    pts.forEach((r) => { ctx.beginPath(); ctx.arc(x(r.step), y(r[key]), 2.5, 0, 7); ctx.fill(); });
    return pts.length;
  };
  canvas.dataset.train = String(series("loss", "#3b5bdb"));
  canvas.dataset.eval = String(series("eval_loss", "#e8590c"));
}

// Show a run's loss curve: its train_log.json, plus the steps that arrived as events while it loaded.
async function showRun(runId) {
  view.chartRun = runId;
  if (!runId) { drawChart([]); return; }
  const data = await api("GET", `/api/runs/${encodeURIComponent(runId)}/log`).catch(() => ({ log: [] }));
  const logged = data.log || [];
  const last = logged.length ? logged[logged.length - 1].step : 0;
  view.logs[runId] = [...logged, ...(view.logs[runId] || []).filter((r) => r.step > last)];
  if (view.chartRun === runId) drawChart(view.logs[runId]);
}

function chartProgress(e) {
  const job = state.jobs.find((j) => j.id === e.job_id);
  if (!job || !job.run_id || !e.step || e.loss == null) return;
  const rows = view.logs[job.run_id] || (view.logs[job.run_id] = []);
  if (rows.length && rows[rows.length - 1].step >= e.step) return;
  rows.push({ step: e.step, loss: e.loss, eval_loss: e.eval_loss });
  if (job.run_id === view.chartRun) drawChart(rows);
}

// ---- snapshots and events -------------------------------------------------------------------------------------

let fetching = null, again = false, settleTimer = null;

// Fetch a snapshot, put the events newer than it back on top, and draw it. Calls while one is in flight
// coalesce into one more fetch after it.
function refresh() {
  if (fetching) { again = true; return fetching; }
  fetching = (async () => {
    do {
      again = false;
      const snap = await api("GET", "/api/dashboard");
      for (const e of recent) applyEvent(snap, e);
      state = snap;
      render(state);
    } while (again);
    document.body.dataset.ready = "1";
    settle();
  })().finally(() => { fetching = null; });
  return fetching;
}

// The daemon publishes no event when the queue records a judged job's outcome (after `job.finished` and the
// gate's events), so while a job is being judged the page asks again until the record is final.
function settle() {
  const judging = state && state.jobs.some((j) => j.status === "running" && j.phase === "judging");
  if (judging && !settleTimer) {
    settleTimer = setTimeout(() => { settleTimer = null; refresh().catch(() => {}).finally(settle); }, 1000);
  }
}

async function act(path, body) {
  try { await api("POST", path, body); } catch (err) { logEvent({ type: "error", message: err.message }); }
  await refresh();
}
const cancelJob = (id) => act(`/api/jobs/${id}/cancel`);

function logEvent(e) {
  const li = document.createElement("li");
  const detail = e.reason || e.error || e.message || (e.step ? `step ${e.step}/${e.total} loss ${fmt(e.loss)}` : "") || (e.files || []).join(", ");
  li.textContent = `${e.type} ${e.job_id ? "job " + e.job_id : ""} ${e.version ? "v" + e.version : ""} ${detail}`;
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function onEvent(e) {
  recent.push(e);
  if (recent.length > 500) recent.shift();
  logEvent(e);
  if (!state) return; // the first snapshot takes it in (refresh re-applies `recent`)
  const refetch = applyEvent(state, e);
  render(state);
  if (e.type === "job.progress") chartProgress(e);
  if (e.type === "job.finished") view.chartRun = undefined; // the run's whole log is on disk now: read it
  if (refetch) refresh().catch(() => {});
  settle();
}

$("#retrain").onclick = () => act("/api/train", {});
$("#cancel").onclick = () => {
  const job = state && (state.jobs.find((j) => j.status === "running") || state.jobs.find((j) => j.status === "queued"));
  if (job) cancelJob(job.id);
};
$("#rollback").onclick = (ev) => ev.target.dataset.version && act(`/api/adapters/${ev.target.dataset.version}/rollback`);
$("#run-select").onchange = (ev) => {
  view.selectedRun = ev.target.value;
  view.follow = view.selectedRun === view.runs[0];
  showRun(view.selectedRun);
};

// A stream (re)connected: the snapshot fetched now includes everything that happened while none was open, and
// the events of this connection go on top of it. A new connection starts at the daemon's newest event (no
// Last-Event-ID): a restarted daemon numbers its events from 1 again, and the snapshot covers what came before.
function connected() {
  recent.length = 0;
  view.chartRun = undefined; // the chart's run log is read again too: steps may have come while disconnected
  refresh().catch(() => {});
}

// EventSource cannot send a key: with one, the stream is read through fetch (same frames).
async function streamEvents() {
  try {
    const res = await fetch("/api/events", { headers: { Accept: "text/event-stream", ...authHeaders() } });
    if (!res.ok) throw new Error(res.statusText);
    connected();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
        const lines = buf.slice(0, i).split("\n");
        buf = buf.slice(i + 2);
        const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  } catch (err) { /* the daemon restarted or went away: connect again below */ }
  setTimeout(streamEvents, 2000);
}

const EVENT_TYPES = ["curate", "job.queued", "job.started", "job.progress", "job.finished", "job.failed", "job.cancelled",
  "job.paused", "job.resumed", "gate", "adapter.promoted", "adapter.rejected", "adapter.rolled_back", "adapter.swapped",
  "lore.indexed", "error", "daemon.ready"];

// A failed connection is closed, and a watch opens a new one within 2 s; it also catches a connection closed
// without an error event (the page's loading stopped).
let source = null;
function listen() {
  if (source && source.readyState !== EventSource.CLOSED) return;
  source = new EventSource("/api/events");
  source.onopen = connected;
  source.onerror = (ev) => ev.target.close();
  source.onmessage = (m) => onEvent(JSON.parse(m.data));
  for (const t of EVENT_TYPES) source.addEventListener(t, (m) => onEvent(JSON.parse(m.data)));
}

refresh().catch((err) => logEvent({ type: "error", message: err.message })).then(() => {
  if (sessionStorage.getItem(KEY_ITEM)) { streamEvents(); return; }
  listen();
  setInterval(listen, 2000);
});
