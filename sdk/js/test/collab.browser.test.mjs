// The collaborative editor (examples/collab) in real headless Chromium: two pages type into the
// same document at once and converge to identical text, equal to the object's own copy; the
// server restarts, both pages reconnect, type again, converge again, and a fresh page loads the
// same text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startRoost } from "./roost_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const plugin = process.env.ROOST_COLLAB_PLUGIN || join(here, "../../../build/examples/collab/libroost_collab.so");
const dataDir = mkdtempSync(join(tmpdir(), "roost-collab-"));
const args = ["--actors", plugin, "--static", join(here, "../../../examples/collab/web")];
let server;
let browser;

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}`);
  assert.ok(existsSync(plugin), `collab plugin not built at ${plugin}`);
  server = await startRoost(args, { dataDir });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await server?.dispose();
  rmSync(dataDir, { recursive: true, force: true });
});

async function openDoc(name) {
  const page = await browser.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e));
  await page.goto(`${server.url}/?doc=shared&name=${name}`);
  await online(page);
  return page;
}

const online = (page) => page.waitForFunction(() => document.getElementById("status").textContent === "online",
  null, { timeout: 20000 });
const text = (page) => page.$eval("#text", (t) => t.value);
const settled = (page) => page.waitForFunction(() => {
  const s = window.collab.state;
  return s.ready && !s.inflight && !s.buffer;
}, null, { timeout: 20000 });

async function typeAt(page, where, words) {
  await page.focus("#text");
  await page.keyboard.press(where === "start" ? "Control+Home" : "Control+End");
  await page.keyboard.type(words, { delay: 12 });
}

async function serverText() {
  const res = await fetch(`${server.url}/v1/objects/doc/shared/call`, { method: "POST", body: "{}" });
  assert.equal(res.status, 200);
  return (await res.json()).text;
}

async function converge(a, b) {
  await settled(a);
  await settled(b);
  await a.waitForFunction((other) => document.getElementById("text").value === other, await text(b), { timeout: 20000 })
    .catch(() => {});
  const [ta, tb] = [await text(a), await text(b)];
  assert.equal(ta, tb, "both pages show the same text");
  assert.equal(ta, await serverText(), "and it is the object's text");
  return ta;
}

test("two browsers edit one document at once and converge, also across a server restart", async () => {
  const alice = await openDoc("alice");
  const bob = await openDoc("bob");
  await alice.waitForFunction(() => document.getElementById("users").textContent.includes("bob"));
  // Carets at distinct places: with both at one spot, concurrent typing interleaves by design.
  await typeAt(alice, "end", "\n--- middle ---\n");
  await converge(alice, bob);

  await Promise.all([
    typeAt(alice, "end", "alice types at the end. "),
    typeAt(bob, "start", "Bob starts here! "),
  ]);
  let t = await converge(alice, bob);
  assert.ok(t.includes("alice types at the end. "), t);
  assert.ok(t.includes("Bob starts here! "), t);

  // Both type into the middle at once, then in turns.
  await Promise.all([typeAt(alice, "start", "[A1]"), typeAt(bob, "end", "[B1]")]);
  await Promise.all([typeAt(alice, "start", "[A2]"), typeAt(bob, "end", "[B2]")]);
  t = await converge(alice, bob);
  for (const w of ["[A1]", "[B1]", "[A2]", "[B2]"]) assert.ok(t.includes(w), `${w} in ${t}`);

  // The server restarts; the document is still there, the pages reconnect and keep editing.
  await server.stop();
  await alice.waitForFunction(() => document.getElementById("status").textContent !== "online");
  server = await startRoost(args, { dataDir, port: server.port });
  await online(alice);
  await online(bob);
  assert.equal(await serverText(), t);
  await Promise.all([typeAt(alice, "start", "after restart A. "), typeAt(bob, "end", " after restart B.")]);
  const t2 = await converge(alice, bob);
  assert.ok(t2.includes("after restart A. ") && t2.includes(" after restart B."), t2);

  // The concurrency was real: edits crossed in flight and were transformed.
  const crossed = (await alice.evaluate(() => window.collab.state.transformed)) +
    (await bob.evaluate(() => window.collab.state.transformed));
  assert.ok(crossed > 0, "some edits were transformed against concurrent ones");

  // A page opened now loads the same text.
  const carol = await openDoc("carol");
  assert.equal(await text(carol), t2);
  for (const p of [alice, bob, carol]) assert.deepEqual(p.errors, []);
});
