// Types for roost.js.
export interface ConnectOptions {
  token?: string;
  reconnect?: boolean;          // default true
  minDelayMs?: number;          // backoff start, default 250
  maxDelayMs?: number;          // backoff cap, default 10000
  requestTimeoutMs?: number;    // default 10000
  ownerRetryMs?: number;        // default 5000: owner_unavailable (a mesh) is retried with backoff this long; 0 = never
  WebSocket?: typeof WebSocket; // an implementation outside browsers
}
export interface MessageMeta { channel: string; offset: number; epoch: string; }
export interface PresenceEvent { op: "join" | "leave"; channel: string; subscribers: number; }
export interface SubscribeHandlers {
  recent?: number;
  onReset?: (frame: { channel: string; epoch: string; offset: number }) => void;
  /** Join / leave of the channel's direct subscribers (namespaces with join_leave=true). */
  onPresence?: (event: PresenceEvent) => void;
}
export interface PublishResult { offset: number; epoch: string; subscribers: number; }
export interface LeasedMessage {
  id: string; lease_id: string; body: unknown; content_type: "json" | "text" | "bytes";
  attempts: number; timestamp_ms: number; key: string | null;
}
export class RoostError extends Error { code: string; }
export class Subscription {
  readonly channel: string;
  epoch: string | null;
  offset: number;
  ready: Promise<unknown>;
  unsubscribe(): Promise<void>;
}
export class Client {
  readonly connected: boolean;
  on(event: "open" | "close" | "reconnecting" | "lagged" | "reset" | "error", fn: (arg?: any) => void): () => void;
  subscribe(channel: string, onMessage: (data: unknown, meta: MessageMeta) => void, handlers?: SubscribeHandlers): Subscription;
  publish(channel: string, data: unknown): Promise<PublishResult>;
  /** Fire-and-forget: no answer; a failure comes as an "error" event. */
  publish(channel: string, data: unknown, options: { ack: false }): Promise<void>;
  close(): void;
  enqueue(queue: string, body: unknown, options?: { content_type?: "json" | "text" | "bytes"; delay_ms?: number; id?: string; key?: string }): Promise<{ ids: string[] }>;
  enqueueBatch(queue: string, messages: Array<{ body: unknown; content_type?: string; delay_ms?: number; id?: string; key?: string }>): Promise<{ ids: string[] }>;
  pull(queue: string, options?: { batch_size?: number; visibility_timeout_ms?: number; wait_ms?: number }): Promise<LeasedMessage[]>;
  object(objectClass: string, name: string): ObjectStub;
  ack(queue: string, req: { acks?: Array<string | { lease_id: string }>; retries?: Array<string | { lease_id: string; delay_ms?: number }> }): Promise<{ acked: number; retried: number; unknown: string[] }>;
}
export interface ObjectSocketHandlers {
  query?: Record<string, string>;          // added to the connect URL (on_connect sees it)
  onOpen?: (socket: ObjectSocket) => void; // every (re)connection
  onMessage?: (text: string) => void;
  onClose?: (code: number, reason: string) => void;
}
export class ObjectSocket {
  readonly open: boolean;
  send(data: string | unknown): void;
  close(code?: number, reason?: string): void;
}
export class ObjectStub {
  readonly objectClass: string;
  readonly name: string;
  tell(data: unknown): Promise<{ seq: number }>;
  call(data: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  connect(handlers?: ObjectSocketHandlers): ObjectSocket;
}
export function connect(url?: string, options?: ConnectOptions): Client;
export function matches(pattern: string, subject: string): boolean;
