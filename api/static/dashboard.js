// Pipeline Orchestrator dashboard: reads the JSON API with a viewer key (a header, never a
// URL) and follows the event stream with fetch() so the key stays out of URLs and logs.
// Every value from the API is written as text (textContent), never parsed as markup.
"use strict";

const KEY_STORE = "orchestrator.apiKey";
const REFRESH_MS = 10000;
const EVENT_DEBOUNCE_MS = 1500;
const MAX_EVENTS = 40;

const state = { key: null, workflowsUrl: null, lastEventId: null, firstLiveId: null, live: 0, timer: null, stream: null };
const $ = (id) => document.getElementById(id);

// --- small DOM helpers --------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function fill(id, ...children) {
  // the same rule as h(): an absent part (null, undefined, false) draws nothing, not "null"
  $(id).replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const label = (text) => String(text).replaceAll("_", " ");
const percent = (x) => `${Math.round(x * 1000) / 10}%`;

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function workflowLink(id, text) {
  if (!id || !state.workflowsUrl) return h("span", {}, text || id || "");
  const href = `${state.workflowsUrl}/${encodeURIComponent(id)}`;
  return h("a", { href, target: "_blank", rel: "noopener noreferrer", class: "wf" }, text || id);
}

function empty(text) {
  return h("li", { class: "empty" }, text);
}

// --- the API key --------------------------------------------------------------------------

function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    sessionStorage.setItem(KEY_STORE, key);
    params.delete("key"); // off the address bar; the rest (a prospect to show) stays
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(KEY_STORE);
}

function askForKey(message) {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  if (state.stream) state.stream.abort();
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("key").focus();
}

class Unauthorized extends Error {}

async function api(path) {
  const response = await fetch(`/api/v1${path}`, { headers: { "X-API-Key": state.key }, cache: "no-store" });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new Unauthorized(body.detail || `the key was refused (${response.status})`);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${path}: ${body.detail || response.status}`);
  }
  return response.json();
}

// --- rendering ----------------------------------------------------------------------------

function renderOverall(health) {
  const pill = $("overall");
  pill.className = `pill status-${health.status}`;
  pill.textContent = `overall ${health.status}`;
}

function presenceFlag(p) {
  // whether a worker polls the agent's queue, or its HTTP endpoint answered lately
  if (!p || p.present === null) return null;
  const http = p.transport === "http";
  const text = p.present ? (http ? `answered ${ago(p.last_seen)}` : `${p.pollers} worker${p.pollers === 1 ? "" : "s"}`) : (http ? "endpoint silent" : "no worker");
  return h("span", { class: `flag ${p.present ? "present" : "no-worker"}`, "data-testid": "agent-presence", title: p.detail || "" }, text);
}

function agentCard(agent) {
  const hl = agent.health;
  const circuit = agent.circuit_state.replace("_", "-");
  const query = encodeURIComponent(`AgentName="${agent.name}"`);
  const flags = [
    agent.paused ? h("span", { class: "flag paused", title: agent.paused_reason || "" }, "paused") : null,
    h("span", { class: `flag circuit-${circuit}` }, `circuit ${label(agent.circuit_state)}`),
    agent.silenced_until ? h("span", { class: "flag muted-flag" }, `silenced until ${new Date(agent.silenced_until).toLocaleString()}`) : null,
    presenceFlag(agent.presence),
  ];
  return h("article", { class: `card status-${hl.status}`, "data-agent": agent.name, "data-status": hl.status },
    h("header", {}, h("h3", {}, agent.name), h("span", { class: `badge status-${hl.status}`, "data-testid": "agent-status" }, hl.status)),
    h("dl", {},
      h("dt", {}, "Error rate (24 h)"), h("dd", {}, `${percent(hl.error_rate)} (${hl.errors_last_24h} of ${hl.runs_last_24h} runs)`),
      h("dt", {}, "Last success"), h("dd", { title: hl.last_successful_run || "" }, ago(hl.last_successful_run)),
      h("dt", {}, "Records per run"), h("dd", {}, `${hl.avg_records_per_run.toFixed(1)} of ${hl.expected_records_per_run}`),
      h("dt", {}, "Waiting for it"), h("dd", {}, `${agent.queue_depth} prospects`)),
    h("div", { class: "flags" }, flags),
    hl.reasons.length ? h("p", { class: "reasons" }, hl.reasons.join("; ")) : null,
    state.workflowsUrl ? h("a", { class: "small", href: `${state.workflowsUrl}?query=${query}`, target: "_blank", rel: "noopener noreferrer" }, "Its handoffs in Temporal →") : null);
}

function renderFunnel(pipeline) {
  const entries = pipeline.funnel_entries;
  const stages = pipeline.funnel.length ? [pipeline.funnel[0].from_state, ...pipeline.funnel.map((s) => s.to_state)] : [];
  const top = Math.max(1, ...stages.map((s) => entries[s] || 0));
  const rows = [];
  stages.forEach((name, i) => {
    if (i > 0) {
      const step = pipeline.funnel[i - 1];
      rows.push(h("div", { class: "conversion" }, `↓ ${percent(step.conversion)}`));
    }
    const bar = h("div", { class: "funnel-bar" }, h("span", {}, String(entries[name] || 0)));
    bar.style.width = `${Math.max(3, (100 * (entries[name] || 0)) / top)}%`;
    rows.push(h("div", { class: "funnel-row", "data-state": name, "data-count": entries[name] || 0 },
      h("div", { class: "funnel-label" }, label(name)), h("div", { class: "funnel-track" }, bar)));
  });
  fill("funnel", rows);
  const hours = Math.round((new Date(pipeline.checked_at) - new Date(pipeline.funnel_since)) / 3600000);
  $("funnel-window").textContent = `entries into each stage, last ${hours} h`;
}

function renderStates(pipeline) {
  const top = Math.max(1, ...pipeline.states.map((s) => s.count));
  fill("states", pipeline.states.map((s) => {
    const bar = h("div", { class: `bar ${s.known ? (s.terminal ? "terminal" : "active") : "unknown"}` });
    bar.style.width = `${(100 * s.count) / top}%`;
    return h("div", { class: "bar-row", "data-state": s.state, "data-count": s.count },
      h("span", { class: "bar-label" }, label(s.state)), h("div", { class: "bar-track" }, bar),
      h("span", { class: "bar-value" }, String(s.count)));
  }));
  $("total").textContent = `${pipeline.total} live`;
}

function renderHandoffTiles(counts) {
  const n = (k) => counts[k] || 0;
  const tiles = [
    ["in flight", n("pending") + n("running"), "inflight"],
    ["stalled", n("stalled"), n("stalled") ? "bad" : ""],
    ["blocked", n("blocked"), n("blocked") ? "warn" : ""],
    ["completed", n("completed"), "good"],
    ["failed", n("failed"), n("failed") ? "bad" : ""],
    ["superseded", n("superseded"), ""],
  ];
  fill("handoff-tiles", tiles.map(([name, value, tone]) =>
    h("div", { class: `tile ${tone}`, "data-kind": name.replace(" ", "-"), "data-count": value },
      h("strong", {}, String(value)), h("span", {}, name))));
}

function renderFeed(feed) {
  const lag = feed.state ? feed.state.lag_seconds : null;
  const tone = feed.running ? (lag > 5 ? "warn" : "good") : "bad";
  const text = feed.running ? `${lag.toFixed(1)} s` : "not running";
  fill("feed", h("div", { class: `tile ${tone}`, "data-kind": "feed-lag", "data-running": String(feed.running) },
    h("strong", {}, text), h("span", {}, "feed lag")),
    workflowLink(feed.workflow_id, "feed"));
}

function handoffRow(item) {
  return h("li", { "data-status": item.status, "data-handoff-id": item.id, "data-prospect-id": item.prospect_id },
    h("span", { class: `badge handoff-${item.status}` }, item.status),
    h("span", {}, `#${item.prospect_id} ${label(item.from_state)} → ${item.to_agent}`),
    workflowLink(item.workflow_id),
    h("span", { class: "muted right", title: item.updated_at }, ago(item.updated_at)));
}

function renderHandoffs(latest, stalled, blocked) {
  const stuck = [...stalled.items, ...blocked.items];
  fill("stuck", stuck.length ? stuck.map(handoffRow) : [empty("Nothing stalled or blocked.")]);
  fill("handoffs", latest.items.length ? latest.items.map(handoffRow) : [empty("No handoffs yet.")]);
}

function renderAlerts(alerts) {
  fill("alerts", alerts.length ? alerts.map((a) =>
    h("li", { class: `alert sev-${a.severity}`, "data-alert-id": a.id, "data-alert-status": a.status },
      h("span", { class: `badge sev-${a.severity}` }, a.severity),
      h("span", { class: "grow" }, a.message, a.count > 1 ? h("span", { class: "muted" }, ` ×${a.count}`) : null),
      h("span", { class: "muted right", title: a.last_seen }, ago(a.last_seen)))) : [empty("No open alerts.")]);
}

function renderReport(report) {
  if (!report) {
    fill("report", h("p", { class: "muted" }, "No daily report yet; reports are generated daily (08:00 by default)."));
    return;
  }
  const figures = [
    ["prospects", report.total_prospects], ["added", report.activity.added],
    ["scored", report.activity.scored], ["emails sent", report.activity.emails_sent],
    ["response rate", percent(report.sequences.response_rate)], ["agent errors", report.agents.errors],
  ];
  fill("report",
    h("p", { class: "report-date" }, `${report.date} · generated ${ago(report.generated_at)}`),
    h("p", {}, report.summary),
    h("div", { class: "figures" }, figures.map(([name, value]) => h("div", {}, h("strong", {}, String(value)), h("span", {}, name)))));
}

function renderCycles(cycles) {
  fill("cycles", cycles.length ? cycles.map((c) =>
    h("li", { "data-status": c.status },
      h("span", { class: `badge cycle-${c.status}` }, label(c.status)),
      h("span", {}, c.mode || "cycle"),
      workflowLink(c.workflow_id),
      h("span", { class: "muted right" }, ago(c.started_at)))) : [empty("No cycles yet.")]);
}

// --- loading ------------------------------------------------------------------------------

async function latestDailyReport() {
  const stored = await api("/orchestrator/reports?kind=daily&limit=1");
  return stored.length ? api(`/orchestrator/report/${stored[0].report_date}`) : null;
}

async function refresh() {
  const [health, agents, pipeline, latest, stalled, blocked, alerts, report, cycles, feed] = await Promise.allSettled([
    api("/orchestrator/health"), api("/agents"), api("/orchestrator/pipeline"),
    api("/handoffs?limit=10"), api("/handoffs?status=stalled&limit=10"), api("/handoffs?status=blocked&limit=10"),
    api("/alerts?status=open&limit=20"), latestDailyReport(), api("/orchestrator/cycles?limit=8"),
    api("/orchestrator/feed"),
  ]);
  const refused = [health, agents, pipeline].find((r) => r.status === "rejected" && r.reason instanceof Unauthorized);
  if (refused) return askForKey(refused.reason.message);
  const problems = [];
  const use = (result, render) => (result.status === "fulfilled" ? render(result.value) : problems.push(result.reason.message));
  use(pipeline, (p) => {
    state.workflowsUrl = p.temporal.workflows_url;
    $("temporal-ui").href = p.temporal.web_ui_url;
    if (state.lastEventId === null) startStream(Math.max(0, p.last_event_id - 15), p.last_event_id);
    renderFunnel(p); renderStates(p); renderHandoffTiles(p.handoffs);
  });
  use(health, renderOverall);
  use(agents, (list) => fill("agents", list.map(agentCard)));
  if (latest.status === "fulfilled" && stalled.status === "fulfilled" && blocked.status === "fulfilled") {
    renderHandoffs(latest.value, stalled.value, blocked.value);
  } else problems.push("handoffs could not be read");
  use(alerts, renderAlerts);
  use(report, renderReport);
  use(cycles, renderCycles);
  use(feed, renderFeed);
  if (window.cockpit) problems.push(...(await window.cockpit.refresh())); // cockpit.js
  showProblems(problems);
  $("main").hidden = false;
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function showProblems(problems) {
  $("banner").hidden = problems.length === 0;
  $("banner").textContent = problems.join(" · ");
}

function scheduleRefresh(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => refresh().catch((e) => showProblems([e.message])).finally(() => state.key && scheduleRefresh(REFRESH_MS)), delay);
}

// --- the event stream (server-sent events over fetch, so the key travels as a header) -----

function describe(event) {
  const p = event.payload || {};
  if (event.kind.startsWith("handoff_")) return `#${p.prospect_id} ${label(p.from_state || "")} → ${p.to_agent || ""}`;
  if (p.reason) return `${event.agent || ""} ${p.reason}`;
  return event.agent || "";
}

function onEvent(event) {
  state.lastEventId = event.id;
  const live = event.id > state.firstLiveId;
  if (live) {
    state.live += 1;
    $("event-count").textContent = `${state.live} live`;
    scheduleRefresh(EVENT_DEBOUNCE_MS);
  }
  const tone = /failed|opened|unhealthy|stalled/.test(event.kind) ? "bad"
    : /blocked|paused|silenced/.test(event.kind) ? "warn"
    : /completed|closed|resumed|generated/.test(event.kind) ? "good" : "";
  $("events").prepend(h("li", { class: live ? "fresh" : "", "data-event-id": event.id },
    h("span", { class: `badge event ${tone}` }, label(event.kind)),
    h("span", { class: "grow" }, describe(event)),
    h("span", { class: "muted right" }, new Date(event.created_at).toLocaleTimeString())));
  while ($("events").children.length > MAX_EVENTS) $("events").lastChild.remove();
}

function parseFrame(frame) {
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (data) onEvent(JSON.parse(data));
}

async function follow(controller) {
  const headers = { "X-API-Key": state.key, Accept: "text/event-stream", "Last-Event-ID": String(state.lastEventId) };
  const response = await fetch("/api/v1/events", { headers, signal: controller.signal, cache: "no-store" });
  if (!response.ok) throw new Error(`event stream: ${response.status}`);
  setLive(true);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function startStream(fromId, firstLiveId) {
  state.lastEventId = fromId;
  state.firstLiveId = firstLiveId;
  const controller = new AbortController();
  state.stream = controller;
  follow(controller)
    .catch(() => null)
    .finally(() => {
      setLive(false);
      if (state.stream === controller && !controller.signal.aborted) {
        setTimeout(() => startStream(state.lastEventId, state.firstLiveId), 2000); // resumes where it stopped
      }
    });
}

function setLive(on) {
  $("live").className = `live ${on ? "on" : "off"}`;
  $("live").textContent = on ? "live" : "reconnecting…";
}

// --- start --------------------------------------------------------------------------------

function start() {
  state.key = takeKeyFromFragment();
  $("forget").addEventListener("click", () => askForKey(null));
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key").value.trim());
    state.key = sessionStorage.getItem(KEY_STORE);
    state.lastEventId = null;
    $("login").hidden = true;
    scheduleRefresh(0);
  });
  if (!state.key) return askForKey(null);
  scheduleRefresh(0);
}

document.addEventListener("DOMContentLoaded", start);
