// The collaborative editor (examples/collab, the C++ document as a plugin) in real headless
// Chromium: the scenario of collab_scenario.mjs.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startRoost } from "./roost_server.mjs";
import { collabScenario } from "./collab_scenario.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const plugin = process.env.ROOST_COLLAB_PLUGIN || join(here, "../../../build/examples/collab/libroost_collab.so");
const dataDir = mkdtempSync(join(tmpdir(), "roost-collab-"));
const args = ["--actors", plugin, "--static", join(here, "../../../examples/collab/web")];
after(() => rmSync(dataDir, { recursive: true, force: true }));

test("two browsers edit one document at once and converge, also across a server restart", async () => {
  assert.ok(existsSync(plugin), `collab plugin not built at ${plugin}`);
  await collabScenario({
    startServer: (port) => startRoost(args, { dataDir, port }),
    async serverText(server) {
      const res = await fetch(`${server.url}/v1/objects/doc/shared/call`, { method: "POST", body: "{}" });
      assert.equal(res.status, 200);
      return (await res.json()).text;
    },
  });
});
