// The connection: the one WebSocket to /ws, sending a line, and coming back
// after it goes (back-off from 1 s doubling to 30 s, a countdown, "Retry
// now", at once when the browser is back online). A frame that arrives is
// handed to the receiver given to start() (events.js's receive), so this
// module knows nothing of what the events mean.

import { refreshMembers, serverView } from "./conversations.js";
import { state } from "./state.js";
import { error, notice, refreshBadge, refreshHead, setStatus, ui } from "./view.js";

const BACKOFF_START = 1; // seconds before the first reconnect
const BACKOFF_MAX = 30;

let receive = () => {};

export function send(line) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(line);
  return true;
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
  refreshMembers();
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

// onFrame(frame): each message of the socket (every socket after a reconnect).
export function start(onFrame) {
  receive = onFrame;
  ui.retry.addEventListener("click", () => {
    if (!state.socket) connect();
    ui.input.focus();
  });

  // The network is back (a phone out of a tunnel): no need to wait.
  window.addEventListener("online", () => {
    if (!state.socket && !state.quitting) connect();
  });

  connect();
}
