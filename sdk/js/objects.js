// Roost object host for Node.js: serve Durable-Objects-style classes, written against Cloudflare's
// API, from this process. It connects to a Roost node as a remote host (docs/hosts.md) and runs the
// turns the node sends it; the node keeps the mailboxes, storage, sockets and alarms, so every
// guarantee of docs/objects.md holds. What differs from Cloudflare is in docs/objects-js.md.
//
//   import { serve, DurableObject } from "@roost/client/objects.js";
//   export class Room extends DurableObject { async fetch(request) { … } }
//   const host = await serve({ url: "http://127.0.0.1:8080", objects: { ROOMS: Room },
//                              worker: { fetch(request, env) { … } } });
//
// No build step; needs Node 18+ and, without a global WebSocket, the `ws` package.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import { serialize, deserialize } from "node:v8";

const turnScope = new AsyncLocalStorage();  // the turn a handler's code runs in
const NativeResponse = globalThis.Response;
const upgradeTarget = Symbol("roost.upgrade");  // a front's 101 Response: which object takes the socket

const b64 = (buf) => Buffer.from(buf).toString("base64");
const unb64 = (s) => Buffer.from(s || "", "base64");
const encodeValue = (v) => b64(serialize(v));
const decodeValue = (s) => deserialize(unb64(s));

// --- Cloudflare's runtime classes --------------------------------------------------------------

// A Response that may have status 101 and carry a WebSocket (Workers' extension of fetch's
// Response; Node's refuses 101).
const statusOf = Symbol("status");
const webSocketOf = Symbol("webSocket");
export class Response extends NativeResponse {
  constructor(body, init = {}) {
    const status = init.status ?? 200;
    super(status === 101 ? null : body, status === 101 ? { ...init, status: 200 } : init);
    this[statusOf] = status;
    this[webSocketOf] = init.webSocket ?? null;
  }
  // (fetch's own Response reads these while it is being built: before the fields above exist)
  get status() { return this[statusOf] ?? super.status; }
  get ok() { return this.status >= 200 && this.status < 300; }
  get webSocket() { return this[webSocketOf] ?? null; }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }
}

export class WebSocketRequestResponsePair {
  constructor(request, response) { this.request = request; this.response = response; }
}

// The client end of a pair: what a Worker returns in its 101 Response. It stands for the browser's
// socket, which stays in the node's gateway.
class ClientEnd {
  constructor(pair) { this.pair = pair; }
  accept() { throw new Error("the client end of a WebSocketPair goes back in a 101 Response"); }
}

export class WebSocketPair {
  constructor() {
    this[0] = new ClientEnd(this);
    this[1] = new HostWebSocket(null, null);
    this[1].pair = this;
  }
}

// A WebSocket attached to an object (the server end), Cloudflare's hibernatable API.
class HostWebSocket {
  constructor(object, id) {
    this.object = object;  // ObjectState, once accepted
    this.id = id;          // the node's socket id
    this.tags = [];
    this.attachment = undefined;
    this.attachmentRaw = "";
    this.readyState = 1;
    this.pair = null;
  }
  static get OPEN() { return 1; }
  static get CLOSED() { return 3; }
  send(message) {
    if (typeof message !== "string") {
      throw new TypeError("Roost object sockets carry text frames: send a string (docs/objects-js.md)");
    }
    this.#op({ op: "send", socket: this.id, data: message });
  }
  close(code = 1000, reason = "") {
    // Codes a WebSocket endpoint may send (RFC 6455 §7.4); the node refuses the others too.
    if (!Number.isInteger(code) || !((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
        (code >= 3000 && code <= 4999))) {
      throw new TypeError(`close code ${code} may not be sent (1000-1003, 1007-1014, 3000-4999)`);
    }
    if (new TextEncoder().encode(String(reason)).length > 123) throw new TypeError("a close reason is at most 123 bytes");
    this.readyState = 3;
    this.#op({ op: "close", socket: this.id, code, reason: String(reason) });
  }
  serializeAttachment(value) {
    const raw = value === undefined ? "" : encodeValue(value);
    if (raw.length > 16384) throw new RangeError("a socket attachment is at most 16 KiB serialized");
    this.attachment = value;
    this.attachmentRaw = raw;
    this.#op({ op: "attachment", socket: this.id, data: raw });
  }
  deserializeAttachment() { return this.attachment === undefined ? null : structuredClone(this.attachment); }
  accept() { throw new Error("use ctx.acceptWebSocket(ws) (hibernatable WebSockets; docs/objects-js.md)"); }
  addEventListener() { throw new Error("use the object's webSocketMessage/webSocketClose handlers"); }
  #op(frame) {
    if (!this.object) throw new Error("this WebSocket is not accepted by an object");
    this.object.effect(frame);
  }
}

export class DurableObjectId {
  constructor(namespace, name, named) { this.namespace = namespace; this.objectName = name; this.name = named ? name : undefined; }
  toString() { return this.objectName; }
  equals(other) { return other instanceof DurableObjectId && other.namespace === this.namespace && other.objectName === this.objectName; }
}

// Cloudflare's `cloudflare:workers` base class.
export class DurableObject {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}

// --- storage -----------------------------------------------------------------------------------

const DELETED = Symbol("deleted");

// ctx.storage: reads come from the node (the object's current view, earlier uncommitted turns
// included) or from this host's cache of the object, which is valid while the object stays here;
// writes are effects of the turn, committed with it.
class Storage {
  constructor(object) { this.object = object; }
  async get(keys, _options) {
    if (Array.isArray(keys)) {
      const out = new Map();
      const missing = keys.filter((k) => !this.object.cache.has(k));
      if (missing.length) {
        const r = await this.object.request({ op: "get_many", keys: missing.map(String) });
        missing.forEach((k, i) => this.object.cache.set(k, r.values[i] == null ? undefined : decodeValue(r.values[i])));
      }
      for (const k of keys) {
        const v = this.object.cache.get(k);
        if (v !== undefined) out.set(k, structuredClone(v));
      }
      return out;
    }
    const key = String(keys);
    if (!this.object.cache.has(key)) {
      const r = await this.object.request({ op: "get", key });
      this.object.cache.set(key, r.value == null ? undefined : decodeValue(r.value));
    }
    const v = this.object.cache.get(key);
    return v === undefined ? undefined : structuredClone(v);
  }
  async put(key, value, _options) {
    if (typeof key === "object" && key !== null) {
      for (const [k, v] of Object.entries(key)) this.#put(k, v);
      return;
    }
    this.#put(String(key), value);
  }
  #put(key, value) {
    if (value === undefined) throw new TypeError("storage values may not be undefined");
    this.object.effect({ op: "put", key, value: encodeValue(value) });
    this.object.cache.set(key, structuredClone(value));
  }
  async delete(keys, _options) {
    if (Array.isArray(keys)) {
      let n = 0;
      for (const k of keys) n += (await this.delete(k)) ? 1 : 0;
      return n;
    }
    const key = String(keys);
    let existed;
    if (this.object.cache.has(key)) {
      existed = this.object.cache.get(key) !== undefined;
      this.object.effect({ op: "delete", key });
    } else {
      existed = (await this.object.request({ op: "delete", key })).existed;
    }
    this.object.cache.set(key, undefined);
    return existed;
  }
  async deleteAll(_options) {
    await this.object.request({ op: "delete_all" });
    this.object.cache.clear();
  }
  async list(options = {}) {
    const r = await this.object.request({
      op: "list", prefix: options.prefix ?? "", start: options.start ?? options.startAfter ?? "",
      end: options.end ?? "", reverse: !!options.reverse, limit: options.limit ?? 0,
    });
    const out = new Map();
    for (const [k, v] of r.entries) {
      if (options.startAfter !== undefined && k === options.startAfter) continue;
      const value = decodeValue(v);
      this.object.cache.set(k, value);
      out.set(k, structuredClone(value));
    }
    if (options.startAfter !== undefined && options.limit && out.size > options.limit) {
      return new Map([...out].slice(0, options.limit));
    }
    return out;
  }
  async transaction(closure) {
    const txn = new Transaction(this);
    const result = await closure(txn);
    if (!txn.rolledBack) txn.commit();
    return result;
  }
  transactionSync(closure) {
    throw new Error("transactionSync needs synchronous storage (Cloudflare's SQLite backend); use transaction()");
  }
  async getAlarm(_options) { return this.object.alarm; }
  async setAlarm(time, _options) {
    const ms = time instanceof Date ? time.getTime() : Number(time);
    if (!Number.isFinite(ms)) throw new TypeError("setAlarm takes a Date or milliseconds since the epoch");
    this.object.effect({ op: "set_alarm", name: "alarm", time_ms: Math.round(ms), every_ms: 0 });
    this.object.alarm = Math.round(ms);
  }
  async deleteAlarm(_options) {
    this.object.effect({ op: "cancel_alarm", name: "alarm" });
    this.object.alarm = null;
  }
  async sync() {}
  get sql() { throw new Error("SQL storage is not supported (docs/objects-js.md)"); }
}

// storage.transaction(): writes wait here until the closure returns; rollback() drops them.
class Transaction {
  constructor(storage) { this.storage = storage; this.writes = new Map(); this.rolledBack = false; }
  async get(keys, options) {
    if (Array.isArray(keys)) {
      const out = await this.storage.get(keys.filter((k) => !this.writes.has(k)), options);
      for (const k of keys) {
        if (!this.writes.has(k)) continue;
        const v = this.writes.get(k);
        if (v === DELETED) out.delete(k); else out.set(k, structuredClone(v));
      }
      return out;
    }
    if (this.writes.has(keys)) {
      const v = this.writes.get(keys);
      return v === DELETED ? undefined : structuredClone(v);
    }
    return this.storage.get(keys, options);
  }
  async put(key, value) {
    if (typeof key === "object" && key !== null) {
      for (const [k, v] of Object.entries(key)) this.writes.set(k, structuredClone(v));
    } else {
      if (value === undefined) throw new TypeError("storage values may not be undefined");
      this.writes.set(String(key), structuredClone(value));
    }
  }
  async delete(keys) {
    if (Array.isArray(keys)) {
      let n = 0;
      for (const k of keys) n += (await this.delete(k)) ? 1 : 0;
      return n;
    }
    const existed = (await this.get(keys)) !== undefined;
    this.writes.set(String(keys), DELETED);
    return existed;
  }
  async list(options = {}) {
    const base = await this.storage.list({ ...options, limit: 0 });
    for (const [k, v] of this.writes) {
      const inRange = k.startsWith(options.prefix ?? "") && (options.start === undefined || k >= options.start) &&
        (options.end === undefined || k < options.end);
      if (!inRange) continue;
      if (v === DELETED) base.delete(k); else base.set(k, structuredClone(v));
    }
    let keys = [...base.keys()].sort();
    if (options.reverse) keys.reverse();
    if (options.limit) keys = keys.slice(0, options.limit);
    return new Map(keys.map((k) => [k, base.get(k)]));
  }
  rollback() { this.rolledBack = true; this.writes.clear(); }
  commit() {
    for (const [k, v] of this.writes) {
      if (v === DELETED) {
        this.storage.object.effect({ op: "delete", key: k });
        this.storage.object.cache.set(k, undefined);
      } else {
        this.storage.object.effect({ op: "put", key: k, value: encodeValue(v) });
        this.storage.object.cache.set(k, structuredClone(v));
      }
    }
  }
  getAlarm() { return this.storage.getAlarm(); }
  setAlarm(t) { return this.storage.setAlarm(t); }
  deleteAlarm() { return this.storage.deleteAlarm(); }
}

// --- one object on this host -------------------------------------------------------------------

class ObjectState {
  constructor(host, binding, name) {
    this.host = host;
    this.binding = binding;
    this.name = name;
    this.cache = new Map();
    this.alarm = null;
    this.sockets = new Map();  // node socket id → HostWebSocket
    this.autoResponse = null;
    this.turn = null;          // the turn running now
    this.blockers = [];
    this.storage = new Storage(this);
    const self = this;
    this.ctx = {
      id: new DurableObjectId(binding.className, name, true),
      storage: this.storage,
      blockConcurrencyWhile(fn) {
        const p = Promise.resolve().then(fn);
        self.blockers.push(p.catch(() => {}));
        return p;
      },
      waitUntil(p) { self.blockers.push(Promise.resolve(p).catch(() => {})); },
      acceptWebSocket(ws, tags = []) { self.accept(ws, tags); },
      getWebSockets(tag) {
        return [...self.sockets.values()].filter((ws) => ws.readyState === 1 && (tag === undefined || ws.tags.includes(tag)));
      },
      getTags(ws) { return [...ws.tags]; },
      setWebSocketAutoResponse(pair) {
        self.autoResponse = pair ?? null;
        self.effect({ op: "auto_response", request: pair ? String(pair.request) : "", response: pair ? String(pair.response) : "" });
      },
      getWebSocketAutoResponse() { return self.autoResponse; },
      getWebSocketAutoResponseTimestamp() { return null; },
      setHibernatableWebSocketEventTimeout() {},
      abort(reason) { throw new Error(`object aborted: ${reason ?? ""}`); },
    };
    this.instance = null;
  }

  activate(snapshot) {
    for (const s of snapshot.sockets || []) {
      const ws = new HostWebSocket(this, s.id);
      ws.tags = s.tags || [];
      ws.attachmentRaw = s.attachment || "";
      ws.attachment = ws.attachmentRaw ? decodeValue(ws.attachmentRaw) : undefined;
      this.sockets.set(s.id, ws);
    }
    const alarm = (snapshot.alarms || []).find((a) => a.name === "alarm");
    this.alarm = alarm ? alarm.due_ms : null;
    const Cls = this.binding.cls;
    this.instance = new Cls(this.ctx, this.host.env);
  }

  accept(ws, tags) {
    const turn = this.turn;
    if (!turn || turn.kind !== "connect" || !(ws instanceof HostWebSocket) || ws.object) {
      throw new Error("acceptWebSocket takes the server end of a WebSocketPair, in the fetch that answers an upgrade");
    }
    if (tags.length > 10) throw new RangeError("at most 10 tags a WebSocket");
    ws.object = this;
    ws.id = turn.frame.socket;
    ws.tags = tags.map(String);
    this.sockets.set(ws.id, ws);
    turn.accepted = ws;
    if (ws.tags.length) this.effect({ op: "tags", socket: ws.id, tags: ws.tags });
  }

  // An effect of the running turn: batched, in order, with the turn's next request or its end;
  // applied by the node with the turn.
  effect(frame) {
    const turn = this.current();
    turn.ops.push(frame);
    turn.opBytes += (frame.value ? frame.value.length : 0) + (frame.data ? frame.data.length : 0) + 64;
    if (turn.opBytes > 256 * 1024) this.host.flush(turn);
  }
  // An operation whose answer the turn waits for.
  request(frame) {
    const turn = this.current();
    return this.host.request(turn, frame);
  }
  current() {
    const scoped = turnScope.getStore();
    const turn = scoped && scoped.object === this ? scoped : this.turn;
    if (!turn || turn.finished) {
      throw new Error(`object ${this.binding.className}/${this.name}: storage and sockets are used within a turn (a handler call and what it awaits)`);
    }
    return turn;
  }
}

// --- namespaces and stubs ----------------------------------------------------------------------

class Namespace {
  constructor(host, className) { this.host = host; this.className = className; }
  idFromName(name) { return new DurableObjectId(this.className, String(name), true); }
  newUniqueId(_options) { return new DurableObjectId(this.className, randomBytes(32).toString("hex"), false); }
  idFromString(s) {
    if (typeof s !== "string" || !s.length) throw new TypeError("idFromString takes an id's string");
    return new DurableObjectId(this.className, s, false);
  }
  get(id, _options) { return stub(this.host, this.className, id.toString()); }
  getByName(name) { return this.get(this.idFromName(name)); }
  jurisdiction() { return this; }
}

function stub(host, className, name) {
  const base = {
    id: new DurableObjectId(className, name, false),
    name,
    async fetch(input, init) {
      const request = input instanceof Request && !init ? input : new Request(input, init);
      if ((request.headers.get("upgrade") || "").toLowerCase() === "websocket") {
        // The browser's socket stays in the node: the front hands the upgrade to the object.
        const res = new Response(null, { status: 101 });
        res[upgradeTarget] = { class: className, object: name };
        return res;
      }
      const url = new URL(request.url);
      const body = ["GET", "HEAD"].includes(request.method) ? "" : b64(await request.arrayBuffer());
      const r = await host.objectRequest({ t: "fetch", op: "fetch", class: className, object: name,
        request: { method: request.method, path: url.pathname, query: url.search.slice(1),
          headers: [...request.headers], body } });
      return new Response(r.response.status === 204 || r.response.status === 304 ? null : unb64(r.response.body),
        { status: r.response.status, headers: r.response.headers });
    },
  };
  return new Proxy(base, {
    get(target, prop) {
      if (prop in target) return target[prop];
      if (typeof prop !== "string" || prop === "then") return undefined;
      return async (...args) => {
        const r = await host.objectRequest({ t: "call", op: "call", class: className, object: name,
          type: "bytes", data: b64(serialize({ method: prop, args })) });
        const out = r.type === "bytes" ? deserialize(unb64(r.data)) : { ok: JSON.parse(r.data) };
        if (out.error !== undefined) throw new Error(out.error);
        return out.ok;
      };
    },
  });
}

// --- the host connection -----------------------------------------------------------------------

class Host {
  constructor(options) {
    this.url = options.url.replace(/\/$/, "");
    this.token = options.token;
    this.WebSocket = options.WebSocket;
    this.worker = options.worker;
    this.log = options.log ?? ((...a) => console.error("[roost host]", ...a));
    this.bindings = new Map();  // class name → { className, cls }
    this.env = { ...(options.env || {}) };
    for (const [bindingName, spec] of Object.entries(options.objects || {})) {
      const cls = typeof spec === "function" ? spec : spec.class;
      const className = (typeof spec === "function" ? undefined : spec.name) ?? cls.name;
      this.bindings.set(className, { className, cls, options: typeof spec === "function" ? {} : spec });
      this.env[bindingName] = new Namespace(this, className);
    }
    this.objects = new Map();  // "class\0name" → ObjectState
    this.pending = new Map();  // op id → { resolve, reject }
    this.nextId = 1;
    this.closed = false;
    this.ws = null;
    this.connects = 0;
    this.retryMs = options.minDelayMs ?? 100;
    this.maxDelayMs = options.maxDelayMs ?? 5000;
    this.minDelayMs = this.retryMs;
    this.ready = null;
  }

  async start() {
    const WS = this.WebSocket || globalThis.WebSocket || (await import("ws")).WebSocket;
    this.WebSocket = WS;
    await new Promise((resolve, reject) => { this.ready = { resolve, reject }; this.open(); });
    return this;
  }

  open() {
    const u = new URL(this.url + "/v1/hosts/connect");
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (this.token) u.searchParams.set("token", this.token);
    const ws = new this.WebSocket(u.toString());
    this.ws = ws;
    ws.onopen = () => {
      const classes = [...this.bindings.values()].map((b) => ({ name: b.className, ...(b.options.classOptions || {}) }));
      ws.send(JSON.stringify({ t: "register", classes, front: !!(this.worker && this.worker.fetch) }));
    };
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString()); } catch { return; }
      this.onFrame(f).catch((e) => this.log("frame failed:", e));
    };
    ws.onclose = (ev) => this.onClose(ev);
    ws.onerror = (ev) => { this.lastError = (ev && (ev.message || (ev.error && ev.error.message))) || "connection failed"; };
  }

  onClose(ev) {
    this.ws = null;
    // Everything this host held is void: the node retries the turns it had on another host.
    for (const o of this.objects.values()) if (o.turn) o.turn.finished = true;
    this.objects.clear();
    for (const p of this.pending.values()) p.reject(new Error("the host's connection to the node closed"));
    this.pending.clear();
    if (this.ready && this.connects === 0) {
      // The first connection failed (refused, or no node there): serve() rejects; later ones retry.
      this.closed = true;
      this.ready.reject(new Error(`the node refused the host: ${(ev && ev.reason) || this.lastError || ev.code}`));
      this.ready = null;
      return;
    }
    if (this.closed) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.maxDelayMs);
    setTimeout(() => { if (!this.closed) this.open(); }, delay);
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== 1) throw new Error("not connected to the node");
    this.ws.send(JSON.stringify(frame));
  }

  // The effects a turn batched so far, as one frame.
  flush(turn) {
    if (!turn.ops.length) return;
    const ops = turn.ops;
    turn.ops = [];
    turn.opBytes = 0;
    this.send({ t: "op", turn: turn.id, ops });
  }

  // An in-turn operation with an answer (after the effects batched before it).
  request(turn, frame) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, turn });
      try {
        const ops = turn.ops;
        turn.ops = [];
        turn.opBytes = 0;
        this.send({ t: "op", turn: turn.id, ops: [...ops, { id, ...frame }] });
      } catch (e) { this.pending.delete(id); reject(e); }
    }).then((r) => {
      if (r.error && frame.op !== "call" && frame.op !== "fetch") throw new Error(r.error.message);
      return r;
    });
  }

  // A call or fetch to an object: within the running turn when there is one (the node counts the
  // call chain), otherwise from the host itself (front code).
  async objectRequest(frame) {
    const turn = turnScope.getStore();
    let r;
    if (turn && !turn.finished) {
      const { t, ...op } = frame;
      r = await this.request(turn, op);
    } else {
      const id = this.nextId++;
      const { op, ...rest } = frame;
      r = await new Promise((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        try { this.send({ ...rest, id }); } catch (e) { this.pending.delete(id); reject(e); }
      });
    }
    if (r.error) {
      const e = new Error(r.error.message);
      e.code = r.error.code;
      throw e;
    }
    return r;
  }

  async onFrame(f) {
    switch (f.t) {
      case "registered":
        this.connects += 1;
        this.retryMs = this.minDelayMs;
        if (this.ready) { this.ready.resolve(); this.ready = null; }
        return;
      case "error":
        this.log("node:", f.error && f.error.message);
        if (this.ready && this.connects === 0) { this.ready.reject(new Error(f.error.message)); this.ready = null; this.closed = true; }
        return;
      case "result":
      case "reply": {
        const p = this.pending.get(f.id);
        if (p) { this.pending.delete(f.id); p.resolve(f); }
        return;
      }
      case "release":
        this.objects.delete(`${f.class}\0${f.object}`);
        return;
      case "abort": {
        for (const o of this.objects.values()) {
          if (o.turn && o.turn.id === f.turn) { o.turn.finished = true; this.objects.delete(`${o.binding.className}\0${o.name}`); }
        }
        for (const [id, p] of this.pending) if (p.turn && p.turn.id === f.turn) { this.pending.delete(id); p.reject(new Error(f.error)); }
        return;
      }
      case "turn":
        return this.runTurn(f);
      case "front":
        return this.runFront(f);
      default:
    }
  }

  async runTurn(f) {
    const key = `${f.class}\0${f.object}`;
    const binding = this.bindings.get(f.class);
    if (!binding) return this.send({ t: "fail", turn: f.turn, error: `this host has no class ${f.class}` });
    let obj = this.objects.get(key);
    const turn = { id: f.turn, kind: f.kind, frame: f, finished: false, accepted: null, ops: [], opBytes: 0 };
    try {
      if (f.activate || !obj) {
        obj = new ObjectState(this, binding, f.object);
        this.objects.set(key, obj);
        obj.turn = turn;
        turn.object = obj;
        turnScope.run(turn, () => obj.activate(f.activate || {}));
      }
      obj.turn = turn;
      turn.object = obj;
      while (obj.blockers.length) {
        const b = obj.blockers.splice(0);
        await Promise.all(b);
      }
      const done = await turnScope.run(turn, () => this.dispatch(obj, turn, f));
      while (obj.blockers.length) await Promise.all(obj.blockers.splice(0));
      if (turn.finished) return;
      turn.finished = true;
      this.send({ t: "done", turn: f.turn, ops: turn.ops, ...done });
    } catch (e) {
      if (turn.finished) return;
      turn.finished = true;
      // Its memory may be half-updated: the node resets the object and sends a snapshot next
      // time. A refused connect is an answer: the object stays as it is, here and in the node.
      if (!(e && e.reject)) this.objects.delete(key);
      try {
        this.send({ t: "fail", turn: f.turn, error: String(e && e.message ? e.message : e), reject: !!(e && e.reject) });
      } catch { /* the connection is gone: the node fails the turn itself */ }
    } finally {
      if (obj && obj.turn === turn) obj.turn = null;
    }
  }

  async dispatch(obj, turn, f) {
    const o = obj.instance;
    switch (f.kind) {
      case "message":
      case "channel":
      case "call": {
        const data = f.type === "bytes" ? unb64(f.data) : f.data;
        if (f.kind === "call") return this.rpc(o, f, data);
        const value = f.type === "json" ? JSON.parse(data) : data;
        if (typeof o.message !== "function") throw new Error(`${f.class} has no message() handler for tells`);
        await o.message(value, { seq: f.seq, attempt: f.attempt, subject: f.subject });
        return {};
      }
      case "fetch": {
        const res = await this.callFetch(o, f.request, f);
        return { response: await responseFrame(res) };
      }
      case "connect": {
        const req = f.request;
        const request = makeRequest({ method: "GET", path: req.path, query: req.query, headers: req.headers, body: "", client_address: req.client_address }, f);
        let res;
        try {
          res = await o.fetch(request);
        } catch (e) {
          throw e;
        }
        if (!res || res.status !== 101 || !turn.accepted) {
          if (turn.accepted) obj.sockets.delete(turn.accepted.id);
          const text = res ? await res.text().catch(() => "") : "";
          const e = new Error(`${res ? res.status : "no response"} ${text}`.trim().slice(0, 200));
          e.reject = true;
          throw e;
        }
        return {};
      }
      case "socket_message": {
        const ws = obj.sockets.get(f.socket);
        if (!ws) return {};
        if (typeof o.webSocketMessage === "function") await o.webSocketMessage(ws, f.data);
        return {};
      }
      case "disconnect": {
        let ws = obj.sockets.get(f.socket);
        if (!ws) {
          ws = new HostWebSocket(obj, f.socket);
          ws.tags = f.tags || [];
        }
        ws.readyState = 3;
        obj.sockets.delete(f.socket);
        if (typeof o.webSocketClose === "function") await o.webSocketClose(ws, f.code, f.reason, f.was_clean);
        return {};
      }
      case "alarm": {
        if (f.name === "alarm") obj.alarm = null;
        if (typeof o.alarm === "function") await o.alarm({ retryCount: f.retry_count, isRetry: f.retry_count > 0 });
        return {};
      }
      default:
        throw new Error(`unknown turn kind ${f.kind}`);
    }
  }

  async callFetch(o, r, f) {
    if (typeof o.fetch !== "function") return new Response("this object has no fetch()", { status: 501 });
    return o.fetch(makeRequest(r, f));
  }

  // An RPC (stub.method(...)) or a plain call: the reply is the method's result.
  async rpc(o, f, data) {
    let method, args;
    if (f.type === "bytes") {
      ({ method, args } = deserialize(data));
    } else {
      const v = JSON.parse(data);
      method = v && v.method;
      args = (v && v.args) || [];
    }
    if (typeof method !== "string" || typeof o[method] !== "function" || method === "constructor" || method.startsWith("_")) {
      throw new Error(`no method ${method} on ${f.class}`);
    }
    let out;
    try {
      out = { ok: await o[method](...args) };
    } catch (e) {
      out = { error: String(e && e.message ? e.message : e) };
    }
    if (f.type === "bytes") return { reply: { type: "bytes", data: b64(serialize(out)) } };
    return { reply: { type: "json", data: JSON.stringify(out.error !== undefined ? out : out.ok ?? null) } };
  }

  // A request for the app's own routes (app_routes): the Worker's fetch(request, env, ctx).
  async runFront(f) {
    try {
      if (!this.worker || typeof this.worker.fetch !== "function") throw new Error("this host has no worker fetch");
      const waits = [];
      const ctx = { waitUntil: (p) => waits.push(p), passThroughOnException() {} };
      const res = await this.worker.fetch(makeRequest(f.request, f), this.env, ctx);
      if (res && res[upgradeTarget]) return this.send({ t: "front_done", id: f.id, upgrade: res[upgradeTarget] });
      this.send({ t: "front_done", id: f.id, response: await responseFrame(res) });
    } catch (e) {
      this.log("worker fetch failed:", e);
      try { this.send({ t: "front_done", id: f.id, error: String(e && e.message ? e.message : e) }); } catch {}
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000, "host closing");
  }
}

function makeRequest(r, f) {
  const headers = new Headers();
  for (const [k, v] of r.headers || []) {
    try { headers.append(k, v); } catch { /* a header fetch's Headers refuses */ }
  }
  if (r.client_address && !headers.has("cf-connecting-ip")) headers.set("CF-Connecting-IP", r.client_address);
  const host = headers.get("host") || "roost.local";
  const url = `http://${host}${r.path || "/"}${r.query ? "?" + r.query : ""}`;
  const init = { method: r.method || "GET", headers };
  if (!["GET", "HEAD"].includes(init.method) && r.body) init.body = unb64(r.body);
  const request = new Request(url, init);
  if (r.claims) Object.defineProperty(request, "claims", { value: JSON.parse(r.claims) });
  return request;
}

async function responseFrame(res) {
  if (!(res instanceof NativeResponse)) throw new Error("fetch() must return a Response");
  const headers = [];
  res.headers.forEach((v, k) => headers.push([k, v]));
  const body = res.status === 101 ? "" : b64(Buffer.from(await res.arrayBuffer()));
  return { status: res.status, headers, body };
}

// Makes WebSocketPair, WebSocketRequestResponsePair and a Response that allows 101 global, as in
// the Workers runtime (serve() does it unless `globals: false`).
export function installGlobals() {
  globalThis.WebSocketPair = WebSocketPair;
  globalThis.WebSocketRequestResponsePair = WebSocketRequestResponsePair;
  globalThis.Response = Response;
}

// Connects to the node as a host of `objects` ({ BINDING: Class } or { BINDING: { class, name,
// classOptions } }) and, with `worker`, of the app's front (app_routes). Resolves once the node
// accepted the classes; reconnects by itself. `host.env` is the env handed to classes and worker.
export async function serve(options) {
  if (options.globals !== false) installGlobals();
  const host = new Host(options);
  await host.start();
  return host;
}
