// pp dashboard: one page, five views (#/, #/works, #/works/ID, #/dead-letters, #/audit), no
// dependency.
//
// Live by polling: the current view refreshes every 2 s (dead letters and the audit trail every
// 5 s) while the tab is visible and the page is not paused. Everything shown comes from the
// API's JSON; text is always set with textContent, never parsed as HTML.
//
// Who is asking comes from /dashboard/api/session: the action buttons and the audit trail are
// shown only to whoever may use them (the server refuses the others anyway), and a page that is
// refused for want of a login goes to /login.
"use strict";

const REFRESH_MS = 2000;
const DEAD_LETTER_REFRESH_MS = 5000;
const PAGE_SIZE = 50;
const AUDIT_PAGE_SIZE = 100;
const TOKEN_KEY = "pp-admin-token";
const THEME_KEY = "pp-theme";

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();

const state = {
  view: "overview",
  paused: false,
  timer: null,
  loading: false,
  updatedAt: null,
  lastOverview: null,
  session: null,
  audit: { before: null, pages: [], next: null },
  shownAudit: null,
  search: { prefix: "", done: "", since: "1h", afterId: null, pages: [] },
  workId: null,
  lastDeadLetters: 0,
  shownWorks: null,
  shownLetters: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function formatCount(value) {
  return numbers.format(value);
}

// A figure from the API: {value, exact}. Estimates read "≈ 1,234" with a tooltip saying why.
function showFigure(node, figure) {
  node.replaceChildren();
  if (!figure.exact) {
    node.append(el("span", { class: "estimate", text: "≈" }));
    node.title = "An estimate from PostgreSQL's statistics: too many rows to count on every refresh";
  } else {
    node.title = "";
  }
  node.append(formatCount(figure.value));
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function formatTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  return new Date(epochSeconds * 1000).toLocaleString();
}

function showBanner(text, kind) {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = kind === "info" ? "banner info" : "banner";
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// GET or POST JSON. Errors carry the API's message ({"http_code", "message"}).
async function api(path, options) {
  const init = { headers: { Accept: "application/json" }, ...(options || {}) };
  // The admin token is the page's credential only where the API holds it to PP_AUTH=off;
  // elsewhere people log in, and a token left in the tab must not speak for them.
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && state.session !== null && state.session.mode === "off") init.headers["X-PP-Admin-Token"] = token;
  if (init.method === "POST" && init.body !== undefined) init.headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw Object.assign(new Error(`The API does not answer (${error.message})`), { status: 0 });
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.message ? body.message : `${response.status} ${response.statusText}`;
    if (response.status === 401 && needsLogin()) {
      location.assign("/login");
    }
    throw Object.assign(new Error(message), { status: response.status });
  }
  return { body, headers: response.headers };
}

// A refusal for want of an identity is answered by logging in, unless the API takes the admin
// token instead (PP_AUTH off, PP_ADMIN_TOKEN set).
function needsLogin() {
  return state.session !== null && state.session.mode !== "off";
}

// Who is asking, and what the page may offer them.
async function loadSession() {
  const { body } = await api("/dashboard/api/session");
  state.session = body;
  if (body.mode !== "off") sessionStorage.removeItem(TOKEN_KEY);
  const account = body.actor.startsWith("account:") ? body.actor.slice("account:".length) : null;
  $("who").hidden = account === null;
  $("who").textContent = account === null ? "" : `${account} · ${body.role}`;
  $("logout").hidden = account === null;
  $("login").hidden = account !== null || body.mode === "off";
  applyAccess();
}

// Whether the action buttons are offered: to whoever may act, and, where the admin token opens
// them, to anyone (who is then asked for it).
function mayAct() {
  const session = state.session;
  if (session === null) return false;
  return session.can_act || session.actions === "token";
}

function applyAccess() {
  const allowed = mayAct();
  for (const node of document.querySelectorAll("[data-act]")) node.hidden = !allowed;
  $("nav-audit").hidden = !allowed;
}

// An action: POST, and on 401 ask for the token (after saying why it was refused).
async function act(path, body) {
  try {
    const answer = await api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });
    hideBanner();
    return answer.body;
  } catch (error) {
    showBanner(`Refused: ${error.message}`);
    if (error.status === 401 && !needsLogin()) askForToken();
    throw error;
  }
}

function askForToken() {
  const dialog = $("token-dialog");
  if (dialog.open) return;
  $("token-input").value = "";
  dialog.showModal();
}

// ---------------------------------------------------------------------------------------------
// Live refresh

function setLive(status) {
  const live = $("live");
  live.className = `live ${status}`;
  live.textContent = status === "paused" ? "Paused" : status === "stale" ? "Reconnecting" : "Live";
}

// When the page last refreshed, and how long ago: the age keeps counting while paused, so the
// figures' age is always in sight.
function showUpdated() {
  if (state.updatedAt === null) return;
  const age = Math.floor((Date.now() - state.updatedAt) / 1000);
  const at = new Date(state.updatedAt).toLocaleTimeString();
  $("updated").textContent = age < 1 ? `Updated ${at}` : `Updated ${at}, ${age} s ago`;
}

function schedule() {
  clearTimeout(state.timer);
  if (state.paused || document.visibilityState === "hidden") {
    setLive("paused");
    return;
  }
  const slow = state.view === "dead-letters" || state.view === "audit";
  const every = slow ? DEAD_LETTER_REFRESH_MS : REFRESH_MS;
  state.timer = setTimeout(refresh, every);
}

async function refresh() {
  clearTimeout(state.timer);
  if (state.loading) return;
  state.loading = true;
  try {
    if (state.view === "overview") await loadOverview();
    else if (state.view === "works") await loadWorks();
    else if (state.view === "work") await loadWork();
    else if (state.view === "dead-letters") await loadDeadLetters();
    else if (state.view === "audit") await loadAudit();
    state.updatedAt = Date.now();
    showUpdated();
    if (!state.paused && document.visibilityState !== "hidden") setLive("live");
  } catch (error) {
    setLive("stale");
    showBanner(error.message);
    // A page the admin token opens (the audit trail, with PP_AUTH=off): ask for it.
    if (error.status === 401 && !needsLogin()) askForToken();
  } finally {
    state.loading = false;
    schedule();
  }
}

// ---------------------------------------------------------------------------------------------
// Overview

async function loadOverview() {
  const { body } = await api("/dashboard/api/overview");
  state.lastOverview = body;
  renderOverview(body);
  hideBanner();
}

function renderOverview(overview) {
  const works = overview.works;
  showFigure(document.querySelector("#stat-pending [data-figure]"), works.pending_works);
  showFigure(document.querySelector("#stat-done [data-figure]"), works.done_works);
  showFigure(document.querySelector("#stat-hour [data-figure]"), works.done_last_hour);
  showFigure(document.querySelector("#stat-events [data-figure]"), works.events);
  document.querySelector("#stat-done [data-note]").textContent = works.done_works.exact ? "with their result" : "estimated from table statistics";
  document.querySelector("#stat-events [data-note]").textContent = works.events.exact ? "three per done work" : "estimated from table statistics";
  const perHour = works.done_last_hour.value / 3600;
  document.querySelector("#stat-hour [data-note]").textContent = `${perHour.toFixed(perHour < 10 ? 2 : 0)} per second on average`;

  renderChart(overview.throughput.finished_per_second);

  const broker = overview.broker;
  const down = $("broker-down");
  if (broker.status === "up") {
    down.hidden = true;
    $("queue-name").textContent = broker.queue.name;
    $("queue-depth").textContent = formatCount(broker.queue.messages);
    $("queue-consumers").textContent = formatCount(broker.queue.consumers);
    $("queue-consumers").className = broker.queue.consumers === 0 ? "warn" : "";
    $("dlq-depth").textContent = formatCount(broker.dead_letters.messages);
    $("dlq-depth").className = broker.dead_letters.messages > 0 ? "bad" : "";
    setDeadLetterBadge(broker.dead_letters.messages);
  } else {
    down.hidden = false;
    down.textContent = `RabbitMQ is down: ${broker.error}`;
    for (const id of ["queue-depth", "queue-consumers", "dlq-depth"]) $(id).textContent = "–";
  }

  const backlogs = overview.backlogs;
  showFigure($("outbox-backlog"), backlogs.outbox.count);
  $("outbox-age").textContent = formatAge(backlogs.outbox.oldest_age_seconds);
  showFigure($("sweeper-backlog"), backlogs.sweeper.count);
  $("sweeper-age").textContent = formatAge(backlogs.sweeper.oldest_age_seconds);
  showFigure($("sweeper-beyond"), backlogs.beyond_sweep_window.count);
  $("sweeper-beyond").className = backlogs.beyond_sweep_window.count.value > 0 ? "warn" : "";
  $("sweep-window").textContent = `· window ${overview.sweep_window}`;
}

function setDeadLetterBadge(count) {
  const badge = $("nav-dlq");
  badge.hidden = count === 0;
  badge.textContent = formatCount(count);
}

function renderChart(counts) {
  const chart = $("chart");
  const width = counts.length;
  const height = 100;
  const peak = Math.max(...counts, 0);
  const top = niceCeiling(peak);
  const last = counts.slice(-10);
  const now = last.length ? last.reduce((a, b) => a + b, 0) / last.length : 0;
  $("rate-now").textContent = now >= 10 ? formatCount(Math.round(now)) : now.toFixed(1);
  $("rate-peak").textContent = formatCount(peak);
  $("rate-total").textContent = formatCount(counts.reduce((a, b) => a + b, 0));

  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  for (const fraction of [0.25, 0.5, 0.75]) {
    plot.append(svg("line", { class: "grid-line", x1: 0, x2: width, y1: height * fraction, y2: height * fraction }));
  }
  const y = (value) => height - (top === 0 ? 0 : (value / top) * (height - 4));
  let line = "";
  counts.forEach((value, index) => {
    line += `${index === 0 ? "M" : "L"}${index},${y(value).toFixed(2)} `;
  });
  plot.append(svg("path", { class: "area", d: `${line}L${width - 1},${height} L0,${height} Z` }));
  plot.append(svg("path", { class: "line", d: line }));
  const cursor = svg("line", { class: "cursor", y1: 0, y2: height, visibility: "hidden" });
  plot.append(cursor);

  const scale = el("div", { class: "chart-scale", text: top > 0 ? `${formatCount(top)}/s` : "" });
  const tip = el("div", { class: "chart-tip" });
  tip.hidden = true;
  plot.addEventListener("mousemove", (event) => {
    const box = plot.getBoundingClientRect();
    const index = Math.min(width - 1, Math.max(0, Math.round(((event.clientX - box.left) / box.width) * (width - 1))));
    cursor.setAttribute("x1", index);
    cursor.setAttribute("x2", index);
    cursor.setAttribute("visibility", "visible");
    const ago = width - index;
    tip.textContent = `${formatCount(counts[index])}/s · ${ago} s ago`;
    tip.style.left = `${Math.min(box.width - 150, Math.max(0, event.clientX - box.left + 8))}px`;
    tip.hidden = false;
  });
  plot.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden");
    tip.hidden = true;
  });
  chart.replaceChildren(plot, scale, tip);
  chart.dataset.total = String(counts.reduce((a, b) => a + b, 0));
}

function niceCeiling(value) {
  if (value <= 0) return 0;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

async function enqueue(event) {
  event.preventDefault();
  const count = Number($("enqueue-count").value);
  const addText = $("enqueue-add").value.trim();
  const body = { count };
  if (addText !== "") body.add_up_to = Number(addText);
  const button = $("enqueue");
  button.disabled = true;
  try {
    const accepted = await act("/dashboard/api/demands", body);
    $("enqueue-result").textContent = `${formatCount(accepted.accepted)} demand(s) committed to the outbox.`;
    refresh();
  } catch (_) {
    $("enqueue-result").textContent = "";
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Works

function searchPath(prefix) {
  const search = state.search;
  const query = new URLSearchParams({ work_code: prefix, since: search.since, limit: String(PAGE_SIZE) });
  if (search.done) query.set("done", search.done);
  if (search.afterId !== null) query.set("after_id", String(search.afterId));
  return `/work/search?${query}`;
}

async function loadWorks() {
  const path = searchPath(state.search.prefix);
  // One page of works in id order; the API names the next page's after_id when there is one.
  const { body, headers } = await api(path);
  const after = headers.get("x-next-after-id");
  const next = after === null ? null : Number(after);
  // Unchanged results are left as they are: a row under the pointer stays the same row.
  const seen = `${path} ${JSON.stringify(body)}`;
  if (seen === state.shownWorks) return;
  state.shownWorks = seen;
  const rows = body.map((work) => {
    const row = el(
      "tr",
      { "data-id": String(work.id) },
      el("td", { class: "num", text: String(work.id) }),
      el("td", { class: "code", text: work.work_code }),
      el("td", { class: "num", text: formatCount(work.add_up_to) }),
      el("td", {}, el("span", { class: `state ${work.done ? "done" : "pending"}`, text: work.done ? "done" : "pending" })),
      el("td", { class: "num", text: work.result === null ? "–" : formatCount(work.result) }),
      el("td", { class: "col-created", text: formatTime(work.created_on) }),
    );
    row.addEventListener("click", () => {
      location.hash = `#/works/${work.id}`;
    });
    return row;
  });
  $("works-rows").replaceChildren(...rows);
  $("works-empty").hidden = rows.length > 0;
  state.search.next = next;
  $("page-next").disabled = next === null;
  $("page-first").disabled = state.search.afterId === null;
  const page = state.search.pages.length + 1;
  $("page-info").textContent = `Page ${page} · ${rows.length} work(s)`;
  hideBanner();
}

function submitSearch(event) {
  event.preventDefault();
  state.search.prefix = $("search-prefix").value;
  state.search.done = $("search-state").value;
  state.search.since = $("search-since").value;
  state.search.afterId = null;
  state.search.pages = [];
  refresh();
}

async function loadWork() {
  const id = state.workId;
  const [{ body: work }, { body: events }] = await Promise.all([api(`/work/${id}`), api(`/work/${id}/events`)]);
  $("work-title").textContent = work.work_code;
  const fields = [
    ["id", String(work.id)],
    ["work_code", work.work_code],
    ["add_up_to", formatCount(work.add_up_to)],
    ["state", work.done ? "done" : "pending"],
    ["result", work.result === null ? "–" : formatCount(work.result)],
    ["origin", work.demand_id ? "a queued demand" : "the API (swept)"],
    ["demand_id", work.demand_id || "–"],
    ["created", formatTime(work.created_on)],
    ["updated", formatTime(work.updated_on)],
  ];
  $("work-fields").replaceChildren(
    ...fields.map(([name, value]) => el("div", { "data-field": name }, el("dt", { text: name }), el("dd", { text: value }))),
  );
  const first = events.length ? Date.parse(events[0].created_on) || events[0].created_on * 1000 : 0;
  $("work-events").replaceChildren(
    ...events.map((event) => {
      const at = typeof event.created_on === "number" ? event.created_on * 1000 : Date.parse(event.created_on);
      const offset = at - first;
      return el(
        "li",
        { "data-variable": event.variable },
        el("span", { class: "variable", text: event.variable }),
        event.value ? el("span", { class: "value", text: `= ${event.value}` }) : null,
        el("span", { class: "when", text: `${new Date(at).toLocaleString()}${offset > 0 ? ` · +${offset} ms` : ""}` }),
      );
    }),
  );
  $("work-no-events").hidden = events.length > 0;
  hideBanner();
}

// ---------------------------------------------------------------------------------------------
// Dead letters

async function loadDeadLetters() {
  const { body } = await api("/dashboard/api/dead-letters?limit=100");
  state.lastDeadLetters = body.total;
  setDeadLetterBadge(body.total);
  if (state.lastOverview && state.lastOverview.broker.dead_letters) {
    $("dlq-name").textContent = state.lastOverview.broker.dead_letters.name;
  }
  // Unchanged letters are left as they are: an armed "Really discard?" stays armed.
  const seen = JSON.stringify(body);
  if (seen === state.shownLetters) return;
  state.shownLetters = seen;
  const shown = body.letters.length;
  $("dlq-summary").textContent =
    body.total === 0 ? "" : shown < body.total ? `Showing the first ${shown} of ${formatCount(body.total)}, in queue order.` : `${formatCount(body.total)} message(s), in queue order.`;
  $("dlq-empty").hidden = shown > 0;
  $("retry-all").disabled = shown === 0;
  $("dlq-list").replaceChildren(...body.letters.map(renderLetter));
  hideBanner();
}

function renderLetter(letter) {
  const retry = el("button", { type: "button", class: "primary", text: "Retry", "data-action": "retry" });
  const discard = el("button", { type: "button", class: "danger", text: "Discard", "data-action": "discard" });
  const actions = el("span", { class: "actions", "data-act": "" }, retry, discard);
  actions.hidden = !mayAct();
  const key = encodeURIComponent(letter.key);
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      await act(`/dashboard/api/dead-letters/${key}/retry`);
      showBanner(`Sent ${letter.message_id || "the message"} back to the queue.`, "info");
      await loadDeadLetters();
    } catch (_) {
      retry.disabled = false;
    }
  });
  confirmTwice(discard, "Really discard?", async () => {
    await act(`/dashboard/api/dead-letters/${key}/discard`);
    showBanner(`Discarded ${letter.message_id || "the message"}.`, "info");
    await loadDeadLetters();
  });
  const deaths = letter.deaths.map((death) =>
    el("span", { text: `${death.reason} from ${death.queue} ×${death.count}${death.time ? ` · ${formatTime(death.time)}` : ""}` }),
  );
  return el(
    "li",
    { class: "card letter", "data-key": letter.key },
    el(
      "div",
      { class: "letter-head" },
      el("span", { class: "letter-id", text: letter.message_id ? `message_id ${letter.message_id}` : "no message_id" }),
      actions,
    ),
    letter.reason ? el("p", { class: "reason", text: letter.reason }) : null,
    el("pre", { text: letter.body + (letter.body_truncated ? `\n… (${formatCount(letter.body_bytes)} bytes in all)` : "") }),
    el(
      "div",
      { class: "meta" },
      ...deaths,
      letter.published_at ? el("span", { text: `published ${formatTime(letter.published_at)}` }) : null,
      letter.content_type ? el("span", { text: letter.content_type }) : null,
    ),
  );
}

// A destructive button asks once more: the first click arms it for 4 seconds.
function confirmTwice(button, armedText, action) {
  const label = button.textContent;
  let armed = null;
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = armedText;
      button.classList.add("confirm");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("confirm");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await action();
    } catch (_) {
      /* act() showed why */
    } finally {
      button.disabled = false;
      button.textContent = label;
      button.classList.remove("confirm");
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Audit trail

async function loadAudit() {
  const audit = state.audit;
  const query = new URLSearchParams({ limit: String(AUDIT_PAGE_SIZE) });
  if (audit.before !== null) query.set("before", String(audit.before));
  const { body } = await api(`/dashboard/api/audit?${query}`);
  const seen = `${query} ${JSON.stringify(body)}`;
  if (seen === state.shownAudit) return;
  state.shownAudit = seen;
  const events = body.events;
  $("audit-rows").replaceChildren(
    ...events.map((event) =>
      el(
        "tr",
        { "data-id": String(event.id) },
        el("td", { class: "col-created", text: formatTime(event.at) }),
        el("td", { class: "code", text: event.actor }),
        el("td", { text: event.action }),
        el("td", { class: "code", text: event.object || "–" }),
        el("td", { class: "code", text: event.source || "–" }),
        el("td", { class: `outcome-${event.outcome}`, text: event.outcome }),
      ),
    ),
  );
  $("audit-empty").hidden = events.length > 0;
  audit.next = events.length === AUDIT_PAGE_SIZE ? events[events.length - 1].id : null;
  $("audit-older").disabled = audit.next === null;
  $("audit-first").disabled = audit.before === null;
  $("audit-info").textContent = `Page ${audit.pages.length + 1} · ${events.length} event(s)`;
  hideBanner();
}

// ---------------------------------------------------------------------------------------------
// Navigation, theme, pause

function route() {
  const hash = location.hash || "#/";
  const work = hash.match(/^#\/works\/(\d+)$/);
  if (work) {
    state.view = "work";
    state.workId = work[1];
  } else if (hash.startsWith("#/works")) {
    state.view = "works";
  } else if (hash.startsWith("#/dead-letters")) {
    state.view = "dead-letters";
  } else if (hash.startsWith("#/audit") && mayAct()) {
    state.view = "audit";
  } else {
    state.view = "overview";
  }
  for (const view of ["overview", "works", "work", "dead-letters", "audit"]) {
    $(`view-${view}`).hidden = view !== state.view;
  }
  const nav = state.view === "work" ? "works" : state.view;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === nav);
  }
  hideBanner();
  refresh();
}

function applyTheme(theme) {
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const names = { light: "light", dark: "dark" };
  $("theme").title = `Theme: ${names[theme] || "follow the system"} (click to change)`;
  $("theme").textContent = theme === "light" ? "☀" : theme === "dark" ? "☾" : "◐";
}

function start() {
  applyTheme(localStorage.getItem(THEME_KEY));
  $("theme").addEventListener("click", () => {
    const order = [null, "light", "dark"];
    const current = localStorage.getItem(THEME_KEY);
    const next = order[(order.indexOf(current) + 1) % order.length];
    if (next) localStorage.setItem(THEME_KEY, next);
    else localStorage.removeItem(THEME_KEY);
    applyTheme(next);
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    if (state.paused) schedule();
    else refresh();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !state.paused) refresh();
    else schedule();
  });
  $("enqueue-form").addEventListener("submit", enqueue);
  $("search-form").addEventListener("submit", submitSearch);
  $("page-next").addEventListener("click", () => {
    state.search.pages.push(state.search.afterId);
    state.search.afterId = state.search.next;
    refresh();
  });
  $("page-first").addEventListener("click", () => {
    state.search.afterId = null;
    state.search.pages = [];
    refresh();
  });
  confirmTwice($("retry-all"), "Retry every one?", async () => {
    const retried = await act("/dashboard/api/dead-letters/retry-all");
    showBanner(`Sent ${formatCount(retried.retried)} message(s) back to the queue.`, "info");
    await loadDeadLetters();
  });
  $("token-form").addEventListener("submit", () => {
    const token = $("token-input").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
  });
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("audit-older").addEventListener("click", () => {
    state.audit.pages.push(state.audit.before);
    state.audit.before = state.audit.next;
    refresh();
  });
  $("audit-first").addEventListener("click", () => {
    state.audit.before = null;
    state.audit.pages = [];
    refresh();
  });
  window.addEventListener("hashchange", route);
  setInterval(showUpdated, 1000);
  // Who is asking decides what is shown; a page that cannot say (the API down) still starts,
  // offering nothing, and learns it at the next load.
  loadSession()
    .catch((error) => {
      // Only PP_AUTH=all refuses this page's first question: it needs a login.
      if (error.status === 401) location.assign("/login");
      else showBanner(error.message);
    })
    .finally(route);
}

document.addEventListener("DOMContentLoaded", start);
