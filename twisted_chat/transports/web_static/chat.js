// twisted-chat's browser client: one WebSocket to /ws, lines of the chat
// protocol out, one JSON event per frame in (docs/web.md lists them).
//
// Every text that comes from the server or from a person is put into the
// page with textContent or createTextNode, never as markup: a nick, a room
// name, a topic or a message that looks like HTML shows as its characters.
// Nothing here builds an HTML string.
"use strict";

(() => {
  const MAX_LINES = 500; // per conversation; the oldest go first
  const MAX_PMS = 50; // private conversations kept; the quietest go first
  const MAX_SENT = 50; // lines remembered for ArrowUp in the text box
  const MAX_MEMBERS_SHOWN = 300; // a big room's list ends with "and N more"
  const BACKOFF_START = 1; // seconds before the first reconnect
  const BACKOFF_MAX = 30;
  // The view of notices that belong to no room (a space: no nick or room has one).
  const SERVER = " server";
  // The server's replies that say in words what its events say in fields
  // (join, topic, part): the page shows the events, not these twice.
  // "#x is now your current room." answers the /join the page sends to
  // make the server's current room the one on screen (ensureServerCurrent).
  const SHOWN_ELSEWHERE = [
    /^You joined #\S+; /,
    /^Topic of #\S+: /,
    /^You left #\S+; /,
    /^#\S+ is now your current room\.$/,
  ];

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    retry: $("retry"),
    layout: $("layout"),
    serverList: $("server-list"),
    rooms: $("rooms"),
    pms: $("pms"),
    logs: $("logs"),
    title: $("view-title"),
    topic: $("topic"),
    members: $("members"),
    memberCount: $("member-count"),
    membersPanel: $("members-panel"),
    membersToggle: $("members-toggle"),
    form: $("composer"),
    input: $("input"),
    inputLabel: $("input-label"),
    join: $("join-button"),
    nick: $("nick-button"),
    leave: $("leave-button"),
  };

  // Names compare as the server compares them (near enough: NFKC, then
  // case folding), so "Alice" and "ALICE" are one conversation.
  const key = (name) => String(name).normalize("NFKC").toLowerCase();

  const state = {
    socket: null,
    me: "",
    wanted: "", // the nick to reclaim after a reconnect
    serverName: "",
    maxLine: 1024,
    connected: false,
    everConnected: false,
    quitting: false,
    attempt: 0,
    retryTimer: null,
    countdown: null,
    restoring: null, // {rooms: Set of keys, view} while rejoining after a reconnect
    serverCurrent: null, // the room the server sends plain lines and /me to
    views: new Map(), // key -> view
    current: SERVER,
    sent: [],
    sentAt: -1,
  };

  // -- views: the server view, rooms, private conversations -----------------

  function makeView(kind, name) {
    const log = document.createElement("ol");
    log.className = "log";
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-relevant", "additions");
    log.tabIndex = 0;
    log.hidden = true;
    const view = {
      kind, // "server" | "room" | "pm"
      name,
      key: kind === "server" ? SERVER : key(name),
      log,
      unread: 0,
      joined: kind === "room",
      members: new Map(), // key -> {nick, op, voice}
      topic: "",
      joinMark: null, // the line of our own join, history goes before it
      item: null,
      button: null,
      badge: null,
      label: null,
      touched: Date.now(),
    };
    log.setAttribute("aria-label", labelFor(view));
    ui.logs.append(log);
    state.views.set(view.key, view);
    addListItem(view);
    return view;
  }

  function labelFor(view) {
    if (view.kind === "room") return `Messages in ${view.name}`;
    if (view.kind === "pm") return `Private conversation with ${view.name}`;
    return "Server messages";
  }

  function addListItem(view) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "conversation";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = view.name;
    const badge = document.createElement("span");
    badge.className = "unread";
    badge.hidden = true;
    button.append(label, badge);
    button.addEventListener("click", () => {
      show(view.key);
      ui.input.focus();
    });
    item.append(button);
    Object.assign(view, { item, button, badge, label });
    const list = { room: ui.rooms, pm: ui.pms }[view.kind] || ui.serverList;
    // Keep each list in name order, so the keyboard order is predictable.
    const after = [...list.children].find(
      (other) => other.dataset.sort > view.key,
    );
    item.dataset.sort = view.key;
    list.insertBefore(item, after || null);
  }

  // A private conversation whose nick changed, or a room now spelt as the
  // server spells it.
  function renameView(view, name) {
    const wasCurrent = state.current === view.key;
    state.views.delete(view.key);
    view.name = name;
    view.key = key(name);
    state.views.set(view.key, view);
    view.label.textContent = name;
    view.log.setAttribute("aria-label", labelFor(view));
    const list = view.item.parentNode;
    view.item.remove();
    const after = [...list.children].find((other) => other.dataset.sort > view.key);
    view.item.dataset.sort = view.key;
    list.insertBefore(view.item, after || null);
    if (wasCurrent) state.current = view.key;
    refreshBadge(view);
    refreshHead();
  }

  function serverView() {
    return state.views.get(SERVER) || makeView("server", "Server");
  }

  function roomView(name) {
    const found = state.views.get(key(name));
    if (found && found.kind === "room") return found;
    return makeView("room", name);
  }

  function pmView(nick) {
    const found = state.views.get(key(nick));
    if (found && found.kind === "pm") return found;
    const pms = [...state.views.values()].filter((v) => v.kind === "pm");
    if (pms.length >= MAX_PMS) {
      pms.sort((a, b) => a.touched - b.touched);
      const oldest = pms.find((v) => v.key !== state.current);
      if (oldest) dropView(oldest);
    }
    return makeView("pm", nick);
  }

  function dropView(view) {
    view.log.remove();
    if (view.item) view.item.remove();
    state.views.delete(view.key);
    if (state.serverCurrent === view.key) state.serverCurrent = null;
    if (state.current === view.key) {
      const rooms = [...state.views.values()].filter((v) => v.kind === "room");
      show(rooms.length ? rooms[rooms.length - 1].key : SERVER);
    }
  }

  function currentView() {
    return state.views.get(state.current) || serverView();
  }

  function orderedViews() {
    const order = [];
    for (const list of [ui.serverList, ui.rooms, ui.pms]) {
      for (const item of list.children) {
        const view = [...state.views.values()].find((v) => v.item === item);
        if (view) order.push(view);
      }
    }
    return order;
  }

  function show(viewKey) {
    const view = state.views.get(viewKey) || serverView();
    const old = state.views.get(state.current);
    if (old) {
      old.log.hidden = true;
      if (old.button) old.button.removeAttribute("aria-current");
    }
    state.current = view.key;
    view.log.hidden = false;
    view.unread = 0;
    view.touched = Date.now();
    if (view.button) view.button.setAttribute("aria-current", "true");
    refreshBadge(view);
    refreshHead();
    renderMembers();
    scrollToEnd(view);
  }

  function refreshHead() {
    const view = currentView();
    let title = view.name;
    if (view.kind === "room" && !view.joined) title += " (not joined)";
    ui.title.textContent = title;
    ui.topic.textContent = view.kind === "room" ? view.topic : "";
    ui.topic.hidden = !(view.kind === "room" && view.topic);
    if (view.kind === "room") {
      ui.inputLabel.textContent = `Message to ${view.name}`;
      ui.leave.textContent = "Leave room";
      ui.leave.disabled = false;
    } else if (view.kind === "pm") {
      ui.inputLabel.textContent = `Private message to ${view.name}`;
      ui.leave.textContent = "Close conversation";
      ui.leave.disabled = false;
    } else {
      ui.inputLabel.textContent = "Command (for example /join #lobby)";
      ui.leave.textContent = "Leave room";
      ui.leave.disabled = true;
    }
    refreshTitle();
  }

  function refreshTitle() {
    const view = currentView();
    let unread = 0;
    for (const other of state.views.values()) unread += other.unread;
    const count = unread ? `(${unread}) ` : "";
    document.title = state.me
      ? `${count}${view.name} – ${state.me} – twisted-chat`
      : "twisted-chat";
  }

  function refreshBadge(view) {
    if (!view.badge) return;
    view.badge.textContent = view.unread ? String(view.unread) : "";
    view.badge.hidden = !view.unread;
    refreshTitle();
    const unread = view.unread ? `, ${view.unread} unread` : "";
    const left = view.kind === "room" && !view.joined ? ", not joined" : "";
    view.button.setAttribute("aria-label", `${view.name}${unread}${left}`);
    view.button.classList.toggle("left", view.kind === "room" && !view.joined);
  }

  // -- lines in a log ---------------------------------------------------------

  function clock(date) {
    const two = (n) => String(n).padStart(2, "0");
    return `${two(date.getHours())}:${two(date.getMinutes())}`;
  }

  function timeElement(iso) {
    const parsed = iso ? new Date(iso) : new Date();
    const date = Number.isNaN(parsed.getTime()) ? new Date() : parsed;
    const element = document.createElement("time");
    element.dateTime = date.toISOString();
    element.title = date.toLocaleString();
    element.textContent = clock(date);
    return element;
  }

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  // kind (a class of the line): message | action | notice | error | event |
  // history-mark; "earlier" marks a replayed one, "mine" one of ours.
  function makeLine(kind, { nick = null, text = "", time = null, earlier = false } = {}) {
    const line = document.createElement("li");
    line.className = `line ${kind}`;
    if (earlier) line.classList.add("earlier");
    if (kind === "history-mark") {
      line.append(span("text", text));
      return line;
    }
    line.append(timeElement(time), document.createTextNode(" "));
    if (kind === "action") {
      line.append(span("star", "* "), span("nick", nick), document.createTextNode(" "));
    } else if (nick !== null) {
      line.append(span("nick", nick), document.createTextNode(" "));
    } else if (kind === "error") {
      line.append(span("star", "! "));
    } else {
      line.append(span("star", "* "));
    }
    line.append(span("text", text));
    if (nick !== null && key(nick) === key(state.me)) line.classList.add("mine");
    return line;
  }

  function atEnd(view) {
    const log = view.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function scrollToEnd(view) {
    view.log.scrollTop = view.log.scrollHeight;
  }

  function trim(view) {
    while (view.log.childElementCount > MAX_LINES) {
      const first = view.log.firstElementChild;
      if (first === view.joinMark) view.joinMark = null;
      first.remove();
    }
  }

  // quiet: a line that counts as nothing new (our own, replies we caused).
  function add(view, line, { quiet = false } = {}) {
    const stick = view.log.hidden || atEnd(view);
    view.log.append(line);
    trim(view);
    if (!view.log.hidden) {
      if (stick) scrollToEnd(view);
    } else if (!quiet) {
      view.unread += 1;
      refreshBadge(view);
    }
    return line;
  }

  function notice(text, view = currentView()) {
    return add(view, makeLine("notice", { text }), { quiet: true });
  }

  function error(code, text, view = currentView()) {
    const line = makeLine("error", { text: code ? `${code}: ${text}` : text });
    line.setAttribute("role", "alert");
    return add(view, line, { quiet: true });
  }

  // -- members ----------------------------------------------------------------

  function prefix(member) {
    return member.op ? "@" : member.voice ? "+" : "";
  }

  function rank(member) {
    return member.op ? 0 : member.voice ? 1 : 2;
  }

  function renderMembers() {
    const view = currentView();
    ui.members.replaceChildren();
    const room = view.kind === "room";
    ui.membersToggle.hidden = !room;
    ui.membersPanel.hidden = !room;
    ui.layout.classList.toggle("no-members", !room);
    if (!room) {
      ui.memberCount.textContent = "";
      openMembers(false);
      return;
    }
    const members = [...view.members.values()].sort(
      (a, b) => rank(a) - rank(b) || key(a.nick).localeCompare(key(b.nick)),
    );
    ui.memberCount.textContent = `(${members.length})`;
    ui.membersToggle.textContent = `Members (${members.length})`;
    for (const member of members.slice(0, MAX_MEMBERS_SHOWN)) {
      const item = document.createElement("li");
      item.className = member.op ? "op" : member.voice ? "voice" : "";
      const mark = span("prefix", prefix(member));
      if (member.op) mark.title = "operator";
      else if (member.voice) mark.title = "voice";
      const name = document.createElement("button");
      name.type = "button";
      name.className = "member";
      name.textContent = member.nick;
      const role = member.op ? ", operator" : member.voice ? ", voice" : "";
      name.setAttribute("aria-label", `${member.nick}${role}: private message`);
      name.addEventListener("click", () => {
        if (key(member.nick) === key(state.me)) return;
        show(pmView(member.nick).key);
        ui.input.focus();
      });
      item.append(mark, name);
      ui.members.append(item);
    }
    if (members.length > MAX_MEMBERS_SHOWN) {
      const more = document.createElement("li");
      more.className = "more";
      more.textContent = `and ${members.length - MAX_MEMBERS_SHOWN} more (/who lists them)`;
      ui.members.append(more);
    }
  }

  function membersChanged(view) {
    if (view.key === state.current) renderMembers();
  }

  // -- the server's events ----------------------------------------------------

  const isMe = (nick) => key(nick) === key(state.me);

  function setMe(nick) {
    state.me = nick;
    refreshHead();
    setStatus(`Connected as ${nick}`);
  }

  // What a replayed message has in common with the live line shown for it
  // before a reconnect (our own lines were shown with the page's clock).
  function historyKey(entry) {
    return `${key(entry.nick)}\u0000${entry.text}`;
  }

  const handlers = {
    hello(event) {
      state.connected = true;
      state.attempt = 0;
      state.serverName = String(event.server || "");
      state.maxLine = Number(event.max_line) || 1024;
      state.serverCurrent = null;
      const rooms = [...state.views.values()]
        .filter((v) => v.kind === "room" && v.wasJoined)
        .map((v) => v.name);
      const wanted = state.wanted;
      setMe(String(event.nick || ""));
      if (state.everConnected) {
        notice(`Reconnected to ${state.serverName || "the server"}.`);
        state.restoring = { rooms: new Set(rooms.map(key)), view: state.current };
        if (wanted && !isMe(wanted)) send(`/nick ${wanted}`);
        else state.wanted = state.me;
        for (const room of rooms) send(`/join ${room}`);
        if (!rooms.length) state.restoring = null;
      } else {
        state.wanted = state.me;
      }
      state.everConnected = true;
    },

    you(event) {
      setMe(String(event.nick));
      if (!state.restoring || isMe(state.wanted)) state.wanted = state.me;
    },

    message(event) {
      const view = roomView(event.room);
      add(view, makeLine("message", event));
    },

    action(event) {
      add(roomView(event.room), makeLine("action", event));
    },

    private(event) {
      add(pmView(event.nick), makeLine("message", event));
    },

    notice(event) {
      const text = String(event.text);
      if (!event.room && SHOWN_ELSEWHERE.some((shape) => shape.test(text))) return;
      const room = event.room ? state.views.get(key(event.room)) : null;
      const view = room || currentView();
      add(view, makeLine("notice", { text }), { quiet: !room });
    },

    error(event) {
      const code = String(event.code || "");
      if (state.restoring && /^(nick-in-use|invalid-name|nick-registered)$/.test(code)) {
        state.wanted = state.me; // keep the nick we were given
      }
      error(code, String(event.text));
    },

    join(event) {
      const view = roomView(event.room);
      if (isMe(event.nick)) {
        view.joined = true;
        view.wasJoined = true;
        view.members = new Map();
        if (view.name !== event.room) renameView(view, event.room);
        view.joinMark = add(
          view,
          makeLine("event", { text: `You joined ${event.room}`, time: event.time }),
          { quiet: true },
        );
        state.serverCurrent = view.key;
        const restoring = state.restoring;
        if (restoring) {
          restoring.rooms.delete(view.key);
          if (!restoring.rooms.size) finishRestore();
        }
        if (!restoring || state.current === SERVER) show(view.key);
        refreshBadge(view);
        refreshHead();
      } else {
        add(view, makeLine("event", { text: `${event.nick} joined ${event.room}`, time: event.time }), {
          quiet: true,
        });
      }
      view.members.set(key(event.nick), { nick: event.nick, op: false, voice: false });
      membersChanged(view);
    },

    part(event) {
      const view = state.views.get(key(event.room));
      if (!view) return;
      const reason = event.reason ? ` (${event.reason})` : "";
      if (isMe(event.nick)) {
        view.wasJoined = false;
        dropView(view);
        notice(`You left ${event.room}${reason}`);
        return;
      }
      view.members.delete(key(event.nick));
      add(view, makeLine("event", { text: `${event.nick} left ${event.room}${reason}`, time: event.time }), {
        quiet: true,
      });
      membersChanged(view);
    },

    kick(event) {
      const view = roomView(event.room);
      const reason = event.reason ? ` (${event.reason})` : "";
      if (isMe(event.nick)) {
        view.joined = false;
        view.wasJoined = false;
        view.members = new Map();
        if (state.serverCurrent === view.key) state.serverCurrent = null;
        const text = `You were removed from ${event.room} by ${event.by}${reason}`;
        add(view, makeLine("error", { text, time: event.time }));
        if (view.key !== state.current) error("", text);
        refreshBadge(view);
        refreshHead();
      } else {
        view.members.delete(key(event.nick));
        add(view, makeLine("event", {
          text: `${event.nick} was removed from ${event.room} by ${event.by}${reason}`,
          time: event.time,
        }), { quiet: true });
      }
      membersChanged(view);
    },

    quit(event) {
      const who = key(event.nick);
      const reason = event.reason ? ` (${event.reason})` : "";
      for (const view of state.views.values()) {
        const here = view.kind === "room" ? view.members.delete(who) : view.key === who;
        if (here) {
          add(view, makeLine("event", { text: `${event.nick} quit${reason}`, time: event.time }), {
            quiet: true,
          });
          membersChanged(view);
        }
      }
    },

    nick(event) {
      const old = key(event.old);
      const text = `${event.old} is now known as ${event.new}`;
      const mine = isMe(event.old);
      for (const view of [...state.views.values()]) {
        if (view.kind === "room" && view.members.has(old)) {
          const member = view.members.get(old);
          view.members.delete(old);
          view.members.set(key(event.new), { ...member, nick: event.new });
          add(view, makeLine("event", { text, time: event.time }), { quiet: true });
          membersChanged(view);
        } else if (view.kind === "pm" && view.key === old && !state.views.has(key(event.new))) {
          renameView(view, event.new);
          add(view, makeLine("event", { text, time: event.time }), { quiet: true });
        }
      }
      if (mine) setMe(event.new);
    },

    topic(event) {
      const view = roomView(event.room);
      view.topic = String(event.text || "");
      const text =
        event.nick === null || event.nick === undefined
          ? `Topic: ${view.topic}`
          : `${event.nick} set the topic: ${view.topic}`;
      add(view, makeLine("event", { text, time: event.time }), { quiet: true });
      if (view.key === state.current) refreshHead();
    },

    members(event) {
      const view = roomView(event.room);
      view.members = new Map();
      for (const member of event.members || []) {
        view.members.set(key(member.nick), {
          nick: String(member.nick),
          op: Boolean(member.op),
          voice: Boolean(member.voice),
        });
      }
      membersChanged(view);
    },

    history(event) {
      const view = roomView(event.room);
      const seen = new Set(
        [...view.log.querySelectorAll("li.message, li.action")].map((line) => line.historyKey),
      );
      const fresh = (event.messages || []).filter((entry) => !seen.has(historyKey(entry)));
      if (!fresh.length) return;
      const before = view.joinMark && view.joinMark.parentNode ? view.joinMark : null;
      const put = (line) => view.log.insertBefore(line, before);
      put(makeLine("history-mark", { text: `Earlier messages in ${event.room}`, earlier: true }));
      for (const entry of fresh) {
        const line = makeLine(entry.type === "action" ? "action" : "message", {
          ...entry,
          earlier: true,
        });
        line.historyKey = historyKey(entry);
        put(line);
      }
      trim(view);
      if (!view.log.hidden) scrollToEnd(view);
    },
  };

  function finishRestore() {
    const restoring = state.restoring;
    state.restoring = null;
    if (restoring && state.views.has(restoring.view)) show(restoring.view);
  }

  function receive(frame) {
    let event;
    try {
      event = JSON.parse(frame.data);
    } catch {
      error("", "The server sent something that is not JSON.", serverView());
      return;
    }
    const handler = event && Object.prototype.hasOwnProperty.call(handlers, event.type)
      ? handlers[event.type]
      : null;
    if (handler) {
      // Live messages get a key so a replayed history after a reconnect
      // does not show them twice.
      handler(event);
      if (event.type === "message" || event.type === "action") {
        const view = state.views.get(key(event.room));
        const last = view && view.log.lastElementChild;
        if (last) last.historyKey = historyKey(event);
      }
    } else if (event && typeof event.text === "string") {
      notice(event.text);
    }
  }

  // -- what the user types ----------------------------------------------------

  function send(line) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
    state.socket.send(line);
    return true;
  }

  function byteLength(text) {
    return new TextEncoder().encode(text).length;
  }

  // The server sends plain lines and /me to its "current room"; the page's
  // current room is the one on screen. Make them the same first.
  function ensureServerCurrent(view) {
    if (view.kind !== "room" || state.serverCurrent === view.key) return;
    if (send(`/join ${view.name}`)) {
      state.serverCurrent = view.key;
    }
  }

  function ownLine(view, kind, text) {
    const line = makeLine(kind, { nick: state.me, text });
    line.classList.add("mine");
    line.historyKey = historyKey({ nick: state.me, text });
    add(view, line, { quiet: true });
  }

  function submit(raw) {
    const text = raw.replace(/[\r\n]+/g, " ");
    if (!text.trim()) return true;
    if (!state.connected) {
      error("", "Not connected; the line was not sent.");
      return false;
    }
    const view = currentView();
    const plan = plan_(view, text);
    if (plan.error) {
      error("", plan.error);
      return false;
    }
    for (const line of plan.lines) {
      if (byteLength(line) > state.maxLine) {
        error("line-too-long", `At most ${state.maxLine} bytes a line; nothing was sent.`);
        return false;
      }
    }
    if (plan.before) plan.before();
    for (const line of plan.lines) send(line);
    if (plan.echo) plan.echo();
    return true;
  }

  // What a typed line becomes: the lines to send and what to show of it.
  function plan_(view, text) {
    if (!text.startsWith("/") || text.startsWith("//")) {
      const body = text.startsWith("//") ? text.slice(1) : text;
      if (view.kind === "room") {
        return {
          lines: [`/msg ${view.name} ${body}`],
          echo: () => ownLine(view, "message", body),
        };
      }
      if (view.kind === "pm") {
        return {
          lines: [`/msg ${view.name} ${body}`],
          echo: () => ownLine(view, "message", body),
        };
      }
      return { error: "Join a room first: /join #lobby (or use the Join button)." };
    }
    const space = text.indexOf(" ");
    const command = (space < 0 ? text.slice(1) : text.slice(1, space)).toLowerCase();
    const rest = space < 0 ? "" : text.slice(space + 1).trim();
    switch (command) {
      case "me":
        if (view.kind !== "room") return { error: "/me works in a room." };
        return {
          before: () => ensureServerCurrent(view),
          lines: [text],
          echo: () => rest && ownLine(view, "action", rest),
        };
      case "msg": {
        const match = /^(\S+)\s+(.+)$/.exec(rest);
        if (!match) return { lines: [text] };
        const [, target, body] = match;
        if (target.startsWith("#")) {
          const room = state.views.get(key(target));
          return {
            lines: [text],
            echo: () => room && room.kind === "room" && ownLine(room, "message", body),
          };
        }
        return {
          lines: [text],
          echo: () => {
            const conversation = pmView(target);
            ownLine(conversation, "message", body);
            if (conversation.key !== view.key) {
              add(view, makeLine("notice", { text: `→ ${target}: ${body}` }), { quiet: true });
            }
          },
        };
      }
      case "join": {
        const room = state.views.get(key(rest.split(" ")[0].replace(/^#?/, "#")));
        if (room && room.kind === "room" && room.joined) {
          // Already in it: the server only makes it current; so does the page.
          return {
            before: () => {
              state.serverCurrent = room.key;
              show(room.key);
            },
            lines: [text],
          };
        }
        return { lines: [text] };
      }
      case "part":
      case "leave":
        if (view.kind === "room" && !rest.startsWith("#")) {
          return { lines: [`/part ${view.name}${rest ? ` ${rest}` : ""}`] };
        }
        return { lines: [text] };
      case "topic":
      case "who":
      case "history":
        if (view.kind === "room" && !(command === "who" && rest)) {
          return { before: () => ensureServerCurrent(view), lines: [text] };
        }
        return { lines: [text] };
      case "quit":
        return { before: () => { state.quitting = true; }, lines: [text] };
      case "close":
        if (view.kind === "pm") return { lines: [], echo: () => dropView(view) };
        return { lines: [text] };
      default:
        return { lines: [text] };
    }
  }

  function remember(text) {
    if (state.sent[state.sent.length - 1] !== text) state.sent.push(text);
    if (state.sent.length > MAX_SENT) state.sent.shift();
    state.sentAt = -1;
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.input.value;
    if (submit(text)) {
      if (text.trim()) remember(text);
      ui.input.value = "";
    }
    ui.input.focus();
  });

  ui.input.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "ArrowUp" && state.sent.length) {
      if (state.sentAt < 0) state.sentAt = state.sent.length;
      state.sentAt = Math.max(0, state.sentAt - 1);
      ui.input.value = state.sent[state.sentAt];
      event.preventDefault();
    } else if (event.key === "ArrowDown" && state.sentAt >= 0) {
      state.sentAt += 1;
      ui.input.value = state.sentAt < state.sent.length ? state.sent[state.sentAt] : "";
      if (state.sentAt >= state.sent.length) state.sentAt = -1;
      event.preventDefault();
    }
  });

  function prefill(text) {
    ui.input.value = text;
    ui.input.focus();
    ui.input.setSelectionRange(text.length, text.length);
  }

  ui.join.addEventListener("click", () => prefill("/join #"));
  ui.nick.addEventListener("click", () => prefill("/nick "));
  ui.leave.addEventListener("click", () => {
    const view = currentView();
    if (view.kind === "room") {
      if (view.joined && state.connected) send(`/part ${view.name}`);
      else dropView(view);
    } else if (view.kind === "pm") {
      dropView(view);
    }
    ui.input.focus();
  });

  // On a narrow screen the member list is a panel over the messages.
  function openMembers(open) {
    ui.membersPanel.classList.toggle("open", open);
    ui.membersToggle.setAttribute("aria-expanded", String(open));
  }

  ui.membersToggle.addEventListener("click", () => {
    openMembers(!ui.membersPanel.classList.contains("open"));
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.membersPanel.classList.contains("open")) {
      openMembers(false);
      ui.membersToggle.focus();
    }
  });

  // Alt+ArrowUp / Alt+ArrowDown: the previous or next conversation;
  // Alt+1 … Alt+9: the n-th (the server view is Alt+1).
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const views = orderedViews();
    const at = views.findIndex((v) => v.key === state.current);
    let target = null;
    if (event.key === "ArrowDown") target = views[(at + 1) % views.length];
    else if (event.key === "ArrowUp") target = views[(at - 1 + views.length) % views.length];
    else if (/^[1-9]$/.test(event.key)) target = views[Number(event.key) - 1] || null;
    if (target) {
      event.preventDefault();
      const onList = document.activeElement && document.activeElement.classList.contains("conversation");
      show(target.key);
      if (onList && target.button) target.button.focus();
    }
  });

  // -- the connection, and coming back after it goes ---------------------------

  function setStatus(text, kind = "ok") {
    ui.status.textContent = text;
    ui.status.dataset.kind = kind;
  }

  function socketUrl() {
    const url = new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    state.retryTimer = null;
    state.countdown = null;
    ui.retry.hidden = true;
    state.quitting = false;
    setStatus(state.everConnected ? "Reconnecting…" : "Connecting…", "wait");
    let socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (problem) {
      error("", `Cannot connect: ${problem.message}`, serverView());
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.addEventListener("message", (frame) => {
      if (state.socket === socket) receive(frame);
    });
    socket.addEventListener("close", () => {
      if (state.socket === socket) lost();
    });
  }

  function lost() {
    const was = state.connected;
    state.socket = null;
    state.connected = false;
    state.restoring = null;
    state.serverCurrent = null;
    for (const view of state.views.values()) {
      if (view.kind === "room" && view.joined) {
        view.joined = false;
        view.members = new Map();
        refreshBadge(view);
      }
    }
    renderMembers();
    refreshHead();
    if (was) notice("Disconnected from the server.");
    if (state.quitting) {
      setStatus("Disconnected", "error");
      ui.retry.textContent = "Connect again";
      ui.retry.hidden = false;
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const delay = Math.min(BACKOFF_MAX, BACKOFF_START * 2 ** state.attempt);
    state.attempt += 1;
    let left = delay;
    const tell = () =>
      setStatus(`Disconnected: reconnecting in ${left} s`, "error");
    tell();
    ui.retry.textContent = "Retry now";
    ui.retry.hidden = false;
    state.countdown = setInterval(() => {
      left = Math.max(0, left - 1);
      tell();
    }, 1000);
    state.retryTimer = setTimeout(connect, delay * 1000);
  }

  ui.retry.addEventListener("click", () => {
    if (!state.socket) connect();
    ui.input.focus();
  });

  // The network is back (a phone out of a tunnel): no need to wait.
  window.addEventListener("online", () => {
    if (!state.socket && !state.quitting) connect();
  });

  serverView();
  show(SERVER);
  connect();
})();
