// The app the host tests serve: two Durable-Objects classes and a Worker front, written against
// Cloudflare's API only (what a Workers app would contain).
import { DurableObject } from "../../objects.js";

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    env.constructed.push(`Room/${ctx.id.toString()}`);
    this.ctx.blockConcurrencyWhile(async () => {
      this.topic = (await this.ctx.storage.get("topic")) ?? "none";
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    if ((request.headers.get("upgrade") || "").toLowerCase() === "websocket") {
      const who = url.searchParams.get("who");
      if (who === "intruder") return new Response("go away", { status: 403 });
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1], [`who:${who}`, url.searchParams.get("team") || "none"]);
      pair[1].serializeAttachment({ who, joined: new Date(0) });
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    const op = url.pathname.split("/").pop();
    const body = request.method === "POST" ? await request.json() : {};
    const s = this.ctx.storage;
    switch (op) {
      case "put": await s.put(body.entries); return Response.json({ ok: true });
      case "get": return Response.json(Object.fromEntries(await s.get(body.keys)));
      case "delete": return Response.json({ deleted: await s.delete(body.keys) });
      case "list": return Response.json([...(await s.list(body))]);
      case "txn": {
        const out = await s.transaction(async (txn) => {
          await txn.put("t1", 1);
          const seen = await txn.get("t1");
          if (body.rollback) txn.rollback();
          return seen;
        });
        return Response.json({ seen: out, after: (await s.get("t1")) ?? null });
      }
      case "alarm": {
        if (body.at) await s.setAlarm(body.at);
        return Response.json({ alarm: await s.getAlarm(), fired: (await s.get("fired")) ?? null });
      }
      case "topic": return Response.json({ topic: this.topic });
      case "sockets": {
        const tag = url.searchParams.get("tag") || undefined;
        return Response.json(this.ctx.getWebSockets(tag).map((ws) => ws.deserializeAttachment().who).sort());
      }
      case "autoresponse": {
        this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
        return Response.json({ ok: true });
      }
      case "closes": return Response.json((await s.get("closes")) ?? []);
      case "count": return Response.json({ count: await this.env.COUNTERS.get(this.env.COUNTERS.idFromName(body.counter)).add(body.by) });
      case "cycle": return Response.json({ r: await this.env.COUNTERS.get(this.env.COUNTERS.idFromName("c")).callRoom(this.ctx.id.toString()) });
      default: return new Response("no such op", { status: 404 });
    }
  }

  async webSocketMessage(ws, message) {
    const me = ws.deserializeAttachment();
    for (const other of this.ctx.getWebSockets()) other.send(JSON.stringify({ from: me.who, text: message }));
  }

  async webSocketClose(ws, code, reason, wasClean) {
    const closes = (await this.ctx.storage.get("closes")) ?? [];
    closes.push({ who: ws.deserializeAttachment().who, tags: this.ctx.getTags(ws), code, reason, wasClean });
    await this.ctx.storage.put("closes", closes);
    for (const other of this.ctx.getWebSockets()) other.send(JSON.stringify({ left: ws.deserializeAttachment().who }));
  }

  async alarm(info) {
    await this.ctx.storage.put("fired", { at: Date.now(), retryCount: info.retryCount, alarmAfter: await this.ctx.storage.getAlarm() });
  }

  async ping() { return "pong"; }
}

export class Counter extends DurableObject {
  async add(by) {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + by;
    await this.ctx.storage.put("n", n);
    return n;
  }
  async callRoom(room) {
    return this.env.ROOMS.get(this.env.ROOMS.idFromString(room)).fetch("http://room/x/cycle");
  }
  async fail() { throw new Error("counter says no"); }
  async fetch(request) {
    return new Response(`counter ${this.ctx.id} ${request.method} ${new URL(request.url).pathname}`);
  }
}

// The Worker: /api/rooms/{name}/{op} and /api/counters/{name}/{method}; /ws/{room} upgrades.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean);
    if (parts[0] === "ws") {
      if ((request.headers.get("upgrade") || "") !== "websocket") return new Response("upgrade expected", { status: 426 });
      return env.ROOMS.get(env.ROOMS.idFromName(parts[1])).fetch(request);
    }
    if (parts[0] !== "api") return new Response("not found", { status: 404 });
    if (parts[1] === "rooms") return env.ROOMS.get(env.ROOMS.idFromName(parts[2])).fetch(request);
    if (parts[1] === "counters") {
      const stub = env.COUNTERS.get(env.COUNTERS.idFromName(parts[2]));
      if (parts[3] === "add") return Response.json({ n: await stub.add(Number(url.searchParams.get("by") || 1)) });
      if (parts[3] === "fail") {
        try { await stub.fail(); } catch (e) { return Response.json({ error: e.message }, { status: 500 }); }
      }
      return stub.fetch(request);
    }
    if (parts[1] === "whoami") {
      return Response.json({ ip: request.headers.get("cf-connecting-ip"), claims: request.claims ?? null,
        host: request.headers.get("host") });
    }
    return new Response("not found", { status: 404 });
  },
};
