#!/usr/bin/env python3
"""A worker in Python (standard library only) that Roost pushes jobs to (docs/sidecar.md).

Roost POSTs each message of the queue to http://127.0.0.1:$PORT/jobs; this worker answers 200 to
acknowledge it, or 500 to have it retried (the queue's retry delay, attempts, dead letters). It
talks back to Roost over plain HTTP on the node's loopback listener ($ROOST_URL): it enqueues a
result, publishes a notice on a channel, tells an object and calls it.

    PORT=3000 ROOST_URL=http://127.0.0.1:8080 python3 examples/sidecar/worker.py
    roost queue create jobs --push-url http://127.0.0.1:3000/jobs --push-concurrency 8
"""
import http.server
import json
import os
import urllib.request

ROOST = os.environ.get("ROOST_URL", "http://127.0.0.1:8080")
PORT = int(os.environ.get("PORT", "3000"))


def roost(path, body):
    """POST a JSON body to Roost's REST API; the answer as JSON."""
    req = urllib.request.Request(ROOST + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


class Worker(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Roost reuses its connections

    def do_POST(self):
        job = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        attempts = int(self.headers.get("Roost-Attempts", "1"))
        status = 200
        if job.get("flaky") and attempts == 1:
            status = 500  # fails once: Roost delivers it again (Roost-Attempts: 2)
        else:
            n = job["n"]
            roost("/v1/queues/results/messages", {"body": {"n": n, "square": n * n, "by": "python"}})
            roost("/v1/channels/jobs.done/publish", {"n": n})
            roost("/v1/objects/counter/jobs-done/messages", {"add": 1})
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Worker)
    print(f"worker listening on http://127.0.0.1:{server.server_address[1]}/jobs", flush=True)
    server.serve_forever()
