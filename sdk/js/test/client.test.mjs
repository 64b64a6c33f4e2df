// roost.js against the real binary, in Node.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { connect, matches, RoostError } from "../roost.js";
import { startRoost, webSocketImpl, waitFor, sleep } from "./roost_server.mjs";

let server;
let WebSocket;
before(async () => {
  WebSocket = await webSocketImpl();
  server = await startRoost(["--channel-namespaces", "chat.:history=100;room.:join_leave=true"]);
});
after(async () => { await server.dispose(); });

const open = (opts = {}) => connect(server.url, { WebSocket, ...opts });

test("subject matching mirrors the server's grammar", () => {
  assert.ok(matches("chat.*", "chat.a"));
  assert.ok(!matches("chat.*", "chat.a.b"));
  assert.ok(matches("chat.>", "chat.a.b"));
  assert.ok(!matches("chat.>", "chat"));
});

test("publish reaches exact and wildcard subscribers", async () => {
  const a = open(), b = open();
  const exact = [], wild = [];
  await a.subscribe("chat.js1", (d, m) => exact.push([d, m.offset])).ready;
  await a.subscribe("chat.*", (d, m) => wild.push([d, m.channel])).ready;
  const r = await b.publish("chat.js1", { n: 1 });
  assert.equal(r.subscribers, 1);
  await waitFor(() => exact.length === 1 && wild.length === 1, 3000, "deliveries");
  assert.deepEqual(exact[0], [{ n: 1 }, r.offset]);
  assert.deepEqual(wild[0], [{ n: 1 }, "chat.js1"]);
  a.close(); b.close();
});

test("errors carry stable codes", async () => {
  const a = open();
  await assert.rejects(a.publish("chat.*", 1), (e) => e instanceof RoostError && e.code === "invalid_argument");
  const sub = a.subscribe("bad..name", () => {});
  await assert.rejects(sub.ready, (e) => e.code === "invalid_argument");
  await assert.rejects(a.pull("no-such-queue"), (e) => e.code === "queue_not_found");
  a.close();
});

test("fire-and-forget publishes arrive in order; their failures come as error events", async () => {
  const a = open(), b = open();
  const got = [], errors = [];
  await a.subscribe("chat.fire", (d) => got.push(d)).ready;
  b.on("error", (e) => errors.push(e));
  for (let i = 1; i <= 20; i++) assert.equal(await b.publish("chat.fire", i, { ack: false }), undefined);
  await waitFor(() => got.length === 20, 3000, "fire-and-forget deliveries");
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => i + 1));
  await b.publish("chat.*", 1, { ack: false });  // a pattern: refused, and said so
  await waitFor(() => errors.length === 1, 3000, "error event");
  assert.equal(errors[0].code, "invalid_argument");
  a.close(); b.close();
});

test("reconnects with backoff and resumes from the last offset", async () => {
  const a = open({ minDelayMs: 400, maxDelayMs: 400 });
  const b = open();
  const got = [];
  await a.subscribe("chat.resume", (d) => got.push(d)).ready;
  await b.publish("chat.resume", 1);
  await waitFor(() => got.length === 1, 3000, "first message");
  let reconnecting = 0;
  a.on("reconnecting", () => reconnecting++);
  a._ws.close();  // the network drops
  await waitFor(() => !a.connected, 2000, "disconnect");
  await b.publish("chat.resume", 2);  // sent while a is away
  await b.publish("chat.resume", 3);
  await waitFor(() => got.length === 3, 5000, "recovered messages");
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(reconnecting, 1);
  await b.publish("chat.resume", 4);
  await waitFor(() => got.length === 4, 3000, "live after resume");
  assert.deepEqual(got, [1, 2, 3, 4]);
  a.close(); b.close();
});

test("recent history on join", async () => {
  const b = open();
  for (let i = 1; i <= 5; i++) await b.publish("chat.recent", i);
  const a = open();
  const got = [];
  await a.subscribe("chat.recent", (d) => got.push(d), { recent: 3 }).ready;
  await waitFor(() => got.length === 3, 3000, "recent messages");
  assert.deepEqual(got, [3, 4, 5]);
  await b.publish("chat.recent", 6);
  await waitFor(() => got.length === 4, 3000, "live");
  assert.deepEqual(got, [3, 4, 5, 6]);
  a.close(); b.close();
});

test("a node restart is reported as a reset, and the client carries on", async () => {
  const srv = await startRoost(["--channel-namespaces", "chat.:history=10"]);
  const a = connect(srv.url, { WebSocket, minDelayMs: 200, maxDelayMs: 400 });
  const got = [];
  let resets = 0;
  await a.subscribe("chat.r", (d) => got.push(d), { onReset: () => resets++ }).ready;
  const b = connect(srv.url, { WebSocket });
  await b.publish("chat.r", "before");
  await waitFor(() => got.length === 1, 3000, "first");
  b.close();
  await srv.stop();
  const again = await startRoost(["--channel-namespaces", "chat.:history=10"], { port: srv.port, dataDir: srv.dir });
  await waitFor(() => resets === 1, 8000, "reset after restart");
  const c = connect(again.url, { WebSocket });
  await c.publish("chat.r", "after");
  await waitFor(() => got.length === 2, 3000, "live after restart");
  assert.deepEqual(got, ["before", "after"]);
  a.close(); c.close();
  await again.dispose();
});

test("queue calls: enqueue, pull, ack", async () => {
  const a = open();
  const { ids } = await a.enqueue("js-jobs", { task: 1 });
  assert.equal(ids.length, 1);
  await a.enqueueBatch("js-jobs", [{ body: "t", content_type: "text" }, { body: 2 }]);
  const msgs = await a.pull("js-jobs", { batch_size: 10 });
  assert.equal(msgs.length, 3);
  assert.deepEqual(msgs[0].body, { task: 1 });
  assert.equal(msgs[1].content_type, "text");
  const r = await a.ack("js-jobs", { acks: [msgs[0].lease_id], retries: [{ lease_id: msgs[1].lease_id, delay_ms: 0 }] });
  assert.deepEqual([r.acked, r.retried, r.unknown.length], [1, 1, 0]);
  a.close();
});

test("tokens: rejected without, accepted with", async () => {
  const { createHmac } = await import("node:crypto");
  const secret = "js-secret";
  const b64 = (s) => Buffer.from(s).toString("base64url");
  const body = `${b64(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64(JSON.stringify({ roost: { publish: ["chat.>"], subscribe: ["chat.>"], queues: [">"] } }))}`;
  const token = `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
  const srv = await startRoost(["--auth-secret", secret]);
  const anon = connect(srv.url, { WebSocket, reconnect: false });
  await assert.rejects(anon.publish("chat.x", 1), (e) => e.code === "unavailable");
  await assert.rejects(anon.pull("q"), (e) => e.code === "unauthorized");
  const ok = connect(srv.url, { WebSocket, token });
  assert.equal((await ok.publish("chat.x", 1)).offset, 1);
  await assert.rejects(ok.publish("news.x", 1), (e) => e.code === "forbidden");
  await ok.enqueue("q", 1);
  anon.close(); ok.close();
  await srv.dispose();
});

test("onPresence hears direct subscribers join and leave", async () => {
  const a = open(), b = open();
  const events = [];
  await a.subscribe("room.js", () => {}, { onPresence: (e) => events.push([e.op, e.subscribers]) }).ready;
  const sub = b.subscribe("room.js", () => {});
  await sub.ready;
  await waitFor(() => events.length === 1, 3000, "join");
  await sub.unsubscribe();
  await waitFor(() => events.length === 2, 3000, "leave");
  assert.deepEqual(events, [["join", 2], ["leave", 1]]);
  a.close(); b.close();
});

test("a request answered owner_unavailable is sent again with backoff, within ownerRetryMs", async () => {
  // A stand-in node: the owner is away for its first two answers, then back.
  const http = await import("node:http");
  let calls = 0;
  const stub = http.createServer((req, res) => {
    if (req.method !== "POST") { // (the client's WebSocket handshake)
      res.writeHead(404);
      res.end();
      return;
    }
    calls++;
    req.resume();
    req.on("end", () => {
      if (calls <= 2) {
        res.writeHead(503, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: { code: "owner_unavailable", message: "no owner" } }));
      } else {
        res.writeHead(201, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ id: "0000000000000001" }));
      }
    });
  });
  await new Promise((r) => stub.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${stub.address().port}`;
  try {
    const patient = connect(url, { WebSocket, reconnect: false });
    const t0 = Date.now();
    const r = await patient.enqueue("q", { n: 1 });
    assert.equal(r.id, "0000000000000001");
    assert.equal(calls, 3);
    assert.ok(Date.now() - t0 >= 300, "waited 100 + 200 ms between the tries");
    patient.close();
    calls = 0;
    const impatient = connect(url, { WebSocket, reconnect: false, ownerRetryMs: 0 });
    await assert.rejects(impatient.enqueue("q", { n: 2 }), (e) => e.code === "owner_unavailable");
    assert.equal(calls, 1);
    impatient.close();
  } finally {
    stub.close();
  }
});
