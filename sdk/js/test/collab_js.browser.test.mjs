// The collaborative editor with its document in JavaScript (examples/collab-js: Cloudflare's
// Durable Objects API on a remote host) in real headless Chromium: the scenario of
// collab_scenario.mjs, the node restarting under the host, which reconnects by itself.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startRoost } from "./roost_server.mjs";
import { collabScenario } from "./collab_scenario.mjs";
import { start as startHost } from "../../../examples/collab-js/host.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), "roost-collab-js-"));
const args = ["--static", join(here, "../../../examples/collab/web"), "--app-routes", "/api", "--remote-classes", "doc"];
let host;
after(() => {
  host?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test("two browsers edit one JavaScript document at once and converge, also across a node restart", async () => {
  await collabScenario({
    async startServer(port) {
      const server = await startRoost(args, { dataDir, port });
      if (!host) host = await startHost(server.url, { minDelayMs: 50, maxDelayMs: 300 });
      return server;
    },
    async serverText(server) {
      const res = await fetch(`${server.url}/api/docs/shared`);
      assert.equal(res.status, 200);
      return (await res.json()).text;
    },
  });
});
