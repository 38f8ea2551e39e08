// The conversations: the server view, rooms and private conversations, as
// records in state.views (kind, name, key, unread count, joined, members,
// topic, the DOM parts view.js made for it), which one is on screen, and the
// bound on private conversations. Kept apart from the drawing (view.js) and
// from what changes them (events.js, commands.js) so that the life of a
// conversation - made, renamed, shown, dropped - is in one place.

import { MAX_PMS, SERVER, key, state } from "./state.js";
import {
  addListItem,
  hideView,
  labelFor,
  makeLog,
  refreshBadge,
  refreshHead,
  relabel,
  removeView,
  renderMembers,
  revealView,
  scrollToEnd,
  ui,
} from "./view.js";

function makeView(kind, name) {
  const log = makeLog();
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
  addListItem(view, () => {
    show(view.key);
    ui.input.focus();
  });
  return view;
}

// A private conversation whose nick changed, or a room now spelt as the
// server spells it.
export function renameView(view, name) {
  const wasCurrent = state.current === view.key;
  state.views.delete(view.key);
  view.name = name;
  view.key = key(name);
  state.views.set(view.key, view);
  relabel(view);
  if (wasCurrent) state.current = view.key;
  refreshBadge(view);
  refreshHead();
}

export function serverView() {
  return state.views.get(SERVER) || makeView("server", "Server");
}

export function roomView(name) {
  const found = state.views.get(key(name));
  if (found && found.kind === "room") return found;
  return makeView("room", name);
}

export function pmView(nick) {
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

export function dropView(view) {
  removeView(view);
  state.views.delete(view.key);
  if (state.serverCurrent === view.key) state.serverCurrent = null;
  if (state.current === view.key) {
    const rooms = [...state.views.values()].filter((v) => v.kind === "room");
    show(rooms.length ? rooms[rooms.length - 1].key : SERVER);
  }
}

// In the order of the lists on screen (the keyboard's order).
export function orderedViews() {
  const order = [];
  for (const list of [ui.serverList, ui.rooms, ui.pms]) {
    for (const item of list.children) {
      const view = [...state.views.values()].find((v) => v.item === item);
      if (view) order.push(view);
    }
  }
  return order;
}

export function show(viewKey) {
  const view = state.views.get(viewKey) || serverView();
  const old = state.views.get(state.current);
  if (old) hideView(old);
  state.current = view.key;
  revealView(view);
  view.unread = 0;
  view.touched = Date.now();
  refreshBadge(view);
  refreshHead();
  refreshMembers();
  scrollToEnd(view);
}

// A click on a member: a private conversation with them (not with oneself).
function openPrivate(nick) {
  if (key(nick) === key(state.me)) return;
  show(pmView(nick).key);
  ui.input.focus();
}

export function refreshMembers() {
  renderMembers(openPrivate);
}

export function membersChanged(view) {
  if (view.key === state.current) refreshMembers();
}
