// specter trace viewer. Span text is attacker-controlled: every node is built with
// document.createElement and textContent, never innerHTML.
"use strict";

const API = "api/";
const POLL_MS = 2000;
const PAGE = 50;
let poll = null;

// ---- DOM helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "onclick" || k === "onchange" || k === "oninput") node[k] = v;
    else if (k === "href") node.setAttribute("href", safeHref(v));
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Only the viewer's own hash links are ever put in an href.
function safeHref(v) {
  return typeof v === "string" && v.startsWith("#/") ? v : "#/calls";
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function main() { return document.getElementById("main"); }

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

async function getJSON(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const url = API + path + (q.toString() ? "?" + q : "");
  const r = await fetch(url, { headers: { accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
  return body;
}

// ---- formatting ----------------------------------------------------------------------------

const fmt = {
  time(ms) { return ms ? new Date(ms).toLocaleString() : "–"; },
  ms(v) { return v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms"; },
  n(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString(); },
  usd(v) { return v === null || v === undefined ? "–" : "$" + (v < 0.01 && v > 0 ? v.toFixed(6) : v.toFixed(4)); },
  pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; },
};

function model(c) {
  const req = c.request_model || "–";
  return c.response_model && c.response_model !== c.request_model ? req + " → " + c.response_model : req;
}

function status(c) {
  const text = c.error ? (c.error_type || "error") : "ok";
  const code = c.http_status ? " " + c.http_status : "";
  return el("span", { class: c.error ? "err" : "ok" }, text + code);
}

function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch (_) { return value; }
  }
  return JSON.stringify(value, null, 2);
}

function copyButton(getText) {
  return el("button", {
    onclick: async (e) => {
      e.stopPropagation();
      const b = e.currentTarget;
      try { await navigator.clipboard.writeText(getText()); b.textContent = "copied"; }
      catch (_) { b.textContent = "copy failed"; }
      setTimeout(() => { b.textContent = "copy"; }, 1200);
    },
  }, "copy");
}

// ---- routing -------------------------------------------------------------------------------

function route() {
  if (poll) { clearInterval(poll); poll = null; }
  const hash = location.hash || "#/calls";
  const [path, query] = hash.slice(1).split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const id of ["calls", "groups", "totals"]) {
    document.getElementById("nav-" + id).classList.toggle("active", parts[0] === id || (id === "calls" && parts[0] === "call"));
  }
  const view = {
    calls: () => callsView(params),
    call: () => callView(parts[1], parts[2]),
    groups: () => groupsView(params),
    totals: () => totalsView(params),
  }[parts[0]] || (() => callsView(params));
  view().catch((e) => show(el("div", { class: "card err" }, "The viewer could not load this page: " + e.message)));
  refreshStatus();
}

function go(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const target = "#" + path + (q.toString() ? "?" + q : "");
  if (location.hash === target) route(); else location.hash = target;
}

async function refreshStatus() {
  try {
    const s = await getJSON("status");
    document.getElementById("status").textContent =
      fmt.n(s.calls) + " calls indexed" + (s.file ? " · " + s.file : "");
  } catch (_) { /* the page says why elsewhere */ }
}

// ---- calls ---------------------------------------------------------------------------------

const FILTERS = ["provider", "model", "status", "session", "user", "conversation", "trace", "q"];

async function callsView(params) {
  const facets = await getJSON("facets");
  const state = { ...params };
  const offset = Number(state.offset || 0);
  const input = (key, placeholder) => el("input", {
    id: "f-" + key, placeholder, value: state[key] || "",
    onchange: (e) => go("/calls", { ...state, [key]: e.target.value, offset: 0 }),
  });
  const select = (key, label, options) => {
    const s = el("select", { id: "f-" + key, onchange: (e) => go("/calls", { ...state, [key]: e.target.value, offset: 0 }) },
      el("option", { value: "" }, label),
      options.map((o) => el("option", { value: o, selected: state[key] === o ? "selected" : null }, o)));
    return s;
  };
  const bar = el("div", { class: "bar" },
    select("provider", "all providers", facets.providers),
    select("model", "all models", facets.models),
    select("status", "any status", ["ok", "error"]),
    input("session", "session"),
    input("user", "user"),
    input("q", "search"),
    select("sort", "newest first", ["cost", "duration"]),
    el("button", { onclick: () => go("/calls", {}) }, "clear"));
  for (const key of ["conversation", "trace"]) {
    if (state[key]) bar.append(el("span", { class: "badge" }, key + ": " + state[key]));
  }
  const table = el("div", { id: "calls" });
  const pager = el("div", { class: "bar", id: "pager" });
  show(bar, table, pager);
  let shown = -1;
  const load = async () => {
    const filter = {};
    for (const k of FILTERS) filter[k] = state[k];
    const page = await getJSON("calls", { ...filter, sort: state.sort, offset, limit: PAGE });
    if (page.indexed === shown) return;
    shown = page.indexed;
    table.replaceChildren(callsTable(page.calls));
    pager.replaceChildren(...[
      el("span", { id: "total", class: "muted" }, fmt.n(page.total) + " calls"),
      offset > 0 ? el("button", { onclick: () => go("/calls", { ...state, offset: Math.max(0, offset - PAGE) }) }, "← newer") : null,
      offset + PAGE < page.total ? el("button", { onclick: () => go("/calls", { ...state, offset: offset + PAGE }) }, "older →") : null,
      el("span", { class: "muted" }, "rows " + (page.total ? offset + 1 : 0) + "–" + Math.min(offset + PAGE, page.total)),
    ].filter(Boolean));
  };
  await load();
  poll = setInterval(() => { load().catch(() => {}); refreshStatus(); }, POLL_MS);
}

function callsTable(calls) {
  const head = ["time", "provider", "operation", "model", "status", "duration", "first chunk",
    "input", "output", "cached", "reasoning", "cost", "stream", "session", "user"];
  const num = new Set(["duration", "first chunk", "input", "output", "cached", "reasoning", "cost"]);
  return el("table", { class: "calls" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { class: num.has(h) ? "num" : null }, h)))),
    el("tbody", {}, calls.map((c) => el("tr", {
      class: "row call", "data-trace": c.trace_id, "data-span": c.span_id,
      onclick: () => go("/call/" + c.trace_id + "/" + c.span_id),
    },
    el("td", {}, fmt.time(c.start_ms)),
    el("td", {}, c.provider || "–"),
    el("td", {}, c.operation || "–"),
    el("td", { class: "model" }, model(c)),
    el("td", { class: "status" }, status(c)),
    el("td", { class: "num" }, fmt.ms(c.duration_ms)),
    el("td", { class: "num" }, fmt.ms(c.ttfc_ms)),
    el("td", { class: "num input" }, fmt.n(c.input_tokens)),
    el("td", { class: "num output" }, fmt.n(c.output_tokens)),
    el("td", { class: "num" }, fmt.n(c.cached_tokens)),
    el("td", { class: "num" }, fmt.n(c.reasoning_tokens)),
    el("td", { class: "num" }, fmt.usd(c.cost)),
    el("td", {}, c.streamed ? "yes" : ""),
    el("td", { class: "session" }, c.session || ""),
    el("td", {}, c.user || "")))));
}

// ---- one call ------------------------------------------------------------------------------

function attrValue(v) {
  if (!v) return null;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  if ("arrayValue" in v) return (v.arrayValue.values || []).map(attrValue);
  if ("kvlistValue" in v) return Object.fromEntries((v.kvlistValue.values || []).map((kv) => [kv.key, attrValue(kv.value)]));
  if ("bytesValue" in v) return v.bytesValue;
  return null;
}

function attrMap(list) {
  const out = {};
  for (const kv of list || []) out[kv.key] = attrValue(kv.value);
  return out;
}

function parseJSON(text) {
  if (typeof text !== "string") return text;
  try { return JSON.parse(text); } catch (_) { return null; }
}

function marks(text) {
  const out = [];
  if (typeof text === "string" && text.endsWith("…")) out.push(el("span", { class: "badge warn" }, "truncated"));
  if (typeof text === "string" && text.includes("[REDACTED]")) out.push(el("span", { class: "badge warn" }, "redacted"));
  return out;
}

const IMAGE = /^image\/(png|jpeg|gif|webp)$/;

function image(mime, base64) {
  if (!IMAGE.test(mime || "") || typeof base64 !== "string" || !/^[A-Za-z0-9+/=\s]*$/.test(base64)) return null;
  return el("img", { class: "thumb", alt: "image (" + mime + ")", src: "data:" + mime + ";base64," + base64.replace(/\s/g, "") });
}

function dataUrlImage(uri) {
  const m = /^data:(image\/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=]*)$/.exec(uri || "");
  return m ? image(m[1], m[2]) : null;
}

function part(p) {
  if (typeof p === "string") return el("div", { class: "text" }, p, marks(p));
  if (!p || typeof p !== "object") return el("pre", {}, pretty(p));
  switch (p.type) {
    case "text":
      return el("div", { class: "text" }, p.content ?? "", marks(p.content));
    case "reasoning":
      return el("details", { class: "reasoning" }, el("summary", {}, "reasoning"),
        el("div", { class: "text" }, p.content ?? "", marks(p.content)));
    case "tool_call":
      return el("div", { class: "tool-call" },
        el("span", { class: "muted" }, "tool call "), el("span", { class: "name" }, p.name || "?"),
        p.id ? el("span", { class: "muted" }, " · " + p.id) : null,
        el("pre", { class: "arguments" }, p.arguments === undefined ? "" : pretty(p.arguments)), marks(String(p.arguments ?? "")));
    case "tool_call_response":
      return el("div", { class: "tool-response" },
        el("span", { class: "muted" }, "tool result" + (p.id ? " · " + p.id : "")),
        el("pre", {}, pretty(p.response ?? p.result ?? "")));
    case "blob": {
      const img = image(p.mime_type, p.content);
      return el("div", {}, img || el("span", { class: "muted" }, "blob " + (p.mime_type || p.modality || "") + " (not shown)"));
    }
    case "uri": {
      const img = dataUrlImage(p.uri);
      return el("div", {}, img || el("span", { class: "muted" }, (p.modality || "file") + " at " + (p.uri || "?") + " (not fetched)"));
    }
    default:
      return el("pre", {}, pretty(p));
  }
}

function messages(title, text, system, captured) {
  const box = el("div", { class: "card" }, el("h3", {}, title));
  if (text === undefined || text === null) {
    box.append(el("div", { class: "notcaptured" }, captured ? "none" : "not captured"));
    return box;
  }
  const value = parseJSON(text);
  if (value === null) { box.append(el("pre", {}, String(text))); return box; }
  if (system) {
    box.append(el("div", { class: "msg system" }, el("div", { class: "role" }, "system"), (Array.isArray(value) ? value : [value]).map(part)));
    return box;
  }
  for (const m of Array.isArray(value) ? value : [value]) {
    const role = (m && m.role) || "message";
    box.append(el("div", { class: "msg " + String(role).replace(/[^a-z_]/g, "") },
      el("div", { class: "role" }, role + (m && m.finish_reason ? " · " + m.finish_reason : "")),
      (m && Array.isArray(m.parts) ? m.parts : [m]).map(part)));
  }
  return box;
}

async function callView(trace, span) {
  const data = await getJSON("call/" + encodeURIComponent(trace) + "/" + encodeURIComponent(span));
  const c = data.call;
  const s = data.span || {};
  const attrs = attrMap(s.attributes);
  // Content was captured when either side's messages were recorded; what is missing then was
  // not in the call.
  const captured = "gen_ai.input.messages" in attrs || "gen_ai.output.messages" in attrs;
  const kv = (k, v) => el("div", { class: "kv" }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
  const head = el("div", { class: "card" },
    el("h2", {}, (c.operation || "call") + " · " + model(c)),
    el("div", { class: "grid" },
      kv("time", fmt.time(c.start_ms)), kv("provider", c.provider || "–"), kv("status", status(c)),
      kv("duration", fmt.ms(c.duration_ms)), kv("time to first chunk", fmt.ms(c.ttfc_ms)),
      kv("input tokens", fmt.n(c.input_tokens)), kv("output tokens", fmt.n(c.output_tokens)),
      kv("cached tokens", fmt.n(c.cached_tokens)), kv("reasoning tokens", fmt.n(c.reasoning_tokens)),
      kv("cost", fmt.usd(c.cost)), kv("streamed", c.streamed ? "yes" : "no"),
      kv("session", c.session ? el("a", { href: "#/calls?session=" + encodeURIComponent(c.session) }, c.session) : "–"),
      kv("user", c.user || "–"),
      kv("trace", el("a", { href: "#/calls?trace=" + c.trace_id }, c.trace_id)), kv("span", c.span_id)),
    el("div", { class: "bar" }, el("span", { class: "muted" }, "link: "),
      el("code", { id: "permalink" }, location.href.split("#")[0] + "#/call/" + c.trace_id + "/" + c.span_id)));
  if (!data.span) {
    show(head, el("div", { class: "card notcaptured" }, "The span is no longer in the traces files (rotated away)."));
    return;
  }
  const tools = attrs["gen_ai.tool.definitions"];
  const toolBox = el("details", { class: "card" }, el("summary", {}, "tool definitions"),
    tools === undefined ? el("div", { class: "notcaptured" }, captured ? "none" : "not captured") : el("pre", {}, pretty(tools)));
  const raw = el("details", { class: "card", open: "open" }, el("summary", {}, "attributes"),
    el("div", { class: "bar" }, copyButton(() => JSON.stringify(attrs, null, 2))),
    el("table", {}, el("tbody", {}, Object.keys(attrs).sort().map((k) =>
      el("tr", {}, el("td", {}, k), el("td", {}, el("pre", {}, pretty(attrs[k]))))))));
  const events = el("details", { class: "card" }, el("summary", {}, "events (" + (s.events || []).length + ")"),
    el("div", { class: "bar" }, copyButton(() => JSON.stringify(s.events || [], null, 2))),
    el("pre", {}, JSON.stringify(s.events || [], null, 2)));
  const resource = el("details", { class: "card" }, el("summary", {}, "resource and raw span"),
    el("div", { class: "bar" }, copyButton(() => JSON.stringify(s, null, 2))),
    el("pre", {}, JSON.stringify({ resource: data.resource, scope: data.scope, span: s }, null, 2)));
  show(head,
    messages("System instructions", attrs["gen_ai.system_instructions"], true, captured),
    messages("Input", attrs["gen_ai.input.messages"], false, false),
    messages("Output", attrs["gen_ai.output.messages"], false, false),
    toolBox, raw, events, resource);
}

// ---- sessions and traces -------------------------------------------------------------------

async function groupsView(params) {
  const by = params.by || "session";
  const tabs = el("div", { class: "bar" }, ["session", "conversation", "trace"].map((b) =>
    el("button", { class: b === by ? "active" : null, onclick: () => go("/groups", { by: b }) },
      { session: "by session", conversation: "by conversation", trace: "by trace" }[b])));
  const data = await getJSON("groups", { by, limit: 100, offset: params.offset || 0 });
  const filterKey = { session: "session", conversation: "conversation", trace: "trace" }[by];
  const table = el("table", { class: "groups" },
    el("thead", {}, el("tr", {}, ["key", "calls", "errors", "input", "output", "cost", "duration", "first", "last", "timeline"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, data.groups.map((g) => el("tr", { class: "row group", onclick: () => groupDetail(by, filterKey, g) },
      el("td", {}, g.key), el("td", { class: "num" }, fmt.n(g.calls)), el("td", { class: "num" }, fmt.n(g.errors)),
      el("td", { class: "num" }, fmt.n(g.input_tokens)), el("td", { class: "num" }, fmt.n(g.output_tokens)),
      el("td", { class: "num" }, fmt.usd(g.cost)), el("td", { class: "num" }, fmt.ms(g.duration_ms)),
      el("td", {}, fmt.time(g.first_ms)), el("td", {}, fmt.time(g.last_ms)),
      el("td", {}, fmt.ms(g.last_ms - g.first_ms))))));
  show(tabs, el("div", { class: "muted" }, fmt.n(data.total) + " groups"), table, el("div", { id: "group-detail" }));
}

async function groupDetail(by, key, g) {
  const page = await getJSON("calls", { [key]: g.key, limit: 500 });
  const calls = page.calls.slice().sort((a, b) => a.start_ms - b.start_ms);
  const box = document.getElementById("group-detail");
  box.replaceChildren(el("div", { class: "card" },
    el("h3", {}, by + " " + g.key + " · " + fmt.n(g.calls) + " calls · " + fmt.usd(g.cost)),
    timeline(calls),
    el("div", { class: "bar" }, el("a", { href: "#/calls?" + key + "=" + encodeURIComponent(g.key) }, "show these calls in the list")),
    callsTable(calls)));
  box.scrollIntoView();
}

function timeline(calls) {
  const W = 900, row = 14;
  const start = Math.min(...calls.map((c) => c.start_ms));
  const end = Math.max(...calls.map((c) => c.start_ms + (c.duration_ms || 0)));
  const span = Math.max(1, end - start);
  const s = svg("svg", { width: W, height: calls.length * row + 20, class: "timeline" });
  calls.forEach((c, i) => {
    const x = ((c.start_ms - start) / span) * (W - 200);
    const w = Math.max(2, ((c.duration_ms || 0) / span) * (W - 200));
    const r = svg("rect", { x, y: i * row + 2, width: w, height: row - 4, fill: c.error ? "#e03131" : "#4c6ef5", rx: 2 });
    const t = svg("title", {}); t.textContent = model(c) + " · " + fmt.ms(c.duration_ms);
    r.append(t);
    const label = svg("text", { x: Math.min(x + w + 4, W - 196), y: i * row + 11 });
    label.textContent = (c.request_model || "") + " " + fmt.ms(c.duration_ms);
    s.append(r, label);
  });
  return s;
}

// ---- totals --------------------------------------------------------------------------------

async function totalsView(params) {
  const t = await getJSON("totals", params);
  const a = t.all;
  const kv = (k, v, id) => el("div", { class: "kv" }, el("div", { class: "k" }, k), el("div", { class: "v", id }, v));
  const overall = el("div", { class: "card" }, el("h2", {}, "All calls"), el("div", { class: "grid" },
    kv("calls", fmt.n(a.calls), "total-calls"), kv("errors", fmt.n(a.errors) + " (" + fmt.pct(a.error_rate) + ")", "total-errors"),
    kv("input tokens", fmt.n(a.input_tokens), "total-input"), kv("output tokens", fmt.n(a.output_tokens), "total-output"),
    kv("cached tokens", fmt.n(a.cached_tokens)), kv("reasoning tokens", fmt.n(a.reasoning_tokens)),
    kv("cost", fmt.usd(a.cost), "total-cost"), kv("cache hit", fmt.pct(a.cache_hit_ratio)),
    kv("duration p50 / p95", fmt.ms(a.duration_p50_ms) + " / " + fmt.ms(a.duration_p95_ms)),
    kv("first chunk p50 / p95", fmt.ms(a.ttfc_p50_ms) + " / " + fmt.ms(a.ttfc_p95_ms))));
  const head = ["provider", "model", "calls", "errors", "error rate", "input", "output", "cached", "cache hit", "cost",
    "p50", "p95", "first chunk p50", "first chunk p95"];
  const table = el("table", { class: "totals" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, t.by_model.map((r) => el("tr", { class: "row", onclick: () => go("/calls", { provider: r.provider, model: r.model }) },
      el("td", {}, r.provider || "–"), el("td", { class: "model" }, r.model || "–"), el("td", { class: "num calls" }, fmt.n(r.calls)),
      el("td", { class: "num" }, fmt.n(r.errors)), el("td", { class: "num" }, fmt.pct(r.error_rate)),
      el("td", { class: "num" }, fmt.n(r.input_tokens)), el("td", { class: "num" }, fmt.n(r.output_tokens)),
      el("td", { class: "num" }, fmt.n(r.cached_tokens)), el("td", { class: "num" }, fmt.pct(r.cache_hit_ratio)),
      el("td", { class: "num" }, fmt.usd(r.cost)), el("td", { class: "num" }, fmt.ms(r.duration_p50_ms)),
      el("td", { class: "num" }, fmt.ms(r.duration_p95_ms)), el("td", { class: "num" }, fmt.ms(r.ttfc_p50_ms)),
      el("td", { class: "num" }, fmt.ms(r.ttfc_p95_ms))))));
  const charts = el("div", { class: "charts" },
    chart("calls", t.series, (b) => b.calls, fmt.n),
    chart("errors", t.series, (b) => b.errors, fmt.n),
    chart("tokens", t.series, (b) => b.tokens, fmt.n),
    chart("cost", t.series, (b) => b.cost, fmt.usd));
  show(overall, el("h2", {}, "By provider and model"), table, el("h2", {}, "Over time"), charts);
  poll = setInterval(async () => {
    try { const n = await getJSON("totals", params); if (n.indexed !== t.indexed) route(); } catch (_) { /* retried */ }
  }, POLL_MS * 2);
}

function chart(title, series, value, format) {
  const W = 320, H = 120, pad = 18;
  const box = el("div", { class: "card" }, el("h3", {}, title));
  if (!series.length) { box.append(el("div", { class: "muted" }, "no calls")); return box; }
  const max = Math.max(...series.map(value), 0) || 1;
  const s = svg("svg", { width: W, height: H + pad });
  const w = (W - 2) / series.length;
  series.forEach((b, i) => {
    const h = (value(b) / max) * H;
    const r = svg("rect", { x: 1 + i * w, y: H - h, width: Math.max(1, w - 1), height: h, fill: "#748ffc" });
    const t = svg("title", {}); t.textContent = new Date(b.start_ms).toLocaleString() + ": " + format(value(b));
    r.append(t);
    s.append(r);
  });
  const first = svg("text", { x: 1, y: H + 12 }); first.textContent = new Date(series[0].start_ms).toLocaleTimeString();
  const top = svg("text", { x: W - 4, y: 10, "text-anchor": "end" }); top.textContent = "max " + format(max);
  s.append(first, top);
  box.append(s);
  return box;
}

window.addEventListener("hashchange", route);
route();
