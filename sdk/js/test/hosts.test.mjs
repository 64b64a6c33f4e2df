// Remote actor hosts with the Cloudflare-style runtime (objects.js) against the real binary: a
// Worker front (app_routes), storage, RPC and object-to-object calls, WebSockets through the
// front with hibernation, alarms across a restart, a host killed mid-turn, two hosts of a class,
// and what a host's token may do.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";
import { serve, DurableObject } from "../objects.js";
import worker, { Room, Counter } from "../fixtures/app.mjs";
import { startRoost, webSocketImpl, waitFor, sleep } from "./roost_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));

async function api(server, path, body, method = body === undefined ? "GET" : "POST") {
  const r = await fetch(server.url + path, {
    method, body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? {} : { "content-type": "application/json" },
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, text, json, headers: r.headers };
}

async function metric(server, name) {
  const text = await (await fetch(server.url + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ")[1]) : undefined;
}

function app(server, env = {}) {
  return serve({ url: server.url, objects: { ROOMS: Room, COUNTERS: Counter }, worker, env: { constructed: [], ...env }, minDelayMs: 50, maxDelayMs: 300 });
}

async function openSocket(WebSocket, url) {
  const ws = new WebSocket(url);
  ws.frames = [];
  ws.onmessage = (e) => {
    const text = String(e.data);
    ws.frames.push(text.startsWith("{") ? JSON.parse(text) : text);
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = (e) => reject(e.error || new Error("socket failed")); });
  ws.closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e); });
  return ws;
}

test("a Worker front, storage, RPC and object-to-object calls", async () => {
  const server = await startRoost(["--app-routes", "/api,/ws"]);
  const host = await app(server);
  try {
    // Storage: single keys and arrays, structured values, list with prefix/start/end/reverse/limit.
    let r = await api(server, "/api/rooms/r1/put", { entries: { "a:1": 1, "a:2": { x: [2] }, "a:3": "three", "b:1": true } });
    assert.equal(r.status, 200);
    r = await api(server, "/api/rooms/r1/get", { keys: ["a:1", "a:2", "zz"] });
    assert.deepEqual(r.json, { "a:1": 1, "a:2": { x: [2] } });
    r = await api(server, "/api/rooms/r1/list", { prefix: "a:" });
    assert.deepEqual(r.json.map(([k]) => k), ["a:1", "a:2", "a:3"]);
    r = await api(server, "/api/rooms/r1/list", { reverse: true, limit: 2 });
    assert.deepEqual(r.json, [["b:1", true], ["a:3", "three"]]);
    r = await api(server, "/api/rooms/r1/list", { start: "a:2", end: "b:1" });
    assert.deepEqual(r.json.map(([k]) => k), ["a:2", "a:3"]);
    r = await api(server, "/api/rooms/r1/delete", { keys: ["a:1", "a:9"] });
    assert.deepEqual(r.json, { deleted: 1 });
    r = await api(server, "/api/rooms/r1/get", { keys: ["a:1"] });
    assert.deepEqual(r.json, {});
    // transaction(): its writes are seen inside; rollback() drops them.
    r = await api(server, "/api/rooms/r1/txn", { rollback: true });
    assert.deepEqual(r.json, { seen: 1, after: null });
    r = await api(server, "/api/rooms/r1/txn", { rollback: false });
    assert.deepEqual(r.json, { seen: 1, after: 1 });
    // blockConcurrencyWhile in the constructor ran before the first request.
    r = await api(server, "/api/rooms/r1/topic");
    assert.deepEqual(r.json, { topic: "none" });

    // RPC from the front, and from one object to another within its turn.
    r = await api(server, "/api/counters/c1/add?by=5");
    assert.deepEqual(r.json, { n: 5 });
    r = await api(server, "/api/rooms/r1/count", { counter: "c1", by: 2 });
    assert.deepEqual(r.json, { count: 7 });
    r = await api(server, "/api/counters/c1/fail");
    assert.equal(r.status, 500);
    assert.match(r.json.error, /counter says no/);
    // The counter's fetch, through a stub, sees the request's method and path.
    r = await api(server, "/api/counters/c1/hello", {}, "PUT");
    assert.equal(r.text, "counter c1 PUT /api/counters/c1/hello");
    // A cycle (room → counter → the same room) is refused at once, not left to time out.
    const started = Date.now();
    r = await api(server, "/api/rooms/r2/cycle", {});
    assert.equal(r.status, 500);
    assert.match(r.text, /chain of calls/);
    assert.ok(Date.now() - started < 5000);

    // What the front sees: the client's address as CF-Connecting-IP; the app's 404s are its own;
    // Roost's routes stay Roost's.
    r = await api(server, "/api/whoami");
    assert.equal(r.json.ip, "127.0.0.1");
    r = await api(server, "/api/nothing");
    assert.equal(r.status, 404);
    assert.equal(r.text, "not found");
    r = await api(server, "/healthz");
    assert.equal(r.status, 200);
    // The same object straight over Roost's own fetch route.
    r = await api(server, "/v1/objects/Room/r1/fetch/x/topic");
    assert.deepEqual(r.json, { topic: "none" });
    // Ids: unique ones are 64 hex digits, and idFromString(id.toString()) is the same object.
    const ns = host.env.ROOMS;
    const id = ns.newUniqueId();
    assert.match(id.toString(), /^[0-9a-f]{64}$/);
    assert.ok(ns.idFromString(id.toString()).equals(id));
    assert.equal(await ns.get(ns.idFromString(id.toString())).ping(), "pong");
    assert.equal(ns.idFromName("r1").name, "r1");
    assert.ok((await metric(server, "roost_front_requests_total")) >= 14);
  } finally {
    host.close();
    await server.dispose();
  }
});

test("WebSockets through the front: tags, attachments, hibernation with sockets kept, close codes", async () => {
  const WebSocket = await webSocketImpl();
  const server = await startRoost(["--app-routes", "/api,/ws", "--actor-idle-ms", "300"]);
  const env = { constructed: [] };
  const host = await app(server, env);
  const base = server.url.replace("http", "ws");
  try {
    // The object refuses: the browser gets its status.
    await assert.rejects(openSocket(WebSocket, `${base}/ws/lobby?who=intruder`));
    const ann = await openSocket(WebSocket, `${base}/ws/lobby?who=ann&team=red`);
    const bob = await openSocket(WebSocket, `${base}/ws/lobby?who=bob&team=blue`);
    ann.send("hi");
    await waitFor(() => ann.frames.length === 1 && bob.frames.length === 1, 3000, "broadcast");
    assert.deepEqual(bob.frames[0], { from: "ann", text: "hi" });
    let r = await api(server, "/api/rooms/lobby/sockets?tag=red");
    assert.deepEqual(r.json, ["ann"]);
    // The refusal was an answer, not a failure: the same instance served the two that came in.
    assert.equal(env.constructed.filter((c) => c === "Room/lobby").length, 1);

    // Hibernation: the object leaves memory, its sockets stay open; the next frame wakes a new
    // instance that still knows who is who.
    const before = env.constructed.filter((c) => c === "Room/lobby").length;
    const hibernated = await metric(server, "roost_actor_hibernations_total");
    await waitFor(async () => (await metric(server, "roost_actor_hibernations_total")) > hibernated, 5000, "hibernation");
    bob.send("still here");
    await waitFor(() => ann.frames.length === 2, 3000, "broadcast after waking");
    assert.deepEqual(ann.frames[1], { from: "bob", text: "still here" });
    assert.equal(env.constructed.filter((c) => c === "Room/lobby").length, before + 1);

    // The auto-response answers without a turn.
    await api(server, "/api/rooms/lobby/autoresponse");
    const turns = await metric(server, "roost_remote_turns_total");
    ann.send("ping");
    await waitFor(() => ann.frames.length === 3, 3000, "auto-response");
    assert.equal(ann.frames[2], "pong");
    assert.equal(await metric(server, "roost_remote_turns_total"), turns);

    // A close: the object learns code, reason, tags and attachment; the other socket hears it.
    bob.close(4001, "bye now");
    await waitFor(() => ann.frames.some((f) => f.left === "bob"), 3000, "left");
    r = await api(server, "/api/rooms/lobby/closes");
    assert.deepEqual(r.json, [{ who: "bob", tags: ["who:bob", "blue"], code: 4001, reason: "bye now", wasClean: true }]);
    ann.close();
  } finally {
    host.close();
    await server.dispose();
  }
});

test("alarms across a restart of the node; the host reconnects by itself", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "roost-hosts-alarm-"));
  let server = await startRoost(["--app-routes", "/api"], { dataDir });
  const host = await app(server);
  try {
    const at = Date.now() + 1500;
    let r = await api(server, "/api/rooms/clock/alarm", { at });
    assert.deepEqual(r.json, { alarm: at, fired: null });
    await server.stop();
    server = await startRoost(["--app-routes", "/api"], { dataDir, port: server.port });
    await waitFor(async () => {
      const x = await api(server, "/api/rooms/clock/alarm", {});
      return x.status === 200 && x.json.fired !== null;
    }, 10000, "the alarm after the restart");
    r = await api(server, "/api/rooms/clock/alarm", {});
    assert.ok(r.json.fired.at >= at);
    assert.equal(r.json.fired.retryCount, 0);
    assert.equal(r.json.fired.alarmAfter, null);
    assert.equal(r.json.alarm, null);
  } finally {
    host.close();
    await server.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test("a host killed mid-turn: the turn runs again on another host, its effects once", async () => {
  const server = await startRoost(["--remote-classes", "Work"]);
  // Mail for a class no host serves yet is kept.
  let r = await api(server, "/v1/objects/Work/job/messages", { hang: true });
  assert.equal(r.status, 202);
  const child = spawn(process.execPath, [join(here, "../fixtures/child_host.mjs"), server.url], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => { out += d; });
  let second;
  try {
    await waitFor(() => out.includes("MIDTURN"), 10000, "the child host in the middle of the turn");
    class Work extends DurableObject {
      async message(body, info) {
        const n = ((await this.ctx.storage.get("n")) ?? 0) + 1;
        await this.ctx.storage.put("n", n);
        await this.ctx.storage.put("attempts", info.attempt);
        await this.ctx.storage.put("by", "second");
      }
      async state() { return { n: await this.ctx.storage.get("n"), attempts: await this.ctx.storage.get("attempts"), by: await this.ctx.storage.get("by") }; }
    }
    second = await serve({ url: server.url, objects: { WORK: Work } });
    child.kill("SIGKILL");
    const stub = second.env.WORK.get(second.env.WORK.idFromName("job"));
    await waitFor(async () => (await stub.state()).by === "second", 10000, "the retried turn");
    // The child's write of n = 1 never committed: the second host's turn counted from 0.
    assert.deepEqual(await stub.state(), { n: 1, attempts: 2, by: "second" });
    assert.equal(await metric(server, "roost_remote_turns_failed_total"), 1);  // the one the kill cut
  } finally {
    child.kill("SIGKILL");
    if (second) second.close();
    await server.dispose();
  }
});

test("two hosts of one class share its objects; an active object stays on its host", async () => {
  const server = await startRoost([]);
  class Tally extends DurableObject {
    async message(body) {
      const seen = (await this.ctx.storage.get("hosts")) ?? [];
      seen.push(this.env.NAME);
      await this.ctx.storage.put("hosts", seen);
    }
    async hosts() { return (await this.ctx.storage.get("hosts")) ?? []; }
  }
  const a = await serve({ url: server.url, objects: { T: Tally }, env: { NAME: "a" } });
  const b = await serve({ url: server.url, objects: { T: Tally }, env: { NAME: "b" } });
  try {
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 10; i += 1) {
        const r = await api(server, `/v1/objects/Tally/o${i}/messages`, {});
        assert.equal(r.status, 202);
      }
    }
    const per = { a: 0, b: 0 };
    for (let i = 0; i < 10; i += 1) {
      const stub = a.env.T.get(a.env.T.idFromName(`o${i}`));
      let seen;
      await waitFor(async () => (seen = await stub.hosts()).length === 3, 5000, `o${i}'s three messages`);
      assert.ok(seen.every((h) => h === seen[0]), `o${i} moved between hosts: ${seen}`);
      per[seen[0]] += 1;
    }
    assert.ok(per.a >= 3 && per.b >= 3, `objects spread over both hosts: ${JSON.stringify(per)}`);
  } finally {
    a.close();
    b.close();
    await server.dispose();
  }
});

function jwt(secret, payload) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = enc({ alg: "HS256", typ: "JWT" });
  const body = enc(payload);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

test("a host's token names the classes it may serve and what its objects may reach", async () => {
  const secret = "host-test-secret";
  const server = await startRoost(["--auth-secret", secret, "--app-routes", "/api"]);
  const exp = Math.floor(Date.now() / 1000) + 600;
  class Pub extends DurableObject {
    async send(subject) { this.ctx.storage.put("x", 1); return "ok"; }
  }
  try {
    // No roost.host grant: refused at the handshake.
    await assert.rejects(serve({ url: server.url, token: jwt(secret, { exp, roost: { objects: [">"] } }), objects: { P: Pub }, maxDelayMs: 100 }).then((h) => { h.close(); }),
      /refused|403|Unexpected server response/);
    // A grant for another class: the registration is refused.
    await assert.rejects(serve({ url: server.url, token: jwt(secret, { exp, roost: { host: ["Other"] } }), objects: { P: Pub } }),
      /may not host class Pub/);
    // The right grant: served. Its front sees the verified claims of a request's token (none
    // without one); a bad token never reaches it.
    const h = await serve({ url: server.url, token: jwt(secret, { exp, roost: { host: ["Pub"] } }), objects: { P: Pub }, worker });
    const user = jwt(secret, { exp, sub: "user-7" });
    let r = await fetch(`${server.url}/api/whoami`, { headers: { authorization: `Bearer ${user}` } });
    assert.equal((await r.json()).claims.sub, "user-7");
    r = await fetch(`${server.url}/api/whoami`);
    assert.equal((await r.json()).claims, null);
    r = await fetch(`${server.url}/api/whoami`, { headers: { authorization: "Bearer not.a.token" } });
    assert.equal(r.status, 401);
    assert.equal(await h.env.P.get(h.env.P.idFromName("x")).send("a"), "ok");
    // A class it does not serve, outside its grant: refused.
    await assert.rejects(h.objectRequest({ t: "tell", op: "tell", class: "Other", object: "x", data: "{}" }), /may not use object/);
    h.close();
  } finally {
    await server.dispose();
  }
});

test("a host that stalls is closed after host_turn_timeout_ms; its turn runs elsewhere; other classes never wait", async () => {
  const server = await startRoost(["--host-turn-timeout-ms", "500"]);
  class Stuck extends DurableObject {
    async message(body, info) {
      await this.ctx.storage.put("by", this.env.NAME);
      await this.ctx.storage.put("attempt", info.attempt);
      if (this.env.NAME === "stuck") await new Promise(() => {});  // never answers
    }
    async state() { return { by: await this.ctx.storage.get("by"), attempt: await this.ctx.storage.get("attempt") }; }
  }
  class Quick extends DurableObject {
    async fetch() { return new Response("quick"); }
  }
  const stuck = await serve({ url: server.url, objects: { S: Stuck }, env: { NAME: "stuck" } });
  const quick = await serve({ url: server.url, objects: { Q: Quick } });
  let healthy;
  try {
    let r = await api(server, "/v1/objects/Stuck/s1/messages", {});
    assert.equal(r.status, 202);
    // While the stuck host holds its turn, another class answers at once.
    for (let i = 0; i < 20; i += 1) {
      r = await api(server, `/v1/objects/Quick/q${i}/fetch/`);
      assert.equal(r.text, "quick");
    }
    healthy = await serve({ url: server.url, objects: { S: Stuck }, env: { NAME: "healthy" } });
    await waitFor(async () => (await metric(server, "roost_remote_turn_timeouts_total")) >= 1, 5000, "the stall noticed");
    const stub = healthy.env.S.get(healthy.env.S.idFromName("s1"));
    await waitFor(async () => (await stub.state()).by === "healthy", 5000, "the turn on the healthy host");
    assert.deepEqual(await stub.state(), { by: "healthy", attempt: 2 });
  } finally {
    stuck.close();
    quick.close();
    if (healthy) healthy.close();
    await server.dispose();
  }
});

test("a host that breaks the protocol is told so and stays connected; frames for unknown turns are void", async () => {
  const WebSocket = await webSocketImpl();
  const server = await startRoost([]);
  try {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/v1/hosts/connect");
    const frames = [];
    ws.onmessage = (e) => frames.push(JSON.parse(String(e.data)));
    const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); });
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    ws.send("not json");
    ws.send(JSON.stringify({ t: "call", id: 1, class: "X", object: "y" }));  // before register
    ws.send(JSON.stringify({ t: "register", classes: ["Good", "bad name!"] }));
    await waitFor(() => frames.length >= 3, 3000, "three answers");
    assert.equal(frames[0].t, "error");
    assert.equal(frames[1].t, "error");
    assert.match(frames[1].error.message, /register/);
    assert.equal(frames[2].t, "error");
    assert.equal(frames[2].error.code, "invalid_name");
    assert.equal(await closed, 4400);  // a refused registration ends the connection
    const ws2 = new WebSocket(server.url.replace("http", "ws") + "/v1/hosts/connect");
    const frames2 = [];
    ws2.onmessage = (e) => frames2.push(JSON.parse(String(e.data)));
    await new Promise((resolve, reject) => { ws2.onopen = resolve; ws2.onerror = reject; });
    ws2.send(JSON.stringify({ t: "register", classes: ["Good"] }));
    await waitFor(() => frames2.length >= 1, 3000, "registered");  // nothing else before it
    ws2.send(JSON.stringify({ t: "done", turn: 12345 }));
    ws2.send(JSON.stringify({ t: "ping" }));
    await waitFor(() => frames2.length >= 2, 3000, "registered and pong");
    assert.deepEqual(frames2.map((f) => f.t), ["registered", "pong"]);
    // More malformed requests than a host may have outstanding: each is answered, none keeps a slot.
    for (let i = 1; i <= 1100; i += 1) ws2.send(JSON.stringify({ t: "fetch", id: i, class: "Good", object: "x" }));
    ws2.send(JSON.stringify({ t: "tell", id: 5000, class: "Good", object: "x", data: "{}" }));
    await waitFor(() => frames2.some((f) => f.id === 5000), 5000, "the tell's reply");
    const replies = frames2.filter((f) => f.t === "reply" && f.id <= 1100);
    assert.equal(replies.length, 1100);
    assert.ok(replies.every((f) => f.error.code === "malformed"));
    assert.equal(frames2.find((f) => f.id === 5000).seq, 1);
    ws2.close();
  } finally {
    await server.dispose();
  }
});
