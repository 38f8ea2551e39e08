// The server's events (one JSON object a frame, docs/web.md): what each one
// changes in the conversations and what it shows. The connection hands each
// frame to receive(); the lines and lists are drawn by view.js, the
// conversations made and dropped by conversations.js.
//
// It also holds what makes a reconnect quiet: the rooms rejoined and the
// nick reclaimed (state.restoring, state.wanted), and the key that keeps a
// replayed history from showing a message that is already on screen.

import { send } from "./connection.js";
import {
  dropView,
  membersChanged,
  pmView,
  renameView,
  roomView,
  serverView,
  show,
} from "./conversations.js";
import { SERVER, currentView, isMe, key, state } from "./state.js";
import {
  add,
  error,
  makeLine,
  notice,
  refreshBadge,
  refreshHead,
  scrollToEnd,
  setStatus,
  trim,
} from "./view.js";

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

function setMe(nick) {
  state.me = nick;
  refreshHead();
  setStatus(`Connected as ${nick}`);
}

// What a replayed message has in common with the live line shown for it
// before a reconnect (our own lines were shown with the page's clock).
export function historyKey(entry) {
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

export function receive(frame) {
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
