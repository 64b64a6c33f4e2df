// Starts the real `roost` binary for JS tests (ROOST_BINARY, default ../../../build/bin/roost)
// on 127.0.0.1 with a free port and a fresh data directory.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const binary = process.env.ROOST_BINARY || join(here, "../../../build/bin/roost");

export async function startRoost(args = [], { port = 0, dataDir } = {}) {
  const dir = dataDir || mkdtempSync(join(tmpdir(), "roost-js-"));
  const child = spawn(binary, ["serve", "--data-dir", join(dir, "data"), "--http-listen", `127.0.0.1:${port}`, "--endpoint", "tcp://127.0.0.1:*", ...args],
    { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`roost did not start:\n${log}`)), 15000);
    const onData = (chunk) => {
      log += chunk;
      const m = log.match(/gateway listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`roost exited (${code}):\n${log}`)); });
  });
  child.removeAllListeners("exit");
  const stop = (signal = "SIGTERM") => new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
  return {
    url, dir, child, stop,
    port: Number(new URL(url).port),
    async dispose() { await stop(); if (!dataDir) rmSync(dir, { recursive: true, force: true }); },
  };
}

// A WebSocket implementation: the global one (Node 22+, or 20 with --experimental-websocket),
// else the `ws` package.
export async function webSocketImpl() {
  if (globalThis.WebSocket) return globalThis.WebSocket;
  return (await import("ws")).WebSocket;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(predicate, timeoutMs = 5000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}
