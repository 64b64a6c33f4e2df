// The collaborative editor scenario in real headless Chromium, shared by the C++ document
// (collab.browser.test.mjs) and the JavaScript one on a remote host (collab_js.browser.test.mjs):
// two pages type into the same document at once and converge to identical text, equal to the
// object's own copy; the server restarts, both pages reconnect, type again, converge again, and a
// fresh page loads the same text.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

// `startServer(port)` starts (or restarts, on `port`) the node with the page and the document
// class; `serverText(server)` reads the object's own text.
export async function collabScenario({ startServer, serverText: readText }) {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}`);
  let server = await startServer();
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const serverText = () => readText(server);
  try {
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
    server = await startServer(server.port);
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

  } finally {
    await browser.close();
    await server.dispose();
  }
}
