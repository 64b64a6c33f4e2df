// The collaborative editor's document (examples/collab) as a Durable Object with Cloudflare's API:
// the text, its revision and the last HISTORY operations in ctx.storage; one hibernatable
// WebSocket per editor, its name in the socket's attachment. Same protocol as the C++ class
// (examples/collab/document.h), so the same web page edits either.
import { DurableObject } from "../../sdk/js/objects.js";
import { TextOp } from "../collab/web/ot.js";

const HISTORY = 500;  // operations kept for catching up
const historyKey = (rev) => `h/${String(rev).padStart(12, "0")}`;

export class Document extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    ctx.blockConcurrencyWhile(async () => {
      this.text = (await ctx.storage.get("text")) ?? "";
      this.rev = (await ctx.storage.get("rev")) ?? 0;
    });
  }

  async fetch(request) {
    if (request.headers.get("upgrade") === "websocket") {
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1]);
      pair[1].serializeAttachment({ name: "?" });
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    return Response.json({ rev: this.rev, text: this.text });
  }

  // The C++ class answers calls with the text: so does this one (RPC and plain calls).
  async snapshot() { return { rev: this.rev, text: this.text }; }

  async webSocketMessage(ws, message) {
    let o;
    try { o = JSON.parse(message); } catch { o = null; }
    if (!o || typeof o !== "object" || !o.op) return send(ws, { type: "error", message: "frames are JSON objects with an op" });
    const st = this.ctx.storage;
    if (o.op === "hello") {
      const client = o.client ?? "";
      ws.serializeAttachment({ name: o.name ?? "anonymous", client });
      const since = typeof o.rev === "number" ? o.rev : -1;
      if (since < 0 || since > this.rev || since < this.rev - HISTORY) {
        send(ws, { type: "doc", rev: this.rev, text: this.text });
      } else {
        const keys = [];
        for (let r = since + 1; r <= this.rev; r += 1) keys.push(historyKey(r));
        const hist = await st.get(keys);
        for (let r = since + 1; r <= this.rev; r += 1) {
          const h = hist.get(historyKey(r)) ?? {};
          if (h.client && h.client === client) send(ws, { type: "ack", rev: r, seq: h.seq });
          else send(ws, { type: "op", rev: r, ops: h.ops });
        }
      }
      send(ws, { type: "ready", rev: this.rev });
      this.presence();
      return;
    }
    if (o.op === "edit") {
      const { client = "" } = ws.deserializeAttachment() ?? {};
      const seq = Number(o.seq);
      const base = Number(o.rev);
      const seenKey = `c/${client}`;
      if (client && seq <= ((await st.get(seenKey)) ?? 0)) return;  // a resend of an applied edit
      if (base > this.rev || base < this.rev - HISTORY) {
        send(ws, { type: "error", message: "edit based on an unknown revision; reload" });
        return send(ws, { type: "doc", rev: this.rev, text: this.text });
      }
      let edit;
      let text;
      try {
        edit = TextOp.fromJSON(o.ops);
        for (let r = base + 1; r <= this.rev; r += 1) {
          const h = await st.get(historyKey(r));
          edit = TextOp.transform(edit, TextOp.fromJSON(h.ops))[0];
        }
        text = edit.apply(this.text);
      } catch (e) {
        send(ws, { type: "error", message: `bad edit: ${e.message}` });
        return send(ws, { type: "doc", rev: this.rev, text: this.text });
      }
      this.text = text;
      this.rev += 1;
      const ops = edit.toJSON();
      st.put({ text: this.text, rev: this.rev, [historyKey(this.rev)]: { ops, client, seq } });
      if (this.rev > HISTORY) st.delete(historyKey(this.rev - HISTORY));
      if (client) st.put(seenKey, seq);
      send(ws, { type: "ack", rev: this.rev, seq });
      const frame = JSON.stringify({ type: "op", rev: this.rev, ops });
      for (const other of this.ctx.getWebSockets()) if (other !== ws) other.send(frame);
      return;
    }
    send(ws, { type: "error", message: `unknown op ${o.op}` });
  }

  async webSocketClose() { this.presence(); }

  presence() {
    const users = this.ctx.getWebSockets().map((s) => (s.deserializeAttachment() ?? {}).name).filter(Boolean);
    const frame = JSON.stringify({ type: "presence", users });
    for (const s of this.ctx.getWebSockets()) s.send(frame);
  }
}

function send(ws, o) { ws.send(JSON.stringify(o)); }
