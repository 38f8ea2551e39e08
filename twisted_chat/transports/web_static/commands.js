// What the person does: the text box (a typed line becomes the protocol
// lines to send and what to show of it at once, since the server does not
// echo our own messages), the remembered lines on ArrowUp/ArrowDown, the
// buttons, and the keys that switch conversations. Lines go out through
// connection.js; conversations and lines are changed as events.js would.

import { send } from "./connection.js";
import { dropView, orderedViews, pmView, show } from "./conversations.js";
import { historyKey } from "./events.js";
import { currentView, key, state } from "./state.js";
import { add, error, makeLine, openMembers, ui } from "./view.js";

const MAX_SENT = 50; // lines remembered for ArrowUp in the text box

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

// The Join and Nick buttons start the command in the box.
function prefill(text) {
  ui.input.value = text;
  ui.input.focus();
  ui.input.setSelectionRange(text.length, text.length);
}

// The listeners of the box, the buttons and the keys (chat.js calls it once).
export function wireCommands() {
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
}
