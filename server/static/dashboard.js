// Penwright dashboard: plain JS, no build step, no network beyond the daemon itself.
"use strict";

const $ = (sel) => document.querySelector(sel);
// `follow`: the chart shows the newest run until the author picks another one.
const state = { runs: [], selectedRun: null, follow: true, logs: {}, live: null, running: null, previous: null };

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

function renderStatus(s) {
  $("#title").textContent = s.title || "";
  $("#pending").textContent = `${s.pending_words} / ${s.min_new_words} words`;
  $("#waiting").textContent = s.waiting_for ? `waiting: ${s.waiting_for}` : (s.running_job ? "training" : "ready to train");
  $("#lore").textContent = s.lore_entries == null ? "–" : s.lore_entries;
}

function renderLive(live) {
  state.live = live;
  $("#live").textContent = live ? `${live.name}@v${live.version}` : "base model";
  const m = (live && live.metrics) || {};
  $("#live-metrics").textContent = live ? `perplexity ${fmt(m.perplexity, 2)} · style ${fmt(m.style_score, 1)} · eval loss ${fmt(m.eval_loss)}` : "no adapter promoted yet";
}

function renderJobs(jobs) {
  const body = $("#jobs tbody");
  body.replaceChildren();
  state.running = null;
  for (const j of jobs) {
    if (j.status === "running") state.running = j;
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
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
  $("#cancel").disabled = !state.running;
  const runs = jobs.filter((j) => j.run_id).map((j) => j.run_id);
  if (runs.join() !== state.runs.join()) {
    state.runs = runs;
    const sel = $("#run-select");
    sel.replaceChildren(...runs.map((r) => { const o = document.createElement("option"); o.value = r; o.textContent = r; return o; }));
    if (state.follow || !runs.includes(state.selectedRun)) state.selectedRun = runs[0] || null;
    sel.value = state.selectedRun || "";
  }
}

function renderAdapters(adapters) {
  const body = $("#adapters tbody");
  body.replaceChildren();
  const retired = adapters.filter((a) => a.status === "retired");
  state.previous = retired.length ? retired[retired.length - 1] : null;
  $("#rollback").disabled = !state.previous;
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

async function loadRunLog(runId) {
  if (!runId) return [];
  const data = await api("GET", `/api/runs/${encodeURIComponent(runId)}/log`);
  state.logs[runId] = data.log || [];
  return state.logs[runId];
}

function drawChart(rows) {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 40;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#d2d2d7"; ctx.lineWidth = 1;
  ctx.strokeRect(pad, 10, W - pad - 10, H - pad - 10);
  canvas.dataset.points = String(rows.length);
  if (!rows.length) { ctx.fillStyle = "#6e6e73"; ctx.fillText("no training steps yet", pad + 10, 30); return; }
  const vals = rows.flatMap((r) => [r.loss, r.eval_loss]).filter((v) => typeof v === "number" && isFinite(v));
  const lo = Math.min(...vals), hi = Math.max(...vals), span = hi - lo || 1;
  const maxStep = Math.max(...rows.map((r) => r.step), 1);
  const x = (s) => pad + (W - pad - 10) * (s / maxStep);
  const y = (v) => 10 + (H - pad - 10) * (1 - (v - lo) / span);
  ctx.fillStyle = "#6e6e73"; ctx.font = "11px system-ui";
  ctx.fillText(hi.toFixed(3), 2, 16); ctx.fillText(lo.toFixed(3), 2, H - pad);
  ctx.fillText(`step ${maxStep}`, W - 60, H - pad + 16);
  const series = (key, color) => {
    const pts = rows.filter((r) => typeof r[key] === "number");
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

async function refresh() {
  const d = await api("GET", "/api/dashboard");
  renderStatus(d.status);
  renderLive(d.live);
  renderJobs(d.jobs);
  renderAdapters(d.adapters);
  drawChart(await loadRunLog(state.selectedRun));
  document.body.dataset.ready = "1";
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
  logEvent(e);
  if (e.type === "job.progress" && e.total) {
    $("#progress").max = e.total; $("#progress").value = e.step || 0;
    $("#progress-text").textContent = `job ${e.job_id}: ${e.step}/${e.total}`;
    const run = state.running && state.running.id === e.job_id ? state.running.run_id : null;
    if (run && run === state.selectedRun && e.step) {
      const rows = state.logs[run] || (state.logs[run] = []);
      rows.push({ step: e.step, loss: e.loss, eval_loss: e.eval_loss });
      drawChart(rows);
    }
    return;
  }
  if (e.type === "job.paused") { $("#progress-text").textContent = `job ${e.job_id}: paused while you write`; return; }
  if (/^job\.(finished|failed|cancelled)$/.test(e.type)) { $("#progress-text").textContent = "idle"; $("#progress").value = 0; }
  refresh();
}

$("#retrain").onclick = () => act("/api/train", {});
$("#cancel").onclick = () => state.running && cancelJob(state.running.id);
$("#rollback").onclick = () => state.previous && act(`/api/adapters/${state.previous.version}/rollback`);
$("#run-select").onchange = async (ev) => {
  state.selectedRun = ev.target.value;
  state.follow = state.selectedRun === state.runs[0];
  drawChart(await loadRunLog(state.selectedRun));
};

// EventSource cannot send a key: with one, the stream is read through fetch (same frames, reconnects after 2 s).
async function streamEvents() {
  try {
    const res = await fetch(state.lastEvent ? `/api/events?since=${state.lastEvent}` : "/api/events", { headers: { Accept: "text/event-stream", ...authHeaders() } });
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
        const id = lines.find((l) => l.startsWith("id:"));
        if (id) state.lastEvent = +id.slice(3).trim();
        const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  } catch (err) { /* the daemon restarted or went away: try again below */ }
  setTimeout(streamEvents, 2000);
}

refresh().then(() => {
  if (sessionStorage.getItem(KEY_ITEM)) { streamEvents(); return; }
  const source = new EventSource("/api/events");
  source.onmessage = (m) => onEvent(JSON.parse(m.data));
  for (const t of ["curate", "job.queued", "job.started", "job.progress", "job.finished", "job.failed", "job.cancelled",
                   "job.paused", "job.resumed",
                   "gate", "adapter.promoted", "adapter.rejected", "adapter.rolled_back", "adapter.swapped", "lore.indexed", "error", "daemon.ready"]) {
    source.addEventListener(t, (m) => onEvent(JSON.parse(m.data)));
  }
});
