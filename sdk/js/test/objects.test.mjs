// roost.js objects against the real binary with the counter example's plugin: tell, call,
// connect (frames after the commit), errors, and a socket that reconnects after a restart.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, RoostError } from "../roost.js";
import { startRoost, webSocketImpl, waitFor } from "./roost_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const plugin = process.env.ROOST_COUNTER_PLUGIN || join(here, "../../../build/examples/counter/libroost_counter.so");
const dataDir = mkdtempSync(join(tmpdir(), "roost-js-objects-"));
let server;
let WebSocket;
before(async () => {
  WebSocket = await webSocketImpl();
  server = await startRoost(["--actors", plugin], { dataDir });
});
after(async () => {
  await server.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

test("tell, call and an attached socket", async () => {
  const roost = connect(server.url, { WebSocket, minDelayMs: 50, maxDelayMs: 200 });
  const clicks = roost.object("counter", "js");
  const frames = [];
  let opens = 0;
  const sock = clicks.connect({ onOpen: () => { opens += 1; }, onMessage: (t) => frames.push(JSON.parse(t)) });
  await waitFor(() => sock.open, 3000, "socket open");
  const r = await clicks.tell({ add: 2 });
  assert.equal(r.seq, 1);
  await waitFor(() => frames.length === 1, 3000, "broadcast");
  assert.deepEqual(frames[0], { value: 2 });
  assert.deepEqual(await clicks.call({}), { value: 2 });

  await assert.rejects(roost.object("nosuch", "x").call({}),
    (e) => e instanceof RoostError && e.code === "class_not_found");
  await assert.rejects(roost.object("counter", "bad/name").tell({}),
    (e) => e instanceof RoostError && (e.code === "invalid_name" || e.code === "not_found"));

  // The node restarts: the socket reconnects by itself, the count survived.
  await server.stop();
  server = await startRoost(["--actors", plugin], { dataDir, port: server.port });
  await waitFor(() => sock.open && opens === 2, 10000, "reconnected");
  await clicks.tell({ add: 1 });
  await waitFor(() => frames.length === 2, 3000, "broadcast after restart");
  assert.deepEqual(frames[1], { value: 3 });
  sock.close();
  roost.close();
});
