// The live page: one EventSource on /events with the form's filters; every event is listed
// (newest first, the last MAX_ROWS) and counted per type (MAX_TYPES rows: the most counted
// types, the others together), unless the list is paused. Event text only ever goes in
// through textContent. Screen readers hear the connection's state and log, not each event.
//
// Resuming: when a stream drops, the browser reconnects by itself and sends Last-Event-ID.
// When the browser gives up instead (an HTTP error, e.g. while the service restarts), the page
// opens a new stream with ?last_event_id= set to the last id it showed (the browser does not
// tell it the positions of id-only blocks), after a back-off with jitter. So it does when it
// comes back from the back/forward cache. A filter change starts afresh, without an id.
//
// Auth: a gateway with AUTH_MODE on takes a bearer token (a JWT) in the token field. The token
// stays in this page's memory (never in storage, the address or the DOM): each connection
// POSTs it to /tickets and opens the stream with the short-lived, single-use ticket it gets.
// A stream that ends with `auth-expired` (the token ran out) is resumed with a fresh ticket and
// ?last_event_id= (the event's lastEventId: the stream's own position, which the gateway's
// id-only blocks move past events the filter skipped), so nothing is lost or shown twice; if
// the token itself is refused, the page asks window.liveAuth.refreshToken (a function an app
// may set, returning a new token or a promise of one) or else waits for a new token in the
// field.
"use strict";

const MAX_ROWS = 500;         // rows kept in the list (the counts go on counting)
const LIST_MS = 100;          // what came is listed at most this often
const FRESH_ROWS = 20;        // and highlighted when it is no more than this many rows
const MAX_TYPES = 50;         // rows of the per-type table: the most counted types
const MAX_TRACKED = 10000;    // types counted one by one; types first seen past that: "other"
const NAME_CHARS = 200;       // shown of an event's type and source (and kept: TITLE_CHARS)
const MAX_NOTES = 30;         // lines kept in the connection log
const NOTE_CHARS = 500;       // of each (a note repeats the filters, which may be 8 KB)
const DATA_CHARS = 240;       // length of the compact view of an event's data
const TITLE_CHARS = 2000;     // and of its tooltip (500 whole events of 256 KiB: 128 MB)
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;
const REQUEST_MS = 10000;     // a HEAD or a ticket request unanswered this long counts as failed
// Refusals no retry changes: bad or out-of-scope filters (400, 403), and a request too long
// for the server (414, 431: too many filters, or the resume's id on top of them).
const FINAL = new Map([[400, "the filters"], [403, "the filters"], [414, "the request"],
                       [431, "the request"]]);
const STABLE_MS = 10000;      // a stream that lasted this long starts the back-off afresh
const CLOCK = new Intl.DateTimeFormat([], { hour: "numeric", minute: "numeric", second: "numeric",
                                            hour12: false });  // toLocaleTimeString's, made once
const STATES = { connecting: "connecting…", open: "live", reconnecting: "reconnecting…",
                 stopped: "stopped", signin: "token needed" };

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("filters"), types: $("event-types"), sources: $("sources"), history: $("history"),
  clear: $("clear"), state: $("state"), total: $("total"), reconnects: $("reconnects"),
  lastId: $("last-id"), counts: $("counts"), log: $("log"), events: $("events"),
  other: $("counts-other"), otherCount: $("counts-other").querySelector("td"),
  auth: $("auth"), token: $("token"), forget: $("forget-token"), tokenState: $("token-state"),
  pause: $("pause"),
};
const page = {
  stream: null,          // the current EventSource
  filters: null,         // what it was opened with: {types, sources, history}
  token: "",             // the bearer token (memory only); "" when none is given
  attempt: 0,            // counts connect() calls: a slower, older one gives way
  lastId: "",            // the id of the last event shown: where a resume starts
  dropped: false,        // the stream failed since it last opened
  reconnects: 0,
  retryMs: RETRY_FIRST_MS,
  retryTimer: 0,
  total: 0,
  waiting: [],           // what came since the last listing: {event, type, at} or {notice}
  listTimer: 0,          // the timer that lists them
  paused: false,         // the list is not drawn (what comes is counted and kept to list)
  counts: new Map(),     // type -> {n, seen}: at most MAX_TRACKED (the others: in the total)
  countsChanged: false,  // the table is drawn again at the next listing
};

// -- the stream ---------------------------------------------------------------------------
function streamUrl(filters, resumeAfter, ticket) {
  const params = new URLSearchParams({ unnamed: "1" });   // so that onmessage sees every type
  if (filters.types) params.set("event_types", filters.types);
  if (filters.sources) params.set("sources", filters.sources);
  if (!filters.history) params.set("history", "false");
  if (resumeAfter) params.set("last_event_id", resumeAfter);
  if (ticket) params.set("ticket", ticket);
  return "/events?" + params;
}

async function connect(filters, resumeAfter) {
  clearTimeout(page.retryTimer);
  if (page.stream) page.stream.close();
  page.stream = null;
  page.filters = filters;
  const attempt = ++page.attempt;
  setState(resumeAfter ? "reconnecting" : "connecting");
  let ticket = "";
  if (page.token) {
    ticket = await fetchTicket(attempt);
    if (ticket === null || attempt !== page.attempt) return;   // refused, retrying, or superseded
  }
  const stream = new EventSource(streamUrl(filters, resumeAfter, ticket));
  stream.withTicket = Boolean(ticket);
  page.stream = stream;
  stream.onopen = () => {
    if (page.dropped) {
      page.reconnects += 1;
      ui.reconnects.textContent = page.reconnects;
      note(`reconnected: resuming after ${shortId(page.lastId)}`);
    } else {
      note(`connected (${describe(filters)})`);
    }
    page.dropped = false;
    stream.openedAt = Date.now();
    setState("open");
  };
  stream.onmessage = (message) => show(message);
  stream.addEventListener("gap", (message) => gap(message));
  stream.addEventListener("auth-expired", (message) => authExpired(stream, message));
  stream.onerror = () => { if (stream === page.stream) failed(stream); };
}

function failed(stream) {
  if (!page.dropped) note(`stream lost after ${shortId(page.lastId)}: reconnecting`, "warn");
  ended(stream);
  page.dropped = true;
  setState("reconnecting");
  // The browser retries by itself, but a ticket is good once: with one, reconnect ourselves.
  if (stream.readyState === EventSource.CONNECTING && !stream.withTicket) return;
  stream.close();
  retryLater(stream);
}

function ended(stream) {
  // Only a stream that lasted starts the back-off afresh: one cut as soon as it opens does not.
  if (Date.now() - (stream.openedAt || Infinity) >= STABLE_MS) page.retryMs = RETRY_FIRST_MS;
  stream.openedAt = 0;
}

async function retryLater(stream) {
  // The browser does not say why it gave up: ask with HEAD, which answers like the stream would
  // (with the token as a bearer, not a ticket: a ticket is spent by the stream it opens).
  const url = streamUrl(page.filters, page.lastId, "");
  const headers = page.token ? { Authorization: `Bearer ${page.token}` } : {};
  let answer = null;
  try {
    answer = await fetch(url, { method: "HEAD", cache: "no-store", headers, signal: deadline() });
    if (stream !== page.stream) return;
    if (answer.status === 401) {            // no token, or not a good one any more
      if (await renewToken("the gateway asks for a token")) {
        connect(page.filters, page.lastId);
      }
      return;
    }
    if (FINAL.has(answer.status)) {        // retrying will not help
      const body = await (await fetch(url, { cache: "no-store", headers, signal: deadline() }))
        .json().catch(() => ({ message: `HTTP ${answer.status}` }));   // a proxy's HTML page
      if (stream !== page.stream) return;
      setState("stopped");
      note(`the service refused ${FINAL.get(answer.status)}: ${body.message}`, "bad");
      return;
    }
  } catch (err) {
    answer = null;                          // unreachable for now: try again later
  }
  if (stream !== page.stream) return;       // the filters changed meanwhile
  const wait = nextWait(answer);
  const why = !answer ? "the gateway is unreachable"
    : answer.ok ? "the stream failed" : `the gateway answered ${answer.status}`;
  note(`${why}: retrying in ${(wait / 1000).toFixed(0)} s`, "warn");
  page.retryTimer = setTimeout(() => connect(page.filters, page.lastId), wait);
}

function deadline() {
  // For fetch: a server that takes a request and never answers must not hold the page forever.
  return AbortSignal.timeout(REQUEST_MS);
}

function nextWait(answer) {
  // The back-off, plus up to a quarter more (as the gateway's retry: has, so that a dropped
  // crowd comes back spread out), and at least the answer's Retry-After (seconds) if it has one.
  const wait = page.retryMs * (1 + Math.random() / 4);
  page.retryMs = Math.min(page.retryMs * 2, RETRY_MAX_MS);
  const after = Number(answer ? answer.headers.get("Retry-After") : 0);
  return after > 0 ? Math.max(wait, after * 1000) : wait;
}

// -- auth -----------------------------------------------------------------------------------
async function fetchTicket(attempt, renewed = false) {
  // A ticket for one stream, or null when there is none to have now (the page then says why
  // and waits for a token, or retries later).
  let answer, body = {};
  try {
    answer = await fetch("/tickets", { method: "POST", cache: "no-store", signal: deadline(),
                                       headers: { Authorization: `Bearer ${page.token}` } });
    body = await answer.json().catch(() => ({}));
  } catch (err) {
    answer = null;
  }
  if (attempt !== page.attempt) return null;
  if (answer && answer.status === 201 && body.ticket) return body.ticket;
  if (answer && answer.status === 404) {    // auth is off here: no ticket needed
    note("this gateway does not use tokens: connecting without one", "warn");
    forgetToken();
    return "";
  }
  if (answer && answer.status === 401 && !renewed) {
    if (await renewToken(`the token was refused (${body.message || "unauthorized"})`)
        && attempt === page.attempt) {
      return fetchTicket(attempt, true);
    }
    return null;
  }
  if (answer && answer.status === 401) {
    askForToken(`the new token was refused too (${body.message || "unauthorized"})`);
    return null;
  }
  // overloaded, unreachable: try again later (not before its Retry-After), from where the list is
  const wait = nextWait(answer);
  note(`no ticket (${answer ? answer.status : "unreachable"}): retrying in ${(wait / 1000).toFixed(0)} s`,
       "warn");
  page.retryTimer = setTimeout(() => connect(page.filters, page.lastId), wait);
  return null;
}

async function renewToken(why) {
  // A new token from the app's hook, if it set one; else ask in the field. True: got one.
  const hook = window.liveAuth && window.liveAuth.refreshToken;
  if (typeof hook === "function") {
    try {
      const fresh = cleanToken(await hook());
      if (fresh) {
        setToken(fresh);
        note(`${why}: got a new token from refreshToken()`);
        return true;
      }
    } catch (err) {
      note(`refreshToken() failed: ${err}`, "bad");
    }
  }
  askForToken(why);
  return false;
}

function askForToken(why) {
  if (page.stream) page.stream.close();
  page.stream = null;
  page.dropped = page.dropped || Boolean(page.lastId);
  setState("signin");
  note(`${why}: enter a token to continue`, "bad");
  ui.tokenState.textContent = page.token ? "refused" : "none";
}

function authExpired(stream, message) {
  stream.close();          // the ticket in its address is spent: never let the browser reuse it
  if (stream !== page.stream) return;
  remember(message.lastEventId);   // the stream's position: also moved by id-only blocks
  ended(stream);
  let reason = "token expired";
  try { reason = JSON.parse(message.data).reason || reason; } catch (err) { /* keep it */ }
  note(`stream ended: ${reason} (after ${shortId(page.lastId)})`, "warn");
  page.dropped = true;
  connect(page.filters, page.lastId);
}

function setToken(token) {
  page.token = token;
  const claims = tokenClaims(token);
  const who = claims.sub ? `for ${claims.sub}` : "set";
  const until = Number(claims.exp) ? `, expires ${clock(new Date(claims.exp * 1000))}` : "";
  ui.tokenState.textContent = who + until;       // never the token itself
}

function forgetToken() {
  page.token = "";
  ui.tokenState.textContent = "none";
}

function cleanToken(pasted) {
  // The token alone: without the spaces around it or a copied "Bearer " in front of it.
  return String(pasted || "").trim().replace(/^bearer(?:\s+|$)/i, "");
}

function tokenClaims(token) {
  // For display only (the gateway verifies): the payload part of a JWT, if it is one.
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + (4 - part.length % 4) % 4, "="))) || {};
  } catch (err) {
    return {};
  }
}

function useToken(token) {
  // A new token: resume where the list is (nothing lost), or start if nothing was shown yet.
  setToken(token);
  note(`token ${ui.tokenState.textContent}`);
  page.dropped = Boolean(page.lastId);
  page.retryMs = RETRY_FIRST_MS;
  connect(page.filters || formFilters(), page.lastId);
}

// -- what arrives ---------------------------------------------------------------------------
function show(message) {
  remember(message.lastEventId);
  let event;
  try {
    event = JSON.parse(message.data);
  } catch (err) {
    event = { type: "(not JSON)", data: message.data };
  }
  if (event === null || typeof event !== "object") event = { type: "(not an object)", data: event };
  const type = String(event.type ?? "(no type)");
  count(type);
  list({ event, type, at: new Date() });
}

function gap(message) {
  remember(message.lastEventId);
  let reason = "unknown";
  try { reason = JSON.parse(message.data).reason; } catch (err) { /* keep "unknown" */ }
  const text = `Some events could not be replayed (${reason}): the list continues after a gap.`;
  list({ notice: text });
  note(text, "warn");
}

function remember(id) {
  if (id) page.lastId = id;
}

function list(item) {
  // Listed every LIST_MS, and only the newest MAX_ROWS of what came meanwhile: a burst of
  // thousands costs a few layouts, not one (and an animation) per event.
  page.waiting.push(item);
  if (page.waiting.length >= 2 * MAX_ROWS) page.waiting.splice(0, page.waiting.length - MAX_ROWS);
  if (!page.listTimer) page.listTimer = setTimeout(listWaiting, LIST_MS);
}

function listWaiting() {
  page.listTimer = 0;
  if (!page.paused) listRows();     // paused: list() keeps what comes; resuming lists it
  ui.total.textContent = page.total;
  ui.lastId.textContent = page.lastId || "none yet";
  ui.lastId.title = page.lastId || "none yet";
}

function listRows() {
  const rows = page.waiting.slice(-MAX_ROWS).reverse()
    .map((item) => item.notice ? element("li", "notice", item.notice) : eventRow(item));
  page.waiting = [];
  if (rows.length <= FRESH_ROWS) rows.forEach((fresh) => fresh.classList.add("fresh"));
  ui.events.prepend(...rows);
  while (ui.events.childElementCount > MAX_ROWS) ui.events.lastElementChild.remove();
  if (page.countsChanged) showCounts();
}

function eventRow({ event, type, at }) {
  const source = String(event.source ?? "");
  const row = document.createElement("li");
  row.dataset.type = clip(type, TITLE_CHARS);
  row.dataset.source = clip(source, TITLE_CHARS);
  row.dataset.id = String(event.id ?? "");
  const data = JSON.stringify(event.data ?? null);
  const view = element("span", "data", clip(data, DATA_CHARS));
  view.title = clip(data, TITLE_CHARS);
  row.append(timeOf(event.timestamp, at), named("type", type), named("source", source), view);
  return row;
}

function named(className, text) {
  // A type or source: a name may be as long as an event (256 KiB), not its row.
  const node = element("span", className, clip(text, NAME_CHARS));
  if (text.length > NAME_CHARS) node.title = clip(text, TITLE_CHARS);
  return node;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}/;

function timeOf(timestamp, received) {
  // Only an RFC 3339 time is read as one: Date() makes 2001-05-01 of "x 5".
  const parsed = RFC3339.test(String(timestamp ?? "")) ? new Date(timestamp) : NaN;
  const when = isNaN(parsed) ? received : parsed;         // no usable timestamp: when it came
  const time = element("time", "", clock(when));
  time.dateTime = when.toISOString();
  time.title = String(timestamp ?? "received " + when.toISOString());
  return time;
}

function count(type) {
  // Counted here, drawn at the next listing (showCounts): a new type costs no layout of its own.
  page.total += 1;
  page.countsChanged = true;
  let entry = page.counts.get(type);
  if (!entry) {
    if (page.counts.size >= MAX_TRACKED) return;     // counted in "other types"
    entry = { n: 0, seen: 0 };
    page.counts.set(type, entry);
  }
  entry.n += 1;
  entry.seen = page.total;
}

function showCounts() {
  // The MAX_TYPES most counted types (then the most recently seen), by name; the rest in one
  // "other types" row.
  page.countsChanged = false;
  let top = [...page.counts];
  if (top.length > MAX_TYPES) {
    top = top.sort(([, a], [, b]) => b.n - a.n || b.seen - a.seen).slice(0, MAX_TYPES);
  }
  top.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  ui.counts.replaceChildren(...top.map(([type, entry]) => {
    const row = document.createElement("tr");
    row.dataset.type = clip(type, TITLE_CHARS);
    const head = element("th", "", clip(type, NAME_CHARS));
    head.scope = "row";
    if (type.length > NAME_CHARS) head.title = clip(type, TITLE_CHARS);
    row.append(head, element("td", "num", String(entry.n)));
    return row;
  }));
  const other = page.total - top.reduce((sum, [, entry]) => sum + entry.n, 0);
  ui.otherCount.textContent = other;
  ui.other.hidden = other === 0;
}

// -- the page around it ---------------------------------------------------------------------
function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = text;
  return node;
}

function setState(name) {
  ui.state.textContent = STATES[name];
  ui.state.className = "state " + name;
  ui.state.dataset.state = name;
}

function note(text, level = "") {
  const stamp = clock(new Date());
  ui.log.prepend(element("li", level, `${stamp} ${clip(text, NOTE_CHARS)}`));
  while (ui.log.childElementCount > MAX_NOTES) ui.log.lastElementChild.remove();
}

function clock(when) {
  // A time of day, the locale's way, 24-hour: one shared formatter (toLocaleTimeString makes a
  // new one per call, a millisecond each: the page could not keep up with 1,000 events/s).
  return isNaN(when) ? String(when) : CLOCK.format(when);
}

function clip(text, chars) {
  return text.length > chars ? text.slice(0, chars) + "…" : text;
}

function shortId(id) {
  if (!id) return "the start";
  return id.length > 24 ? `${id.slice(0, 10)}…${id.slice(-10)}` : id;
}

function describe(filters) {
  return `types: ${filters.types || "all"}, sources: ${filters.sources || "all"}`;
}

function clearList() {
  page.waiting = [];
  ui.events.replaceChildren();
  ui.counts.replaceChildren();
  page.counts.clear();
  page.countsChanged = false;
  ui.other.hidden = true;
  page.total = 0;
  ui.total.textContent = 0;
}

function formFilters() {
  return { types: ui.types.value.trim(), sources: ui.sources.value.trim(),
           history: ui.history.checked };
}

ui.form.addEventListener("submit", (submit) => {
  submit.preventDefault();
  const filters = formFilters();
  const query = new URLSearchParams();     // the address keeps the filters: reload, bookmark, share
  if (filters.types) query.set("event_types", filters.types);
  if (filters.sources) query.set("sources", filters.sources);
  if (!filters.history) query.set("history", "false");
  window.history.replaceState(null, "", query.size ? "?" + query : location.pathname);
  clearList();
  page.lastId = "";
  ui.lastId.textContent = "none yet";
  ui.lastId.title = "none yet";
  page.dropped = false;
  page.retryMs = RETRY_FIRST_MS;
  note(`new filters (${describe(filters)})`);
  connect(filters, "");
});

ui.auth.addEventListener("submit", (submit) => {
  submit.preventDefault();
  const token = cleanToken(ui.token.value);
  ui.token.value = "";                       // out of the DOM: the page keeps it in memory only
  if (token) useToken(token);
});

ui.forget.addEventListener("click", () => {
  const had = Boolean(page.token);
  ui.token.value = "";
  forgetToken();
  if (!had) {
    note("token forgotten");
    return;
  }
  // Whoever comes next must not read on: not the open stream, nor one a ticket request or a
  // retry in flight would open with the token.
  page.attempt += 1;
  clearTimeout(page.retryTimer);
  if (page.stream) page.stream.close();
  page.stream = null;
  page.dropped = Boolean(page.lastId);
  setState("signin");
  note("token forgotten: its stream is closed; enter a token to connect again");
});

ui.pause.addEventListener("click", () => {
  page.paused = !page.paused;
  ui.pause.ariaPressed = String(page.paused);
  ui.pause.textContent = page.paused ? "Resume list" : "Pause list";
  ui.events.classList.toggle("paused", page.paused);
  if (!page.paused) {
    clearTimeout(page.listTimer);
    listWaiting();
  }
});

// For an app embedding this page (and for tests): hand over a token, or set refreshToken to a
// function that returns a new one when the current one is refused or expires.
window.liveAuth = { useToken: (token) => useToken(cleanToken(token)), refreshToken: null };

ui.clear.addEventListener("click", clearList);
window.addEventListener("pagehide", () => page.stream && page.stream.close());
window.addEventListener("pageshow", (shown) => {
  if (!shown.persisted || !page.filters) return;    // a first load, not a return to the page
  note("back on the page: resuming");               // from the back/forward cache: the stream
  page.dropped = Boolean(page.lastId);              // was closed on pagehide
  connect(page.filters, page.lastId);
});

const initial = new URLSearchParams(location.search);
ui.types.value = initial.get("event_types") || "";
ui.sources.value = initial.get("sources") || "";
ui.history.checked = !["false", "0", "no", "off"].includes((initial.get("history") || "").toLowerCase());
connect(formFilters(), "");
