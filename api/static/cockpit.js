// The operator's cockpit, on top of dashboard.js (whose helpers h, fill, api, ago, label,
// workflowLink, empty, state and scheduleRefresh it uses): find a prospect and draw its
// journey, list open violations and conflicts, and, with an operator key, offer each action
// where it belongs. Every action asks to confirm, shows the API's answer, then the page
// refreshes (and refreshes again as the event stream reports what the action caused).
// With a viewer key no action is offered; the API would answer 403 anyway.
"use strict";

const view = { canAct: false, prospect: null };
const CYCLE_MODES = ["monitor", "handoffs", "resolve", "validate", "full"];
const RETRYABLE = new Set(["failed", "cancelled", "blocked"]);
const CANCELLABLE = new Set(["pending", "running", "stalled", "blocked"]);

// --- acting -----------------------------------------------------------------------------

async function act(method, path, body) {
  const headers = { "X-API-Key": state.key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, answer };
}

function say(text, ok) {
  const node = $("action-answer");
  node.hidden = false;
  node.className = `answer ${ok ? "good" : "bad"}`;
  node.textContent = text;
}

function summarise(answer) {
  if (answer.detail && typeof answer.detail === "string") return answer.detail;
  if (answer.matched !== undefined) {
    const why = Object.entries(answer.reasons || {}).map(([k, n]) => `${n} ${label(k)}`).join(", ");
    return `${answer.started} of ${answer.matched} started${why ? `; not started: ${why}` : ""}${answer.more ? "; more match, run it again" : ""}`;
  }
  if (answer.action) return `${label(answer.action)} (${answer.workflow_id || answer.handoff_id})`;
  if (answer.workflow_id) return `started ${answer.workflow_id}`;
  if (answer.status) return `now ${label(answer.status)}`;
  if (answer.name) return `${answer.name}: ${answer.paused ? "paused" : "running"}${answer.silenced_until ? ", silenced" : ""}${answer.detail ? `; ${answer.detail}` : ""}`;
  return "done";
}

// One action button: confirm (or ask for text), call, show the answer, refresh.
function actionButton(text, question, run, testid) {
  const button = h("button", { type: "button", class: "button small-button", "data-action": testid }, text);
  button.addEventListener("click", async () => {
    let input = null;
    if (question.prompt) {
      input = window.prompt(question.prompt, question.value || "");
      if (input === null || !input.trim()) return;
    } else if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      const { ok, status, answer } = await run(input);
      say(`${text}: ${ok ? "" : `refused (${status}): `}${summarise(answer)}`, ok);
    } catch (error) {
      say(`${text}: ${error.message}`, false);
    } finally {
      button.disabled = false;
      scheduleRefresh(0);
      if (view.prospect) showProspect(view.prospect);
    }
  });
  return button;
}

const enc = encodeURIComponent;

function handoffActions(id, status) {
  if (!view.canAct || !id) return null;
  return h("span", { class: "actions" },
    RETRYABLE.has(status) ? actionButton("Retry", `Retry handoff ${id}?`, () => act("POST", `/handoffs/${enc(id)}/retry`), "retry") : null,
    CANCELLABLE.has(status) ? actionButton("Cancel", `Cancel handoff ${id}?`, () => act("POST", `/handoffs/${enc(id)}/cancel`), "cancel") : null);
}

function agentActions(card) {
  const name = card.dataset.agent;
  const paused = Boolean(card.querySelector(".flag.paused"));
  const hour = () => new Date(Date.now() + 3600 * 1000).toISOString();
  return h("div", { class: "actions", "data-testid": "agent-actions" },
    paused
      ? actionButton("Resume", `Resume ${name}? Its deferred handoffs start.`, () => act("POST", `/agents/${enc(name)}/resume`), "resume")
      : actionButton("Pause", { prompt: `Pause ${name}: why?`, value: "paused from the dashboard" }, (reason) => act("POST", `/agents/${enc(name)}/pause`, { reason }), "pause"),
    actionButton("Silence 1 h", `Silence ${name}'s alerts for an hour?`, () => act("POST", `/agents/${enc(name)}/silence`, { until: hour() }), "silence"),
    actionButton("Retry failed", `Retry every failed handoff to ${name} (at most 500)?`, () => act("POST", "/handoffs/retry", { status: "failed", agent: name }), "bulk-retry"));
}

// Actions go onto what dashboard.js drew: agent cards, alert rows and handoff rows, once
// each (refreshes may overlap; each redraw brings new elements).
function undecorated(selector) {
  return [...document.querySelectorAll(selector)].filter((node) => {
    if (node.dataset.decorated) return false;
    node.dataset.decorated = "1";
    return true;
  });
}

function decorate() {
  if (!view.canAct) return;
  for (const card of undecorated("#agents [data-agent]")) card.append(agentActions(card));
  for (const row of undecorated("#alerts [data-alert-id]")) {
    const id = row.dataset.alertId;
    row.append(h("span", { class: "actions" }, actionButton("Acknowledge", `Acknowledge alert ${id}? Reminders stop; it still resolves on its own.`, () => act("POST", `/alerts/${enc(id)}/acknowledge`), "acknowledge")));
  }
  for (const row of undecorated("#stuck [data-handoff-id], #handoffs [data-handoff-id]")) {
    const buttons = handoffActions(row.dataset.handoffId, row.dataset.status);
    if (buttons) row.append(buttons);
  }
}

function renderCycleActions() {
  const bar = $("cycle-actions");
  bar.hidden = !view.canAct;
  if (!view.canAct || bar.childElementCount) return;
  const select = h("select", { id: "cycle-mode", "aria-label": "Cycle mode" }, CYCLE_MODES.map((m) => h("option", { value: m }, m)));
  bar.append(select, actionButton("Run cycle", "Run this cycle now?", () => act("POST", `/orchestrator/run?mode=${enc(select.value)}`), "run-cycle"));
}

// --- findings ---------------------------------------------------------------------------

function prospectLink(id) {
  return id ? h("a", { href: `#prospect=${id}`, class: "prospect-link" }, `#${id}`) : h("span", {}, "");
}

function renderViolations(page) {
  const counts = {};
  for (const v of page.items) counts[v.kind] = (counts[v.kind] || 0) + 1;
  $("violation-counts").textContent = Object.entries(counts).map(([k, n]) => `${label(k)} ${n}`).join(" · ");
  fill("violations", page.items.length ? page.items.map((v) =>
    h("li", { "data-kind": v.kind, "data-prospect-id": v.prospect_id },
      h("span", { class: "badge sev-warning" }, label(v.kind)), prospectLink(v.prospect_id),
      h("span", { class: "grow", title: v.detail || "" }, `${label(v.state || "")} ${v.detail || ""}`),
      h("span", { class: "muted right", title: v.last_seen }, ago(v.last_seen)))) : [empty("No open violations.")]);
}

function renderConflicts(list) {
  fill("conflicts", list.items.length ? list.items.map((c) =>
    h("li", { "data-kind": c.kind },
      h("span", { class: "badge sev-warning" }, label(c.kind)), prospectLink(c.prospect_id),
      h("span", { class: "grow", title: c.resolution }, `${c.detail} — ${c.resolution}`))) : [empty("No conflicts: the next resolve finds nothing.")]);
}

// --- a prospect -------------------------------------------------------------------------

function timelineRow(e) {
  const link = e.web_ui_url ? h("a", { href: e.web_ui_url, target: "_blank", rel: "noopener noreferrer", class: "wf" }, "Web UI") : null;
  return h("li", { "data-kind": e.kind, "data-status": e.status || "", "data-handoff-id": e.handoff_id || "" },
    h("span", { class: "muted when", title: e.at }, new Date(e.at).toLocaleString()),
    h("span", { class: `badge kind-${e.kind} ${e.kind === "handoff" ? `handoff-${e.status}` : ""}` }, label(e.kind)),
    h("span", { class: "grow", title: e.summary }, e.summary),
    link, e.kind === "handoff" ? handoffActions(e.handoff_id, e.status) : null);
}

function renderJourney(j) {
  const p = j.prospect;
  const next = j.next.admitted ? `next: ${j.next.agent} (the ${label(j.next.trigger)} trigger admits it)` : `next: nothing — ${j.next.reason}`;
  fill("journey",
    h("header", { class: "journey-head" },
      h("h3", {}, `#${p.id} ${p.company_name}`, p.domain ? h("span", { class: "muted" }, ` ${p.domain}`) : null),
      h("span", { class: "badge", "data-testid": "prospect-status" }, label(p.status)),
      h("span", {}, `tier ${p.tier || "none"}`),
      h("span", {}, p.has_contact_email ? "contact email ✓" : "no contact email"),
      p.deleted_at ? h("span", { class: "badge sev-critical" }, "deleted") : null),
    h("p", { class: "next", "data-testid": "next" }, next),
    j.truncated ? h("p", { class: "muted" }, `showing the newest ${j.timeline_limit} entries`) : null,
    h("ol", { class: "rows timeline", "data-testid": "timeline" }, j.timeline.map(timelineRow)));
  $("journey").hidden = false;
}

async function showProspect(id) {
  view.prospect = id;
  try {
    renderJourney(await api(`/prospects/${enc(id)}`));
  } catch (error) {
    fill("journey", h("p", { class: "error" }, error.message));
    $("journey").hidden = false;
  }
}

async function search(text) {
  if (/^\d+$/.test(text)) {
    location.hash = `prospect=${text}`;
    return;
  }
  const page = await api(`/prospects?limit=20&q=${enc(text)}`);
  fill("prospect-results", page.items.length ? page.items.map((p) =>
    h("li", { "data-prospect-id": p.id }, prospectLink(p.id),
      h("span", { class: "grow" }, `${p.company_name} ${p.domain || ""}`),
      h("span", { class: "badge" }, label(p.status)))) : [empty(`No prospect matches “${text}”.`)]);
}

function prospectFromHash() {
  const id = new URLSearchParams(location.hash.slice(1)).get("prospect");
  if (id && /^\d+$/.test(id)) showProspect(id);
}

// --- the hook dashboard.js calls on every refresh ----------------------------------------

window.cockpit = {
  async refresh() {
    const [me, violations, conflicts] = await Promise.allSettled([
      api("/me"), api("/violations?status=open&limit=50"), api("/conflicts?status=open&limit=50"),
    ]);
    const problems = [];
    if (me.status === "fulfilled") {
      view.canAct = me.value.can_act;
      $("role").textContent = `${me.value.name} (${me.value.role})`;
      $("role").dataset.role = me.value.role;
    } else problems.push(me.reason.message);
    if (violations.status === "fulfilled") renderViolations(violations.value); else problems.push(violations.reason.message);
    if (conflicts.status === "fulfilled") renderConflicts(conflicts.value); else problems.push(conflicts.reason.message);
    renderCycleActions();
    decorate();
    if (view.prospect) await showProspect(view.prospect);
    return problems;
  },
};

document.addEventListener("DOMContentLoaded", () => {
  $("prospect-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prospect-q").value.trim();
    if (text) search(text).catch((error) => say(error.message, false));
  });
  window.addEventListener("hashchange", prospectFromHash);
  // dashboard.js has taken the key off the fragment by now (its listener ran first)
  const id = new URLSearchParams(location.hash.slice(1)).get("prospect");
  if (id && /^\d+$/.test(id)) view.prospect = id;
});
