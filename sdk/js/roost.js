// Roost browser client: broadcast channels over WebSocket and the queue HTTP API.
// An ES module with no dependencies and no build step. Served by every node at /roost.js.
//
//   import { connect } from "/roost.js";
//   const roost = connect("http://127.0.0.1:8080", { token });
//   const sub = roost.subscribe("chat.room1", (data, meta) => console.log(data, meta.offset),
//                               { recent: 20 });   // also replay up to 20 kept messages
//   await roost.publish("chat.room1", { text: "hi" });
//   await roost.enqueue("jobs", { task: "resize" });
//   const doc = roost.object("doc", "welcome");           // an object mailbox
//   await doc.tell({ op: "touch" });                      // durable, 202 after commit
//   const reply = await doc.call({ op: "get" });          // on_call's reply
//   const sock = doc.connect({ onMessage: (text) => … }); // a WebSocket attached to the object

const DEFAULTS = { reconnect: true, minDelayMs: 250, maxDelayMs: 10000, requestTimeoutMs: 10000, ownerRetryMs: 5000 };

export class RoostError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "RoostError";
    this.code = code;
  }
}

function isPattern(channel) {
  return channel.split(".").some((t) => t === "*" || t === ">");
}

function baseUrl(url) {
  if (url) return url.replace(/\/+$/, "");
  if (typeof location !== "undefined") return location.origin;
  throw new RoostError("invalid_argument", "connect() needs a URL outside a browser");
}

export class Subscription {
  constructor(client, channel, onMessage, handlers) {
    this.client = client;
    this.channel = channel;
    this.onMessage = onMessage;
    this.handlers = handlers || {};
    this.epoch = null;  // for resume (concrete channels)
    this.offset = 0;
    this.active = true;
    this.ready = null;  // a promise settled by the server's answer to the latest subscribe
  }
  unsubscribe() {
    if (!this.active) return Promise.resolve();
    this.active = false;
    this.client._subs.delete(this.channel);
    return this.client._request({ op: "unsubscribe", channel: this.channel }).catch(() => {});
  }
}

export class Client {
  constructor(url, options = {}) {
    this.url = baseUrl(url);
    this.options = { ...DEFAULTS, ...options };
    this._WS = this.options.WebSocket || globalThis.WebSocket;
    this._subs = new Map();
    this._pending = new Map();
    this._nextId = 1;
    this._ws = null;
    this._open = false;
    this._closed = false;
    this._attempt = 0;
    this._listeners = new Map();
    this._waiters = [];
    this._connect();
  }

  // Events: "open", "close", "reconnecting" (delay ms), "lagged" ({dropped}), "error".
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  get connected() {
    return this._open;
  }

  subscribe(channel, onMessage, handlers) {
    if (this._subs.has(channel)) throw new RoostError("conflict", `already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, onMessage, handlers);
    this._subs.set(channel, sub);
    sub.ready = this._subscribe(sub);
    sub.ready.catch(() => {});
    return sub;
  }

  // With { ack: false } the publish is fire-and-forget (no id, no answer): the promise resolves
  // once it is handed to the socket, and a failure arrives as an "error" event.
  publish(channel, data, options = {}) {
    if (options.ack === false) {
      return this._whenOpen().then(() => { this._ws.send(JSON.stringify({ op: "publish", channel, data })); });
    }
    return this._request({ op: "publish", channel, data });
  }

  close() {
    this._closed = true;
    this._open = false;
    if (this._ws) this._ws.close(1000, "client closed");
    this._failPending(new RoostError("unavailable", "client closed"));
  }

  // ---- queues over HTTP ----
  enqueue(queue, body, options = {}) {
    const msg = { body, ...options };
    return this._http("POST", `/v1/queues/${encodeURIComponent(queue)}/messages`, msg);
  }
  enqueueBatch(queue, messages) {
    return this._http("POST", `/v1/queues/${encodeURIComponent(queue)}/messages`, { messages });
  }
  pull(queue, options = {}) {
    return this._http("POST", `/v1/queues/${encodeURIComponent(queue)}/messages/pull`, options)
      .then((r) => r.messages);
  }
  ack(queue, { acks = [], retries = [] } = {}) {
    const norm = (x) => (typeof x === "string" ? { lease_id: x } : x);
    return this._http("POST", `/v1/queues/${encodeURIComponent(queue)}/messages/ack`,
      { acks: acks.map(norm), retries: retries.map(norm) });
  }

  // ---- objects ----
  object(objectClass, name) {
    return new ObjectStub(this, objectClass, name);
  }

  // ---- internals ----
  _emit(event, arg) {
    for (const fn of this._listeners.get(event) || []) {
      try { fn(arg); } catch (e) { /* a listener's error is its own */ }
    }
  }

  // A request answered owner_unavailable (a mesh: its shard's owner is down or was just
  // replaced; nothing was applied) is sent again with backoff, 100 ms doubling to 1 s, for up to
  // options.ownerRetryMs (0 = never).
  async _http(method, path, body, raw = false) {
    const started = Date.now();
    for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
      try {
        return await this._httpOnce(method, path, body, raw);
      } catch (e) {
        const budget = this.options.ownerRetryMs;
        if (!(e instanceof RoostError) || e.code !== "owner_unavailable" || !budget ||
            Date.now() + delay - started >= budget || this._closed) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async _httpOnce(method, path, body, raw) {
    const headers = { "Content-Type": "application/json" };
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    const res = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (raw && res.ok) return { text, contentType: res.headers.get("content-type") || "" };
    const json = text ? JSON.parse(text) : {};
    if (!res.ok) {
      const e = json.error || {};
      throw new RoostError(e.code || `http_${res.status}`, e.message || res.statusText);
    }
    return json;
  }

  _wsUrl() {
    let u = this.url.replace(/^http/, "ws") + "/v1/ws";
    if (this.options.token) u += `?token=${encodeURIComponent(this.options.token)}`;
    return u;
  }

  _connect() {
    if (this._closed) return;
    const ws = new this._WS(this._wsUrl());
    this._ws = ws;
    ws.onopen = () => {
      this._open = true;
      this._attempt = 0;
      for (const w of this._waiters.splice(0)) w.resolve();
      this._emit("open");
      for (const sub of this._subs.values()) {
        sub.ready = this._subscribe(sub);
        sub.ready.catch(() => {});
      }
    };
    // One WebSocket message may carry several frames, one JSON object per line.
    ws.onmessage = (ev) => {
      const text = typeof ev.data === "string" ? ev.data : String(ev.data);
      if (text.indexOf("\n") < 0) this._onFrame(text);
      else for (const line of text.split("\n")) if (line) this._onFrame(line);
    };
    ws.onerror = () => this._emit("error", new RoostError("unavailable", "websocket error"));
    ws.onclose = (ev) => {
      const wasOpen = this._open;
      this._open = false;
      if (this._ws === ws) this._ws = null;
      this._failPending(new RoostError("unavailable", `connection closed (${ev.code})`));
      if (wasOpen) this._emit("close", { code: ev.code, reason: ev.reason });
      if (this._closed || !this.options.reconnect) {
        for (const w of this._waiters.splice(0)) w.reject(new RoostError("unavailable", "not connected"));
        return;
      }
      // Exponential backoff with jitter, so that a restarted node is not stampeded.
      const cap = Math.min(this.options.maxDelayMs, this.options.minDelayMs * 2 ** this._attempt);
      const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
      this._attempt = Math.min(this._attempt + 1, 16);
      this._emit("reconnecting", delay);
      setTimeout(() => this._connect(), delay);
    };
  }

  _whenOpen() {
    if (this._open) return Promise.resolve();
    if (this._closed) return Promise.reject(new RoostError("unavailable", "client closed"));
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  async _request(frame) {
    await this._whenOpen();
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RoostError("timeout", `no answer to ${frame.op}`));
      }, this.options.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _subscribe(sub) {
    const frame = { op: "subscribe", channel: sub.channel };
    if (sub.epoch && !isPattern(sub.channel)) frame.since = { epoch: sub.epoch, offset: sub.offset };
    else if (sub.handlers.recent) frame.recent = sub.handlers.recent;
    return this._request(frame).then((ok) => {
      if (ok.epoch !== undefined && !sub.epoch) {
        // Recovered messages (the latest `recovered`) follow this answer.
        sub.epoch = ok.epoch;
        sub.offset = ok.offset - (ok.recovered || 0);
      }
      return ok;
    });
  }

  _failPending(err) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  _onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    switch (f.op) {
      case "message": {
        // The server sends a message once per connection; every local subscription it matches
        // gets it.
        for (const sub of this._subs.values()) {
          if (sub.channel !== f.channel && !matches(sub.channel, f.channel)) continue;
          if (!isPattern(sub.channel)) {
            if (sub.epoch === f.epoch && f.offset <= sub.offset) continue;  // seen already
            sub.epoch = f.epoch;
            sub.offset = f.offset;
          }
          try { sub.onMessage(f.data, { channel: f.channel, offset: f.offset, epoch: f.epoch }); } catch (e) { /* handler's own */ }
        }
        break;
      }
      case "ok":
      case "pong": {
        const p = this._pending.get(f.id);
        if (p) { clearTimeout(p.timer); this._pending.delete(f.id); p.resolve(f); }
        break;
      }
      case "error": {
        const p = this._pending.get(f.id);
        const err = new RoostError(f.code, f.message);
        if (p) { clearTimeout(p.timer); this._pending.delete(f.id); p.reject(err); } else this._emit("error", err);
        break;
      }
      case "reset": {
        const sub = this._subs.get(f.channel);
        if (sub) {
          sub.epoch = f.epoch;
          sub.offset = f.offset;
          if (sub.handlers.onReset) sub.handlers.onReset(f);
        }
        this._emit("reset", f);
        break;
      }
      case "join":
      case "leave":
        // Presence events (namespaces with join_leave): to the subscriptions that asked for them.
        for (const sub of this._subs.values()) {
          if (sub.channel !== f.channel && !matches(sub.channel, f.channel)) continue;
          if (sub.handlers.onPresence) {
            try { sub.handlers.onPresence({ op: f.op, channel: f.channel, subscribers: f.subscribers }); } catch (e) { /* handler's own */ }
          }
        }
        break;
      case "lagged":
        this._emit("lagged", f);
        break;
      default:
        break;
    }
  }
}

// An object: class + name. tell() and call() go over HTTP; connect() attaches a WebSocket.
export class ObjectStub {
  constructor(client, objectClass, name) {
    this.client = client;
    this.objectClass = objectClass;
    this.name = name;
    this.path = `/v1/objects/${encodeURIComponent(objectClass)}/${encodeURIComponent(name)}`;
  }
  // Durable send; resolves to { seq } once the message is in the mailbox.
  tell(data) {
    return this.client._http("POST", `${this.path}/messages`, data);
  }
  // Resolves to the reply (parsed when it is JSON); rejects with RoostError (call_timeout, …).
  async call(data, { timeoutMs } = {}) {
    const q = timeoutMs ? `?timeout_ms=${timeoutMs}` : "";
    const r = await this.client._http("POST", `${this.path}/call${q}`, data, true);
    return r.contentType.startsWith("application/json") ? JSON.parse(r.text) : r.text;
  }
  // Attaches a WebSocket. Reconnects with jittered backoff after a lost connection (not after
  // close(), a refusal, or a close code 4000-4999 the object chose); onOpen runs on every
  // (re)connection, so the application can resynchronise there.
  connect(handlers = {}) {
    return new ObjectSocket(this, handlers);
  }
}

export class ObjectSocket {
  constructor(stub, handlers) {
    this.stub = stub;
    this.handlers = handlers;
    this._closed = false;
    this._attempt = 0;
    this._ws = null;
    this._queue = [];
    this.open = false;
    this._connect();
  }
  // Sends a text frame (objects are JSON-encoded); queued while (re)connecting.
  send(data) {
    const text = typeof data === "string" ? data : JSON.stringify(data);
    if (this.open) this._ws.send(text);
    else this._queue.push(text);
  }
  close(code = 1000, reason = "client closed") {
    this._closed = true;
    this.open = false;
    if (this._ws) this._ws.close(code, reason);
  }
  _connect() {
    const c = this.stub.client;
    const WS = c._WS;
    let url = c.url.replace(/^http/, "ws") + `${this.stub.path}/connect`;
    const params = new URLSearchParams(this.handlers.query || {});
    if (c.options.token) params.set("token", c.options.token);
    const qs = params.toString();
    if (qs) url += `?${qs}`;
    const ws = new WS(url);
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.open = true;
      this._attempt = 0;
      if (this.handlers.onOpen) this.handlers.onOpen(this);
      const q = this._queue;
      this._queue = [];
      for (const t of q) ws.send(t);
    };
    ws.onmessage = (ev) => {
      if (this.handlers.onMessage) this.handlers.onMessage(typeof ev.data === "string" ? ev.data : ev.data.toString());
    };
    ws.onclose = (ev) => {
      this.open = false;
      if (this.handlers.onClose) this.handlers.onClose(ev.code, ev.reason);
      const chosen = ev.code >= 4000 && ev.code <= 4999;
      if (this._closed || chosen || !c.options.reconnect) return;
      if (!opened && this._attempt > 0 && this.handlers.onRefused) this.handlers.onRefused();
      const base = Math.min(c.options.maxDelayMs, c.options.minDelayMs * 2 ** this._attempt);
      this._attempt += 1;
      setTimeout(() => { if (!this._closed) this._connect(); }, base / 2 + Math.random() * base / 2);
    };
    ws.onerror = () => {};
  }
}

// NATS-style matching: '*' one token, '>' the rest.
export function matches(pattern, subject) {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

export function connect(url, options) {
  return new Client(url, options);
}
