// twisted-chat's browser client: one WebSocket to /ws, lines of the chat
// protocol out, one JSON event per frame in (docs/web.md lists them).
//
// This is the entry point (index.html loads it as a module); it only starts
// the page. The work is in modules with one job each, each importing only
// the ones below it (no cycles, no build step, all served from 'self'):
//   state.js          the shared state, name keys, the bounds of a log
//   view.js           the DOM, every text put in as text, never as markup
//   conversations.js  the server view, rooms, private conversations
//   connection.js     the WebSocket, sending, reconnecting with back-off
//   events.js         what each of the server's events changes and shows
//   commands.js       the text box, the buttons, the keys

import { wireCommands } from "./commands.js";
import { start } from "./connection.js";
import { serverView, show } from "./conversations.js";
import { receive } from "./events.js";
import { SERVER } from "./state.js";

wireCommands();
serverView();
show(SERVER);
start(receive);
