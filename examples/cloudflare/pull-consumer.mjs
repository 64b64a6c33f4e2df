// A Cloudflare Queues HTTP pull consumer, written the way Cloudflare's documentation shows one
// (developers.cloudflare.com/queues/configuration/pull-consumers and "Publish to a Queue via
// HTTP"): it publishes COUNT jobs, then pulls batches, acknowledges what it handled and retries
// every tenth job once with a delay. Against Roost only the base URL and the token change:
//
//   CF_API=http://127.0.0.1:8080/client/v4 QUEUES_API_TOKEN=… CF_ACCOUNT_ID=any QUEUE_ID=jobs \
//     node examples/cloudflare/pull-consumer.mjs [COUNT]
//
// Prints one JSON line: {"published","processed","retried","duplicates"}; exits 1 on any failure.
const API = process.env.CF_API ?? "https://api.cloudflare.com/client/v4";
const { CF_ACCOUNT_ID, QUEUE_ID, QUEUES_API_TOKEN } = process.env;
const COUNT = Number(process.argv[2] ?? 200);
const queue = `${API}/accounts/${CF_ACCOUNT_ID}/queues/${QUEUE_ID}`;

async function call(path, body) {
  const resp = await fetch(`${queue}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${QUEUES_API_TOKEN}` },
    body: JSON.stringify(body),
  });
  const json = await resp.json();
  if (!resp.ok || !json.success) throw new Error(`${path}: ${resp.status} ${JSON.stringify(json.errors)}`);
  return json.result;
}

// Publish: batches of up to 100 messages (Cloudflare's limit), JSON bodies.
for (let i = 0; i < COUNT; i += 100) {
  const messages = [];
  for (let k = i; k < Math.min(i + 100, COUNT); k++) messages.push({ body: { job: k }, content_type: "json" });
  await call("/messages/batch", { messages });
}

// "json" and "bytes" bodies arrive base64-encoded, "text" as is (the guide's "Content types").
function decode(m) {
  const type = m.metadata?.["CF-Content-Type"] ?? "json";
  if (type === "text") return m.body;
  const raw = Buffer.from(m.body, "base64");
  return type === "json" ? JSON.parse(raw.toString("utf8")) : raw;
}

const done = new Set();
let retried = 0, duplicates = 0;
const deadline = Date.now() + 60_000;
while (done.size < COUNT) {
  if (Date.now() > deadline) throw new Error(`timed out with ${done.size} of ${COUNT} processed`);
  const { messages } = await call("/messages/pull", { visibility_timeout: 10000, batch_size: 50 });
  if (messages.length === 0) {
    await new Promise((r) => setTimeout(r, 200));  // short polling: nothing now, ask again soon
    continue;
  }
  const acks = [], retries = [];
  for (const m of messages) {
    const { job } = decode(m);
    if (job % 10 === 0 && m.attempts === 1) {
      retries.push({ lease_id: m.lease_id, delay_seconds: 1 });
      retried++;
      continue;
    }
    if (done.has(job)) duplicates++;
    done.add(job);
    acks.push({ lease_id: m.lease_id });
  }
  const result = await call("/messages/ack", { acks, retries });
  if (result.ackCount !== acks.length || result.retryCount !== retries.length) {
    throw new Error(`ack: ${JSON.stringify(result)}`);
  }
}
console.log(JSON.stringify({ published: COUNT, processed: done.size, retried, duplicates }));
