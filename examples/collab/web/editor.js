// The collaborative editor's client: a textarea kept in sync with a Document object through a
// WebSocket attached to it. The usual OT client: at most one edit in flight (awaiting its ack);
// edits typed meanwhile are composed into a buffer; edits of others are transformed against both.
// After a lost connection it says hello with the last revision it saw, receives what it missed
// (its own acked edits come back as acks) and resends its edit in flight if it is still unacked.
import { connect } from "/roost.js";
import { TextOp, diff } from "./ot.js";

const params = new URLSearchParams(location.search);
const docName = params.get("doc") || "welcome";
const userName = params.get("name") || `guest-${Math.floor(Math.random() * 1000)}`;
const clientId = `${userName}-${Math.random().toString(36).slice(2, 10)}`;

const area = document.getElementById("text");
const statusEl = document.getElementById("status");
const usersEl = document.getElementById("users");
document.getElementById("docname").textContent = docName;

const state = {
  rev: -1,          // the last server revision applied here
  text: "",         // what the textarea shows (server text + our unacked edits)
  inflight: null,   // {op, seq, rev}: sent, not acked
  buffer: null,     // TextOp typed while waiting
  seq: 0,
  ready: false,
  transformed: 0,   // remote edits that crossed one of ours (for tests and curiosity)
};
window.collab = { state, clientId };

const roost = connect(location.origin);
const socket = roost.object("doc", docName).connect({
  onOpen: (s) => {
    statusEl.textContent = "syncing";
    state.ready = false;
    s.send({ op: "hello", client: clientId, name: userName, rev: state.rev });
  },
  onMessage: (text) => onFrame(JSON.parse(text)),
  onClose: () => { statusEl.textContent = "offline"; state.ready = false; },
});
window.collab.socket = socket;

function show(text) {
  const start = area.selectionStart, end = area.selectionEnd;
  area.value = text;
  area.setSelectionRange(start, end);
}

function applyRemote(op) {
  const start = op.transformIndex(area.selectionStart);
  const end = op.transformIndex(area.selectionEnd);
  state.text = op.apply(state.text);
  area.value = state.text;
  area.setSelectionRange(start, end);
}

function sendInflight() {
  socket.send({ op: "edit", rev: state.inflight.rev, seq: state.inflight.seq, ops: state.inflight.op.toJSON() });
}

function onFrame(f) {
  switch (f.type) {
    case "doc":  // a fresh copy: anything unacked here is lost
      state.rev = f.rev;
      state.text = f.text;
      state.inflight = null;
      state.buffer = null;
      show(f.text);
      break;
    case "op": {
      let op = TextOp.fromJSON(f.ops);
      if (state.inflight) {
        state.transformed += 1;
        const [i2, o2] = TextOp.transform(state.inflight.op, op);
        state.inflight.op = i2;
        op = o2;
        if (state.buffer) {
          const [b2, o3] = TextOp.transform(state.buffer, op);
          state.buffer = b2;
          op = o3;
        }
      }
      state.rev = f.rev;
      if (state.inflight) state.inflight.rev = f.rev;
      applyRemote(op);
      break;
    }
    case "ack":
      state.rev = f.rev;
      if (state.inflight && state.inflight.seq === f.seq) {
        state.inflight = null;
        if (state.buffer) {
          state.inflight = { op: state.buffer, seq: ++state.seq, rev: state.rev };
          state.buffer = null;
          if (state.ready) sendInflight();
        }
      }
      break;
    case "ready":
      state.ready = true;
      statusEl.textContent = "online";
      if (state.inflight) {
        state.inflight.rev = state.rev;
        sendInflight();
      } else if (state.buffer) {
        state.inflight = { op: state.buffer, seq: ++state.seq, rev: state.rev };
        state.buffer = null;
        sendInflight();
      }
      break;
    case "presence":
      usersEl.textContent = f.users.join(", ");
      break;
    case "error":
      console.warn("document:", f.message);
      break;
    default:
      break;
  }
}

area.addEventListener("input", () => {
  const op = diff(state.text, area.value);
  state.text = area.value;
  if (op.isNoop()) return;
  if (state.inflight) {
    state.buffer = state.buffer ? state.buffer.compose(op) : op;
  } else {
    state.inflight = { op, seq: ++state.seq, rev: state.rev };
    if (state.ready) sendInflight();
  }
});
