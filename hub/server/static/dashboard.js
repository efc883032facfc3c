// Synapse Hub dashboard: read-only, live. Everything comes over the hub's own WebSocket: the read commands
// (agents, claims, board, task.list, message.list, state.list) load a room, and the `tail` command keeps it
// live by re-querying only the part an event touched. No polling, no reload. The tail is batched (one frame per
// group commit), so an open page costs the hub little even under a flood of messages.
// Every string from the hub is put on the page with textContent: agent data never becomes markup.
"use strict";

(() => {
  const MIN_GAP_MS = 200; // at most one re-query of a part per this interval, however fast events come
  const FEED_ROWS = 200;
  const EVENT_ROWS = 200;
  const TEXT_MAX = 400;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let adminToken = params.get("token") || null;
  let room = params.get("room") || "default";
  if (params.has("token")) {
    // keep the token out of the address bar, the history and screenshots
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }

  let ws = null;
  let nextId = 0;
  let pending = new Map();
  let position = 0; // the newest event position shown
  let backoff = 250;
  let generation = 0; // bumped when the room changes: late replies for the old room are dropped
  let hasViews = false;
  const feedRows = new Map(); // seq → <li>
  const inflight = {};
  const dirty = {};
  const lastRun = {};
  const timers = {};

  // -- building the page (text only) --------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function short(value) {
    let text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) text = "";
    return text.length > TEXT_MAX ? text.slice(0, TEXT_MAX) + "…" : text;
  }

  function clock(ts) {
    if (!ts) return "–";
    const d = new Date(ts * 1000);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
      tr.appendChild(td);
    }
    return tr;
  }

  const STATUSES = new Set(["active", "busy", "waiting", "idle", "done", "offline", "pending", "ready",
    "in_progress", "blocked", "cancelled"]);

  function badge(status) {
    const known = STATUSES.has(status) ? status : "other";
    return el("span", "badge status-" + known, status);
  }

  function setCount(id, n) {
    $(id).textContent = n === null ? "" : "(" + n + ")";
  }

  function setStatus(text, kind) {
    const node = $("status");
    node.textContent = text;
    node.className = "status status-" + kind;
  }

  function notice(text) {
    const node = $("notice");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // -- the WebSocket ------------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(scheme + "//" + location.host + "/");
    ws.onopen = onOpen;
    ws.onmessage = onMessage;
    ws.onclose = onClose;
  }

  function request(op, fields) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject({ code: "disconnected", message: "not connected" });
        return;
      }
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      const auth = adminToken ? { admin_token: adminToken } : {};  // reads on a gated hub need it
      ws.send(JSON.stringify(Object.assign({ op: op, id: id, room: room }, auth, fields || {})));
    });
  }

  function onOpen() {
    backoff = 250;
    setStatus("live", "live");
    loadRooms();
    startRoom(position || null);
  }

  function onClose() {
    const failed = pending;
    pending = new Map();
    for (const p of failed.values()) p.reject({ code: "disconnected", message: "connection lost" });
    setStatus("reconnecting…", "down");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  }

  function onMessage(msg) {
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch (e) {
      return;
    }
    if ((frame.type === "Ok" || frame.type === "Error") && pending.has(frame.id)) {
      const p = pending.get(frame.id);
      pending.delete(frame.id);
      if (frame.type === "Ok") p.resolve(frame.result);
      else p.reject({ code: frame.code, message: frame.message });
    } else if (frame.type === "EventBatch") {
      for (const one of frame.events) onEvent(one);
    } else if (frame.type === "EventFrame") {
      onEvent(frame);
    } else if (frame.type === "Notice" && frame.kind === "agent.presence") {
      onPresence(frame);
    }
  }

  // -- rooms ----------------------------------------------------------------------------------------

  async function loadRooms() {
    let names = [];
    try {
      const result = await request("room.list", { admin_token: adminToken });
      names = result.rooms.map((r) => r.name);
      $("auth").hidden = true;
      notice("");
    } catch (err) {
      if (err.code === "unauthorized") {
        $("auth").hidden = false;
        notice("This hub has an admin token: give it (?token=… or the field) to list every room. " +
          "Showing room " + room + ".");
      }
    }
    if (!names.includes(room)) names.push(room);
    names.sort();
    const select = $("room");
    select.replaceChildren(...names.map((name) => {
      const option = el("option", null, name);
      option.value = name;
      option.selected = name === room;
      return option;
    }));
  }

  function startRoom(after) {
    generation += 1;
    const gen = generation;
    request("tail", { rooms: [room], after: after, batch: true })
      .then((result) => {
        if (gen === generation && result.after > position) position = result.after;
      })
      .catch((err) => notice("tail: " + err.message));
    for (const part of Object.keys(PARTS)) run(part);
  }

  function switchRoom(name) {
    room = name;
    const p = new URLSearchParams(location.search);
    p.set("room", name);
    history.replaceState(null, "", location.pathname + "?" + p.toString());
    position = 0;
    feedRows.clear();
    $("feed").replaceChildren();
    $("events").replaceChildren();
    startRoom(null);
  }

  // -- the parts of the page, each loaded by read commands -------------------------------------------

  function agentRow(a) {
    const tr = row([
      el("span", "name", a.name),
      a.role,
      badge(a.status),
      a.waiting_on || (a.waiter ? "messages (waiter " + a.waiter + ")" : null),
      clock(a.last_heartbeat),
      a.sessions,
    ]);
    tr.dataset.agent = a.name;
    return tr;
  }

  async function loadAgents(gen) {
    const result = await request("agents");
    if (gen !== generation) return;
    const tbody = $("agents").tBodies[0];
    tbody.replaceChildren(...result.agents.map(agentRow));
    setCount("agents-count", result.agents.length);
  }

  // A presence change with no event (an agent waits, or stops waiting): its row is replaced in place.
  function onPresence(frame) {
    if (frame.room !== room || !frame.detail) return;
    const tbody = $("agents").tBodies[0];
    const old = Array.from(tbody.rows).find((tr) => tr.dataset.agent === frame.detail.name);
    if (old) tbody.replaceChild(agentRow(frame.detail), old);
    else schedule("agents");
  }

  async function loadClaims(gen) {
    const result = await request("claims");
    if (gen !== generation) return;
    $("claims").tBodies[0].replaceChildren(...result.claims.map((c) => row([
      el("span", "name", c.work),
      c.holder,
      c.paths.join(" "),
      c.held_by,
      c.expires ? clock(c.expires) : null,
      c.checkpoint === null ? null : short(c.checkpoint),
    ])));
    setCount("claims-count", result.claims.length);
  }

  async function loadPlan(gen) {
    const [listed, board] = await Promise.all([request("task.list"), request("board")]);
    if (gen !== generation) return;
    const tasks = listed.tasks;
    const ids = new Set(tasks.map((t) => t.id));
    const children = new Map();
    for (const t of tasks) {
      const parent = t.parent && ids.has(t.parent) ? t.parent : "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(t);
    }
    const rank = (t) => (t.order === null || t.order === undefined ? 1e12 : t.order);
    const walk = (parent) => (children.get(parent) || [])
      .slice()
      .sort((a, b) => rank(a) - rank(b) || a.created_at - b.created_at)
      .map((t) => {
        const li = el("li", "task");
        li.appendChild(badge(t.status));
        li.appendChild(el("span", "id", t.id));
        if (t.kind === "epic") li.appendChild(el("span", "tag", "epic"));
        if (children.has(t.id) && t.mode === "seq") li.appendChild(el("span", "tag", "seq"));
        li.appendChild(el("span", "title", t.title));
        if (t.holder) li.appendChild(el("span", "holder", "@" + t.holder));
        if (children.has(t.id)) {
          const ul = el("ul");
          ul.replaceChildren(...walk(t.id));
          li.appendChild(ul);
        }
        return li;
      });
    $("plan").replaceChildren(...walk(""));
    setCount("plan-count", tasks.length);
    $("intents").replaceChildren(...board.intents.map((i) => {
      const li = el("li", "intent");
      li.appendChild(el("span", "name", i.agent));
      li.appendChild(el("span", "paths", i.paths.join(" ")));
      if (i.note) li.appendChild(el("span", "note", i.note));
      if (i.overlaps && i.overlaps.length) li.appendChild(el("span", "tag warn", "overlaps"));
      return li;
    }));
  }

  async function loadFeed(gen) {
    const head = (await request("message.list", { after: 0, limit: 1 })).head;
    const result = await request("message.list", { after: Math.max(0, head - 50), limit: 50 });
    if (gen !== generation) return;
    for (const m of result.messages) showMessage(m);
  }

  async function loadState(gen) {
    const result = await request("state.list");
    if (gen !== generation) return;
    hasViews = result.entries.some((e) => e.scope === "_view");
    $("state").tBodies[0].replaceChildren(...result.entries.map((e) => {
      const tr = row([e.scope, e.key, short(e.value), e.version]);
      if (e.expr) tr.title = "view: " + e.expr;
      return tr;
    }));
    setCount("state-count", result.entries.length);
  }

  const PARTS = { agents: loadAgents, claims: loadClaims, plan: loadPlan, feed: loadFeed, state: loadState };

  // one query of a part in flight at a time, at most one per MIN_GAP_MS; events meanwhile mark it dirty
  function schedule(part) {
    if (inflight[part]) {
      dirty[part] = true;
      return;
    }
    const wait = (lastRun[part] || 0) + MIN_GAP_MS - Date.now();
    if (wait > 0) {
      if (!timers[part]) {
        timers[part] = setTimeout(() => {
          timers[part] = null;
          run(part);
        }, wait);
      }
      return;
    }
    run(part);
  }

  async function run(part) {
    if (inflight[part]) {
      dirty[part] = true;
      return;
    }
    inflight[part] = true;
    dirty[part] = false;
    lastRun[part] = Date.now();
    const gen = generation;
    try {
      await PARTS[part](gen);
    } catch (err) {
      if (err && err.code !== "disconnected") notice(part + ": " + (err.message || err));
    } finally {
      inflight[part] = false;
      if (dirty[part]) schedule(part);
    }
  }

  // -- the live feed of events -------------------------------------------------------------------------

  function showMessage(m) {
    if (feedRows.has(m.seq)) {
      const old = feedRows.get(m.seq);
      if (m.claimed_by) old.querySelector(".claimed").textContent = "claimed by " + m.claimed_by;
      return;
    }
    const li = el("li", "message" + (m.priority ? " priority" : ""));
    li.dataset.seq = String(m.seq);
    li.appendChild(el("span", "seq", "#" + m.seq));
    li.appendChild(el("span", "time", clock(m.at)));
    li.appendChild(el("span", "from", m.from));
    li.appendChild(el("span", "to", "→ " + (m.to || []).join(",")));
    if (m.kind && m.kind !== "message") li.appendChild(el("span", "tag", m.kind));
    li.appendChild(el("span", "body", short(m.body)));
    li.appendChild(el("span", "claimed", m.claimed_by ? "claimed by " + m.claimed_by : ""));
    const feed = $("feed");
    // keep seq order even when a reload and the live feed interleave
    let before = null;
    for (const [seq, node] of feedRows) {
      if (seq > m.seq && (before === null || seq < Number(before.dataset.seq))) before = node;
    }
    feed.insertBefore(li, before);
    feedRows.set(m.seq, li);
    while (feedRows.size > FEED_ROWS) {
      const oldest = Math.min(...feedRows.keys());
      feedRows.get(oldest).remove();
      feedRows.delete(oldest);
    }
    setCount("feed-count", feedRows.size);
  }

  function summary(ev) {
    switch (ev.type) {
      case "MessageSent": return "#" + ev.seq + " → " + (ev.to || []).join(",") + ": " + short(ev.body);
      case "MessageClaimed": return "#" + ev.seq + " by " + ev.holder;
      case "ClaimGranted": return ev.work + " " + (ev.paths || []).join(" ");
      case "TaskDeclared": return ev.task + " " + short(ev.title);
      case "TaskUpdated": return ev.task + " " + (ev.status || "");
      case "StateWritten": return ev.scope + "." + ev.key + " = " + short(ev.value) + " (v" + ev.version + ")";
      case "StateDeleted": return ev.scope + "." + ev.key;
      case "PresenceChanged": return ev.status;
      default: return ev.work || ev.task || ev.key || ev.branch || "";
    }
  }

  function actor(ev) {
    return ev.agent || ev.from || ev.holder || ev.by || ev.to || "";
  }

  const TOUCHES = {
    MessageSent: ["agents"],
    MessageClaimed: ["feed", "agents"],
    AgentJoined: ["agents"],
    PresenceChanged: ["agents"],
    SessionOpened: ["agents", "claims"],
    SessionClosed: ["agents", "claims"],
    ClaimGranted: ["claims", "plan"],
    ClaimRenewed: ["claims"],
    ClaimOrphaned: ["claims"],
    ClaimReleased: ["claims", "plan"],
    ClaimLapsed: ["claims", "plan"],
    ClaimHandedOff: ["claims", "plan"],
    IntentDeclared: ["plan"],
    TaskDeclared: ["plan"],
    TaskUpdated: ["plan", "agents"],
    StateWritten: ["state"],
    StateDeleted: ["state"],
    ViewDefined: ["state"],
    BranchMerged: ["state"],
    HubStarted: ["agents", "claims", "plan", "feed", "state"],
  };

  function onEvent(frame) {
    if (frame.room !== room && frame.room !== "") return; // a late frame of the room we left
    if (frame.position <= position) return;
    position = frame.position;
    $("position").textContent = "log position " + position;
    const ev = frame.event || {};
    if (ev.type === "MessageSent") showMessage(ev);
    if (ev.type === "RoomCreated" || ev.type === "InviteIssued") loadRooms();
    const li = el("li", "event");
    li.appendChild(el("span", "pos", position));
    li.appendChild(el("span", "time", clock(ev.at)));
    li.appendChild(el("span", "kind", ev.type));
    li.appendChild(el("span", "who", actor(ev)));
    li.appendChild(el("span", "what", summary(ev)));
    const events = $("events");
    events.insertBefore(li, events.firstChild);
    while (events.childElementCount > EVENT_ROWS) events.lastElementChild.remove();
    const parts = new Set(TOUCHES[ev.type] || []);
    if (hasViews) parts.add("state"); // a view may read anything in the room
    for (const part of parts) schedule(part);
  }

  // -- controls -----------------------------------------------------------------------------------------

  $("room").addEventListener("change", (e) => switchRoom(e.target.value));
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    adminToken = $("token").value || null;
    $("token").value = "";
    loadRooms();
  });

  connect();
})();
