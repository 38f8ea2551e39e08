// The DOM: the page's elements, the lines of a conversation's log, its
// entry in the lists, the head (title, topic, the box's label), the member
// list and the status line. Which conversations exist and which one is on
// screen is conversations.js's business; this module draws what it is given.
//
// Every text that comes from the server or from a person is put into the
// page with textContent or createTextNode, never as markup: a nick, a room
// name, a topic or a message that looks like HTML shows as its characters.
// Nothing here builds an HTML string.

import { MAX_LINES, currentView, key, state } from "./state.js";

const MAX_MEMBERS_SHOWN = 300; // a big room's list ends with "and N more"

const $ = (id) => document.getElementById(id);
export const ui = {
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

// -- a conversation's log and its entry in the lists ---------------------------

export function makeLog() {
  const log = document.createElement("ol");
  log.className = "log";
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-relevant", "additions");
  log.tabIndex = 0;
  log.hidden = true;
  return log;
}

export function labelFor(view) {
  if (view.kind === "room") return `Messages in ${view.name}`;
  if (view.kind === "pm") return `Private conversation with ${view.name}`;
  return "Server messages";
}

// Keep each list in name order, so the keyboard order is predictable.
function place(list, item, sortKey) {
  const after = [...list.children].find((other) => other.dataset.sort > sortKey);
  item.dataset.sort = sortKey;
  list.insertBefore(item, after || null);
}

// onChoose: what a click on the entry does (conversations.js shows it).
export function addListItem(view, onChoose) {
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
  button.addEventListener("click", onChoose);
  item.append(button);
  Object.assign(view, { item, button, badge, label });
  const list = { room: ui.rooms, pm: ui.pms }[view.kind] || ui.serverList;
  place(list, item, view.key);
}

// The entry and log of a conversation whose name (and so key) changed.
export function relabel(view) {
  view.label.textContent = view.name;
  view.log.setAttribute("aria-label", labelFor(view));
  const list = view.item.parentNode;
  view.item.remove();
  place(list, view.item, view.key);
}

export function removeView(view) {
  view.log.remove();
  if (view.item) view.item.remove();
}

export function hideView(view) {
  view.log.hidden = true;
  if (view.button) view.button.removeAttribute("aria-current");
}

export function revealView(view) {
  view.log.hidden = false;
  if (view.button) view.button.setAttribute("aria-current", "true");
}

// -- the head, the title, the badges -------------------------------------------

export function refreshHead() {
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

export function refreshBadge(view) {
  if (!view.badge) return;
  view.badge.textContent = view.unread ? String(view.unread) : "";
  view.badge.hidden = !view.unread;
  refreshTitle();
  const unread = view.unread ? `, ${view.unread} unread` : "";
  const left = view.kind === "room" && !view.joined ? ", not joined" : "";
  view.button.setAttribute("aria-label", `${view.name}${unread}${left}`);
  view.button.classList.toggle("left", view.kind === "room" && !view.joined);
}

export function setStatus(text, kind = "ok") {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
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
export function makeLine(kind, { nick = null, text = "", time = null, earlier = false } = {}) {
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

export function scrollToEnd(view) {
  view.log.scrollTop = view.log.scrollHeight;
}

export function trim(view) {
  while (view.log.childElementCount > MAX_LINES) {
    const first = view.log.firstElementChild;
    if (first === view.joinMark) view.joinMark = null;
    first.remove();
  }
}

// quiet: a line that counts as nothing new (our own, replies we caused).
export function add(view, line, { quiet = false } = {}) {
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

export function notice(text, view = currentView()) {
  return add(view, makeLine("notice", { text }), { quiet: true });
}

export function error(code, text, view = currentView()) {
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

// onMember(nick): what a click on a member does (a private conversation).
export function renderMembers(onMember) {
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
    name.addEventListener("click", () => onMember(member.nick));
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

// On a narrow screen the member list is a panel over the messages.
export function openMembers(open) {
  ui.membersPanel.classList.toggle("open", open);
  ui.membersToggle.setAttribute("aria-expanded", String(open));
}
