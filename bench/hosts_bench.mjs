// Remote-host turns next to in-process C++ turns, in one run of the real binary: a socket frame →
// the object's turn (one storage write, committed) → the frame back on the socket after the
// commit. One object with one frame in flight (the round trip), one object with 16, and 1,000
// objects (one socket each) with 4 each; counts only frames that came back, checks their order (no loss, no
// duplicate), and reports turns/s with p50/p99 round trips, each shape run `runs` times with the
// median.
//
//   node bench/hosts_bench.mjs [--runs 3] [--seconds 5] [--durability sync]
//
// ROOST_BINARY and ROOST_BENCH_ECHO point at the binary and libroost_bench_echo.so (default:
// build/).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startRoost, webSocketImpl } from "../sdk/js/test/roost_server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const runs = Number(arg("runs", 3));
const seconds = Number(arg("seconds", 5));
const durability = arg("durability", "sync");
const plugin = process.env.ROOST_BENCH_ECHO || join(here, "../build/bench/libroost_bench_echo.so");
const WebSocket = await webSocketImpl();

const dataDir = mkdtempSync(join(tmpdir(), "roost-hosts-bench-"));
const server = await startRoost(["--actors", plugin, "--durability", durability, "--app-routes", "/echo",
  "--max-connections-per-ip", "4096"], { dataDir });
const host = spawn(process.execPath, [join(here, "hosts/echo_host.mjs"), server.url], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve, reject) => {
  let out = "";
  host.stdout.on("data", (d) => { out += d; if (out.includes("REGISTERED")) resolve(); });
  host.on("exit", (code) => reject(new Error(`host exited ${code}`)));
});

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = (e) => reject(e.error || new Error(`cannot open ${url}`));
  });
}

async function shape(cls, objects, window, run) {
  const base = server.url.replace("http", "ws");
  const sockets = [];
  for (let i = 0; i < objects; i += 1) {
    sockets.push(await open(`${base}/v1/objects/${cls}/r${run}-${objects}-${window}-${i}/connect`));
  }
  const rtts = [];
  let received = 0;
  let broken = 0;
  const deadline = Date.now() + seconds * 1000;
  let started;
  await new Promise((resolve) => {
    let open = sockets.length;
    sockets.forEach((ws) => {
      let next = 0;
      let expect = 0;
      const sentAt = new Map();
      const send = () => {
        sentAt.set(next, process.hrtime.bigint());
        ws.send(String(next));
        next += 1;
      };
      ws.onmessage = (e) => {
        const seq = Number(String(e.data));
        if (seq !== expect) broken += 1;  // lost, duplicated or out of order
        expect = seq + 1;
        rtts.push(Number(process.hrtime.bigint() - sentAt.get(seq)) / 1e6);
        sentAt.delete(seq);
        received += 1;
        if (Date.now() < deadline) send();
        else if (sentAt.size === 0 && --open === 0) resolve();
      };
      for (let i = 0; i < window; i += 1) send();
    });
    started = process.hrtime.bigint();
  });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  for (const ws of sockets) ws.close();
  rtts.sort((a, b) => a - b);
  const pct = (p) => rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * p))];
  return { rate: received / elapsed, p50: pct(0.5), p99: pct(0.99), received, broken };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`# hosts_bench: durability ${durability}, ${seconds} s × ${runs} runs, ${new Date().toISOString()}`);
console.log("| class | objects × frames in flight each | turns/s (runs) | median turns/s | p50 ms | p99 ms | order errors |");
console.log("|---|---|---|---|---|---|---|");
try {
  // One frame at a time to one object: the round trip. Then one busy object, then many.
  for (const [objects, window] of [[1, 1], [1, 16], [1000, 4]]) {
    for (const cls of ["Echo", "EchoJs"]) {
      const results = [];
      for (let run = 0; run < runs; run += 1) results.push(await shape(cls, objects, window, run));
      const m = median(results.map((r) => r.rate));
      const mid = results.find((r) => r.rate === m);
      console.log(`| ${cls === "Echo" ? "C++ in-process" : "JS remote host"} | ${objects} × ${window} | ${results.map((r) => Math.round(r.rate)).join(", ")} | ${Math.round(m)} | ${mid.p50.toFixed(2)} | ${mid.p99.toFixed(2)} | ${results.reduce((a, r) => a + r.broken, 0)} |`);
    }
  }
} finally {
  host.kill();
  await server.dispose();
  rmSync(dataDir, { recursive: true, force: true });
}
