// The chat example in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): two pages exchange messages; one drops its connection, reconnects and
// recovers what it missed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startRoost } from "./roost_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
let server;
let browser;

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath} (scripts/install-deps.sh installs it)`);
  server = await startRoost(["--static", join(here, "../../../examples/chat"),
    "--channel-namespaces", "chat.:history=100,join_leave=true"]);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function openChat(name, extra = "") {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`${server.url}/?room=general&name=${name}${extra}`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "online", null, { timeout: 10000 });
  page.errors = errors;
  return page;
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

const messages = (page) => page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));

test("two browsers chat; one reconnects and recovers what it missed", async () => {
  const alice = await openChat("alice");
  const bob = await openChat("bob", "&reconnectMs=1500");

  await say(alice, "hello bob");
  await bob.waitForFunction(() => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("hello bob")));
  await say(bob, "hi alice");
  await alice.waitForFunction(() => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("hi alice")));

  // Bob's network drops; Alice talks while he is away.
  await bob.evaluate(() => window.chat.client._ws.close());
  await bob.waitForFunction(() => document.getElementById("status").textContent !== "online");
  await say(alice, "while you were away 1");
  await say(alice, "while you were away 2");
  await bob.waitForFunction(() => window.chat.received.length >= 4, null, { timeout: 10000 });
  await bob.waitForFunction(() => document.getElementById("status").textContent === "online");

  const got = await bob.evaluate(() => window.chat.received.map((m) => [m.text, m.offset]));
  assert.deepEqual(got.map((g) => g[0]), ["hello bob", "hi alice", "while you were away 1", "while you were away 2"]);
  const offsets = got.map((g) => g[1]);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));  // in order, no duplicates
  assert.equal(new Set(offsets).size, offsets.length);

  // A late joiner sees recent history; the lobby lists activity; presence counts people.
  const carol = await openChat("carol");
  await carol.waitForFunction(() => window.chat.received.length >= 4);
  const lobby = await alice.$$eval("#lobby li", (lis) => lis.length);
  assert.ok(lobby >= 4, `lobby shows ${lobby} lines`);
  await alice.waitForFunction(() => document.getElementById("presence").textContent === "3 here", null, { timeout: 8000 });

  mkdirSync(join(here, "../../../build"), { recursive: true });
  await bob.screenshot({ path: join(here, "../../../build/chat-bob.png") });
  for (const p of [alice, bob, carol]) assert.deepEqual(p.errors, []);
});
