// A worker in Node.js (no packages) that Roost pushes jobs to (docs/sidecar.md): the same as
// worker.py. 200 acknowledges a job, 500 has it retried; the worker talks back to Roost over
// plain HTTP (enqueue, publish, tell, call).
//
//   PORT=3001 ROOST_URL=http://127.0.0.1:8080 node examples/sidecar/worker.mjs
//   roost queue create jobs --push-url http://127.0.0.1:3001/jobs --push-concurrency 8
import http from "node:http";

const ROOST = process.env.ROOST_URL ?? "http://127.0.0.1:8080";
const PORT = Number(process.env.PORT ?? 3001);

async function roost(path, body) {
  const resp = await fetch(ROOST + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${await resp.text()}`);
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

const server = http.createServer(async (req, res) => {
  let raw = "";
  for await (const chunk of req) raw += chunk;
  let status = 200;
  try {
    const job = JSON.parse(raw);
    const attempts = Number(req.headers["roost-attempts"] ?? 1);
    if (job.flaky && attempts === 1) {
      status = 500;  // fails once: delivered again
    } else {
      await roost("/v1/queues/results/messages", { body: { n: job.n, square: job.n * job.n, by: "node" } });
      await roost("/v1/channels/jobs.done/publish", { n: job.n });
      await roost("/v1/objects/counter/jobs-done/messages", { add: 1 });
    }
  } catch (e) {
    console.error(e);
    status = 500;
  }
  res.writeHead(status, { "content-length": 0 });
  res.end();
});
server.keepAliveTimeout = 60_000;
server.listen(PORT, "127.0.0.1", () => console.log(`worker listening on http://127.0.0.1:${server.address().port}/jobs`));
