// The page's shared state and the few names every module needs: one
// object that the other modules read and change, so that moving code out of
// the old single script changed no behaviour (docs/web.md: the events).
//
// It owns nothing in the DOM and imports nothing, so every other module can
// import it without a cycle. The bounds that only one module uses live in
// that module.

export const MAX_LINES = 500; // per conversation; the oldest go first
export const MAX_PMS = 50; // private conversations kept; the quietest go first
// The view of notices that belong to no room (a space: no nick or room has one).
export const SERVER = " server";

// Names compare as the server compares them (near enough: NFKC, then
// case folding), so "Alice" and "ALICE" are one conversation.
export const key = (name) => String(name).normalize("NFKC").toLowerCase();

export const state = {
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

export const isMe = (nick) => key(nick) === key(state.me);

// The conversation on screen. The server view is made before anything else
// runs (chat.js) and is never dropped, so it is always there to fall back on.
export function currentView() {
  return state.views.get(state.current) || state.views.get(SERVER);
}
