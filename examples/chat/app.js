// Roost chat: one channel per room (chat.<room>), a lobby view on chat.*, recent history on
// join, presence counts, automatic reconnect with resume. Served by
//   roost serve --static examples/chat --channel-namespaces "chat.:history=100,history_ttl_ms=3600000,join_leave=true"
import { connect } from "/roost.js";

const ROOMS = ["general", "random", "dev"];
const params = new URLSearchParams(location.search);
const room = ROOMS.includes(params.get("room")) ? params.get("room") : "general";
const name = params.get("name") || `guest-${Math.floor(Math.random() * 1000)}`;
const reconnectMs = Number(params.get("reconnectMs") || 250);
const $ = (id) => document.getElementById(id);

const client = connect(location.origin, { token: params.get("token") || undefined, minDelayMs: reconnectMs });
window.chat = { client, room, name, received: [] };  // for tests and the curious

$("me").textContent = name;
$("room-title").textContent = `# ${room}`;
for (const r of ROOMS) {
  const li = document.createElement("li");
  li.innerHTML = `<a href="?room=${r}&name=${encodeURIComponent(name)}" class="${r === room ? "current" : ""}">` +
    `<span># ${r}</span><span class="count" id="count-${r}"></span></a>`;
  $("rooms").append(li);
}

function line(list, html, cls) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  li.innerHTML = html;
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

client.subscribe(`chat.${room}`, (msg, meta) => {
  window.chat.received.push({ ...msg, offset: meta.offset });
  line($("messages"), `<span class="who">${esc(msg.name)}</span>${esc(msg.text)}`).dataset.offset = meta.offset;
}, {
  recent: 50,
  onReset: () => line($("messages"), "Some messages could not be recovered.", "note"),
  // With join_leave=true on the chat. namespace the count updates as people come and go.
  onPresence: ({ subscribers }) => {
    $("presence").textContent = `${subscribers} here`;
    $(`count-${room}`).textContent = subscribers ? `${subscribers}` : "";
  },
});

client.subscribe("chat.*", (msg, meta) => {
  const r = meta.channel.slice("chat.".length);
  line($("lobby"), `<b>#${esc(r)}</b> ${esc(msg.name)}: ${esc(msg.text).slice(0, 60)}`);
  while ($("lobby").children.length > 30) $("lobby").firstChild.remove();
});

client.on("open", () => { $("status").textContent = "online"; $("status").className = "status online"; });
client.on("close", () => { $("status").textContent = "reconnecting…"; $("status").className = "status"; });

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try {
    await client.publish(`chat.${room}`, { name, text, at: Date.now() });
  } catch (e) {
    line($("messages"), `Not sent: ${esc(e.message)}`, "note");
  }
});

async function refreshPresence() {
  for (const r of ROOMS) {
    try {
      const res = await fetch(`/v1/channels/chat.${r}/presence`);
      if (!res.ok) continue;
      const { direct } = await res.json();  // people in the room, not lobby watchers
      $(`count-${r}`).textContent = direct ? `${direct}` : "";
      if (r === room) $("presence").textContent = `${direct} here`;
    } catch { /* offline: try again later */ }
  }
}
refreshPresence();
setInterval(refreshPresence, 3000);
