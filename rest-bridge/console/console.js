/*
 * console.js - the web console's behaviour: every panel calls the bridge's
 * REST API (the same origin) and nothing else.
 *
 * Invariants: nothing from the network is ever parsed as HTML; every value
 * shown goes through textContent (el() below), so an event's payload, a
 * subscription name or an error message cannot inject markup. The token, when
 * given, is sent as "Authorization: Bearer <token>" on every call, the live
 * tail included (which is why the tail reads the stream with fetch() instead
 * of EventSource, which cannot send headers); it is kept in sessionStorage
 * only.
 */
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;
const TAIL_MAX = 200;

/* A new element: attrs are properties (className, type, value, title, ...),
 * children are nodes or strings (always text). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  for (const c of children)
    e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function notice(text, info) {
  const n = $("notice");
  n.textContent = text;
  n.className = info ? "info" : "";
  n.hidden = !text;
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const token = $("token").value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

/* One REST call: the parsed JSON answer, or throws an Error carrying the
 * bridge's error sentence. */
async function api(method, path, body) {
  const init = { method, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : {};
  } catch (e) {
    json = null;
  }
  if (!resp.ok) {
    const why = json && json.error ? json.error : text || resp.statusText;
    throw new Error(`${method} ${path}: ${resp.status} ${why}`);
  }
  return json;
}

const enc = encodeURIComponent;
const subPath = (name) => "/api/v1/subscriptions/" + enc(name);
const pretty = (v) => JSON.stringify(v, null, 2);

/* ---- health --------------------------------------------------------------- */

async function refreshHealth() {
  const b = $("health");
  try {
    const h = await fetch("/health", { headers: headers() }).then((r) => r.json());
    b.textContent = `${h.status} · v${h.version}`;
    b.className = "badge " + (h.status === "healthy" ? "ok" : "bad");
  } catch (e) {
    b.textContent = "bridge unreachable";
    b.className = "badge bad";
  }
}

/* The service's own counters, when the caller may read them (GetStats
 * needs an admin identity once authentication is on: quiet otherwise). */
const SERVICE_STATS = [["events_published", "published"], ["events_consumed", "delivered"],
  ["events_acked", "acked"], ["events_nacked", "nacked"], ["events_redelivered", "redelivered"],
  ["events_dead_lettered", "dead-lettered"], ["active_subscribers", "subscribers"],
  ["subscriptions", "subscriptions"], ["uptime_seconds", "uptime (s)"]];

async function refreshServiceStats() {
  const p = $("service-stats");
  try {
    const s = await api("GET", "/api/v1/stats");
    const reasons = Object.entries(s.dead_lettered_by_reason || {}).map(([r, n]) => `${r} ${n}`);
    p.textContent = "Service: " + SERVICE_STATS.filter(([k]) => s[k] != null)
      .map(([k, label]) => `${label} ${s[k]}`).join(" · ") +
      (reasons.length ? ` (dead-lettered by reason: ${reasons.join(", ")})` : "");
  } catch (e) {
    p.textContent = "";
  }
}

/* ---- subscriptions --------------------------------------------------------- */

/* The stats shown in their own columns; any other numeric field (newer
 * services add some) goes to "Other". */
const COLUMNS = ["lag", "pending", "active_subscribers", "dead_lettered", "delivered", "acked",
  "redelivered"];
const HIDDEN = new Set(COLUMNS.concat(["streams", "dead_letter_stream", "consumers"]));
let selected = null;

function otherStats(stats) {
  const parts = [];
  for (const [k, v] of Object.entries(stats || {})) {
    if (HIDDEN.has(k)) continue;
    if (typeof v === "number" || typeof v === "string") parts.push(`${k}: ${v}`);
    else if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length)
      parts.push(`${k}: ` + Object.entries(v).map(([n, x]) => `${n} ${x}`).join(", "));
  }
  return parts.join(", ");
}

/* A subscription's settings, as the row's tooltip. */
function settings(s) {
  const parts = [`max attempts ${s.max_delivery_attempts || "unlimited"}`,
    `ack deadline ${s.ack_deadline_ms} ms`, `max in flight ${s.max_in_flight}`,
    s.auto_ack ? "auto-ack" : "manual ack"];
  if (s.min_backoff_ms) parts.push(`backoff ${s.min_backoff_ms}-${s.max_backoff_ms} ms`);
  if (s.dead_letter_type) parts.push(`dead letters published as ${s.dead_letter_type}`);
  if (s.owner) parts.push(`owner ${s.owner}`);
  if (s.created_at) parts.push(`created ${s.created_at}`);
  return parts.join(", ");
}

function subscriptionRow(s) {
  const st = s.stats || {};
  const patterns = el("td", {}, ...(s.event_types || []).map((p) => el("span", { className: "pattern" }, p)));
  /* Consumers: Redis's count when the service reports it (every
   * instance's), else this instance's live subscribers. */
  const value = (k) => (k === "active_subscribers" && st.consumers != null ? st.consumers : st[k]);
  const cells = COLUMNS.map((k) => el("td", { className: "num" }, value(k) == null ? "" : value(k)));
  /* Dead letters published as events of a type instead of the store. */
  if (s.dead_letter_type)
    cells[COLUMNS.indexOf("dead_lettered")].append(el("div", { className: "muted" }, "→ " + s.dead_letter_type));
  const tr = el("tr", {}, el("td", {}, s.name), patterns, ...cells,
    el("td", { className: "muted" }, otherStats(st)));
  tr.title = settings(s);
  tr.dataset.name = s.name;
  if (s.name === selected) tr.className = "selected";
  tr.addEventListener("click", () => selectSubscription(s.name));
  return tr;
}

function fillSelect(select, names) {
  const keep = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (names.includes(keep)) select.value = keep;
  else if (names.includes(selected)) select.value = selected;
}

async function refreshSubscriptions() {
  let list;
  try {
    list = (await api("GET", "/api/v1/subscriptions")).subscriptions || [];
  } catch (e) {
    notice(e.message);
    return;
  }
  list.sort((a, b) => a.name.localeCompare(b.name));
  $("subs-table").tBodies[0].replaceChildren(...list.map(subscriptionRow));
  $("subs-empty").hidden = list.length > 0;
  const names = list.map((s) => s.name);
  for (const s of document.querySelectorAll(".sub-select")) fillSelect(s, names);
}

function selectSubscription(name) {
  selected = name;
  for (const tr of $("subs-table").tBodies[0].rows)
    tr.className = tr.dataset.name === name ? "selected" : "";
  for (const s of document.querySelectorAll(".sub-select")) s.value = name;
  loadDeadLetters();
}

/* ---- live tail (Server-Sent Events over fetch) ---------------------------- */

let tail = null; /* { name, abort } while tailing */

function tailState(text) {
  $("tail-state").textContent = text;
}

function showTailEvent(type, data) {
  let ev = null;
  try {
    ev = JSON.parse(data);
  } catch (e) {
    ev = null;
  }
  const li = el("li", {},
    el("span", { className: "when" }, new Date().toISOString().slice(11, 23)),
    el("span", { className: "type" }, type || (ev && ev.event_type) || "message"),
    ev && ev.id ? el("span", { className: "muted" }, ev.id + " ") : "",
    el("div", {}, ev ? JSON.stringify(ev.payload) : data));
  li.title = ev ? pretty(ev) : data;
  const log = $("tail-log");
  log.prepend(li);
  while (log.children.length > TAIL_MAX) log.lastChild.remove();
}

/* One SSE block: "id:", "event:", "data:" lines; ":" lines are comments. */
function tailBlock(block) {
  let type = "";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return;
  if (type === "error") notice("Live tail: " + data.join("\n"));
  else showTailEvent(type, data.join("\n"));
}

async function readStream(t) {
  const resp = await fetch(subPath(t.name) + "/events",
    { headers: headers({ Accept: "text/event-stream" }), signal: t.abort.signal });
  if (!resp.ok) throw new Error(`stream: ${resp.status} ${await resp.text()}`);
  tailState(`tailing "${t.pattern}"`);
  $("tail-state").dataset.live = "1";
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      tailBlock(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
  }
}

async function startTail(ev) {
  ev.preventDefault();
  if (tail) return;
  const pattern = $("tail-pattern").value.trim();
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
  const t = { name: "console-tail-" + rand, pattern, abort: new AbortController() };
  tail = t;
  $("tail-start").disabled = true;
  $("tail-stop").disabled = false;
  tailState("starting…");
  try {
    await api("POST", "/api/v1/events/subscribe",
      { name: t.name, event_types: [pattern], auto_ack: true, read_latest: true });
    refreshSubscriptions();
    await readStream(t);
    if (tail === t) notice("Live tail: the stream ended.");
  } catch (e) {
    if (e.name !== "AbortError") notice("Live tail: " + e.message);
  }
  if (tail === t) stopTail();
}

async function stopTail() {
  const t = tail;
  if (!t) return;
  tail = null;
  t.abort.abort();
  $("tail-start").disabled = false;
  $("tail-stop").disabled = true;
  delete $("tail-state").dataset.live;
  tailState("stopped");
  try {
    await api("DELETE", subPath(t.name));
  } catch (e) {
    notice(e.message);
  }
  refreshSubscriptions();
}

/* ---- publish --------------------------------------------------------------- */

async function publish(ev) {
  ev.preventDefault();
  const out = $("pub-result");
  let payload;
  try {
    payload = JSON.parse($("pub-payload").value);
  } catch (e) {
    out.textContent = "The payload is not JSON: " + e.message;
    return;
  }
  const body = {
    event_type: $("pub-type").value.trim(),
    source_service: $("pub-source").value.trim(),
    priority: Number($("pub-priority").value) || 3,
    payload,
  };
  try {
    out.textContent = "Published: " + pretty(await api("POST", "/api/v1/events/publish", body));
  } catch (e) {
    out.textContent = e.message;
  }
}

/* ---- dead letters ---------------------------------------------------------- */

function deadLetterRow(d) {
  const ev = d.event || {};
  const pick = el("input", { type: "checkbox", className: "dl-pick", value: d.id });
  pick.addEventListener("click", (e) => e.stopPropagation());
  const tr = el("tr", {}, el("td", {}, pick), el("td", {}, d.id), el("td", {}, ev.event_type),
    el("td", {}, ev.id), el("td", { className: "num" }, d.attempts),
    el("td", {}, String(d.reason || "").replace(/^DEAD_LETTER_REASON_/, "").toLowerCase()),
    el("td", {}, d.dead_lettered_at), el("td", {}, d.stream));
  tr.dataset.id = d.id;
  tr.addEventListener("click", () => { $("dl-event").textContent = pretty(d); });
  return tr;
}

async function loadDeadLetters(ev) {
  if (ev) ev.preventDefault();
  const sub = $("dl-sub").value;
  const body = $("dl-table").tBodies[0];
  $("dl-event").textContent = "";
  if (!sub) {
    body.replaceChildren();
    return;
  }
  try {
    const r = await api("GET", subPath(sub) + "/dead-letters?page_size=100");
    const list = r.dead_letters || [];
    body.replaceChildren(...list.map(deadLetterRow));
    $("dl-result").textContent = `${r.total || 0} dead letter(s) in ${sub}` +
      (r.next_page_token ? " (showing the oldest 100)" : "");
  } catch (e) {
    body.replaceChildren();
    $("dl-result").textContent = e.message;
  }
}

function pickedIds() {
  return Array.from(document.querySelectorAll(".dl-pick:checked"), (c) => c.value);
}

/* Purging cannot be undone: the button asks again by changing its label. */
function confirmed(button) {
  if (button.dataset.armed) {
    delete button.dataset.armed;
    button.textContent = button.dataset.label;
    return true;
  }
  button.dataset.label = button.textContent;
  button.dataset.armed = "1";
  button.textContent = "Click again to confirm";
  setTimeout(() => {
    if (button.dataset.armed) {
      delete button.dataset.armed;
      button.textContent = button.dataset.label;
    }
  }, 4000);
  return false;
}

async function operate(action, all, button) {
  const sub = $("dl-sub").value;
  const ids = pickedIds();
  const out = $("dl-result");
  if (!sub) return;
  if (!all && ids.length === 0) {
    out.textContent = "Select dead letters first (the boxes on the left).";
    return;
  }
  if (action === "purge" && !confirmed(button)) return;
  try {
    const r = await api("POST", `${subPath(sub)}/dead-letters/${action}`, all ? { all: true } : { ids });
    await loadDeadLetters();
    out.textContent = `${action}: ` + JSON.stringify(r);
  } catch (e) {
    out.textContent = e.message;
  }
  refreshSubscriptions();
}

/* ---- seek and snapshots ---------------------------------------------------- */

async function seek(ev) {
  ev.preventDefault();
  const sub = $("seek-sub").value;
  const target = $("seek-target").value;
  const out = $("seek-result");
  let body = { position: target };
  if (target === "timestamp") body.time = $("seek-time").value.trim();
  if (target === "snapshot") body = { snapshot: $("seek-snapshot").value.trim() };
  try {
    out.textContent = `Seek ${sub}: ` + JSON.stringify(await api("POST", subPath(sub) + "/seek", body));
  } catch (e) {
    out.textContent = e.message;
  }
  refreshSubscriptions();
}

async function snapshot(ev) {
  ev.preventDefault();
  const sub = $("seek-sub").value;
  try {
    const r = await api("POST", subPath(sub) + "/snapshots", { name: $("snap-name").value.trim() });
    $("seek-result").textContent = "Snapshot taken: " + pretty(r);
  } catch (e) {
    $("seek-result").textContent = e.message;
  }
}

async function listSnapshots() {
  const sub = $("seek-sub").value;
  try {
    const r = await api("GET", subPath(sub) + "/snapshots");
    const names = (r.snapshots || []).map((s) => `${s.name} (${s.created_at})`);
    $("seek-result").textContent = names.length ? names.join("\n") : `No snapshots of ${sub}.`;
  } catch (e) {
    $("seek-result").textContent = e.message;
  }
}

/* ---- wiring ---------------------------------------------------------------- */

function refreshAll() {
  refreshHealth();
  refreshServiceStats();
  refreshSubscriptions();
}

document.addEventListener("DOMContentLoaded", () => {
  const token = $("token");
  token.value = sessionStorage.getItem("tracseq-token") || "";
  token.addEventListener("change", () => {
    sessionStorage.setItem("tracseq-token", token.value.trim());
    notice("");
    refreshAll();
  });
  $("subs-refresh").addEventListener("click", refreshAll);
  $("tail-form").addEventListener("submit", startTail);
  $("tail-stop").addEventListener("click", stopTail);
  $("tail-clear").addEventListener("click", () => $("tail-log").replaceChildren());
  $("pub-form").addEventListener("submit", publish);
  $("dl-form").addEventListener("submit", loadDeadLetters);
  $("dl-sub").addEventListener("change", loadDeadLetters);
  $("dl-redrive").addEventListener("click", (e) => operate("redrive", false, e.target));
  $("dl-redrive-all").addEventListener("click", (e) => operate("redrive", true, e.target));
  $("dl-purge").addEventListener("click", (e) => operate("purge", false, e.target));
  $("dl-purge-all").addEventListener("click", (e) => operate("purge", true, e.target));
  $("dl-pick-all").addEventListener("change", (e) => {
    for (const c of document.querySelectorAll(".dl-pick")) c.checked = e.target.checked;
  });
  $("seek-form").addEventListener("submit", seek);
  $("snap-form").addEventListener("submit", snapshot);
  $("snap-list").addEventListener("click", listSnapshots);
  /* A tail left running would keep its subscription: delete it on leaving. */
  window.addEventListener("pagehide", () => {
    if (tail) fetch(subPath(tail.name), { method: "DELETE", headers: headers(), keepalive: true });
  });
  refreshAll();
  setInterval(refreshAll, REFRESH_MS);
});
