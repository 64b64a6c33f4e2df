# Roost's native wire contract (SDK ↔ node, and later node ↔ node).
#
# A message on the wire is a ZeroMQ multipart message: frame 0 is one `Envelope` (Cap'n Proto,
# unpacked, single segment or more), frames 1..n carry payload bytes — message bodies travel in
# their own frames, never inside the envelope. Which payload frames follow, and how many, is said by
# the envelope variant (see each struct). docs/protocol.md is the long form.
#
# Compatibility: names and numbers of fields, variants and enumerants never change once released;
# new ones are appended. `protocolVersion` rises only for an incompatible change.

@0xe255d0f99abd4376;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("roost::proto");

const protocolVersion :UInt16 = 1;

# The stable error codes. The single source: the C++ `roost::ErrorCode` is this enum, and the HTTP
# API sends the same codes as snake_case names (`queueNotFound` → "queue_not_found").
enum ErrorCode {
  ok @0;
  malformed @1;          # a request body or frame could not be parsed
  invalidArgument @2;    # parsed, but a field has a wrong type or value
  invalidName @3;        # a queue, channel or object name breaks the naming rules
  notFound @4;           # no such route, resource or stream
  queueNotFound @5;      # the named queue does not exist
  methodNotAllowed @6;   # (HTTP) the route exists, the method does not
  conflict @7;           # the request contradicts the current state
  messageTooLarge @8;    # one message body is larger than max_message_bytes
  payloadTooLarge @9;    # the whole request is larger than allowed
  queueFull @10;         # the queue's max_messages / max_bytes is reached
  storageFull @11;       # the node's storage (map cap or disk) is full
  unavailable @12;       # shutting down, connection lost, or the owner is unavailable
  internal @13;          # a bug or an unexpected I/O error; details are in the node's log
  headerTooLarge @14;    # (HTTP) request headers exceed the limit
  timeout @15;           # the request did not complete in time
  unauthorized @16;      # missing or invalid credentials
  forbidden @17;         # the credentials do not allow this
  tooManyRequests @18;   # a connection, window or rate limit
  helloRequired @19;     # (native) the node does not know this connection: send hello first
  classNotFound @20;     # no actor class of that name is registered on the node
  actorError @21;        # the actor's handler threw; the message says what it threw
  callTimeout @22;       # an object call got no reply in time (the turn may still run)
  connectRejected @23;   # the object's on_connect refused the WebSocket
  noReply @24;           # an object call's handler returned without replying
  callCycle @25;         # an object called, within its turn, an object already waiting in that call chain
  ownerUnavailable @26;  # (mesh) the shard's owner is gone, or a forwarded request's epoch is stale
  unknownField @27;      # (HTTP, WebSocket) a request body has a field the API does not know
}

enum ContentType {
  json @0;   # UTF-8 JSON text
  text @1;   # UTF-8 text
  bytes @2;  # anything
}

# An optional number: a null pointer means "not given".
struct Number {
  value @0 :UInt64;
}

struct Envelope {
  # Chosen by the client for each request, echoed by the answer. Events of a stream (channel
  # messages, push deliveries) carry the id of the request that opened the stream. 0 on a request
  # means "no answer wanted" (fire-and-forget publish); errors of such a request are not reported.
  id @0 :UInt64;

  union {
    # ---- client → node ---------------------------------------------------------------------
    hello @1 :Hello;              # → helloOk | error
    heartbeat @2 :Heartbeat;      # → heartbeat (the node's, with its instance id)
    enqueue @3 :Enqueue;          # payload frames: one per message → enqueued | error
    pull @4 :Pull;                # → messages (payload frames) | error
    ack @5 :Ack;                  # → acked | error
    extend @6 :Extend;            # → extended | error
    consume @7 :Consume;          # → ok, then `delivery` events | error
    credit @8 :Credit;            # → nothing; adds to a push consumer's window
    cancel @9 :Cancel;            # → ok | error; ends a consume or subscribe stream
    publish @10 :Publish;         # payload frame: the data → published | error (unless id = 0)
    subscribe @11 :Subscribe;     # → subscribed, then `message` / `lagged` events | error
    putQueue @12 :PutQueue;       # → queue | error
    deleteQueue @13 :QueueName;   # → ok | error
    getQueue @14 :QueueName;      # → queue | error
    listQueues @15 :Void;         # → queues
    redrive @16 :Redrive;         # → count | error
    objectSend @17 :ObjectSend;   # payload frame: the message → count (mailbox seq) | error
    objectCall @18 :ObjectCall;   # payload frame: the request → objectReply | error

    # ---- node → client ---------------------------------------------------------------------
    error @19 :Error;
    ok @20 :Void;
    helloOk @21 :HelloOk;
    enqueued @22 :Enqueued;
    messages @23 :QueueMessages;  # answer to pull; payload frames: one body per message
    acked @24 :Acked;
    extended @25 :Extended;
    delivery @26 :QueueMessages;  # push-consumer event; payload frames: one body per message
    published @27 :Published;
    subscribed @28 :Subscribed;
    message @29 :ChannelMessages; # subscription event; payload frames: one per message
    lagged @30 :Lagged;           # subscription event: messages dropped for a slow client
    reset @31 :Subscribed;        # subscription event: the requested resume point was lost
    queue @32 :QueueInfo;
    queues @33 :List(QueueInfo);
    count @34 :UInt64;
    objectReply @35 :ObjectReply; # answer to objectCall; payload frame: the reply

    # ---- appended in protocol version 1 ----------------------------------------------------
    publishBatch @36 :PublishBatch; # client → node: many publishes, payloads packed in one frame

    # ---- appended for the mesh -----------------------------------------------------------------
    meshEffects @38 :MeshEffects;   # node → node; payload frames: one per effect → count | error
    objectFetch @39 :ObjectFetch;   # node → node; payload frame: the body → objectReply | error
    # node → owner: a WebSocket a node's gateway attaches to an object the receiver owns → count
    # (the socket is attached), then socketFrame / socketClose events with this request's id | error
    objectConnect @40 :ObjectConnect;
    socketFrame @41 :SocketFrame;   # both ways; payload frame: the text (see SocketFrame)
    socketClose @42 :SocketClose;   # both ways (see SocketFrame)
    presence @43 :Text;             # a channel → presenceCount: the receiving node's own subscribers
    presenceCount @44 :PresenceCount;
    presenceEvent @45 :PresenceEvent; # node → the channel's home (no answer)
    shardCopy @46 :ShardCopy;       # node → node (a shard move); payload frame: the step's data → count | error

    # ---- appended for the queue API's purge and peek -----------------------------------------
    purgeQueue @47 :QueueName;      # → count (messages deleted) | error
    peek @48 :Pull;                 # batchSize only → messages (no lease ids; nothing leased) | error
  }

  # ---- appended for the mesh (node ↔ node, on a node's mesh socket) ---------------------------
  # A request forwarded to a shard's owner says which shard (of the queue or object it names) and
  # which ownership epoch the sender believes in; the owner serves it only while it owns that
  # shard under that epoch, else answers ownerUnavailable (the sender refreshes and retries once).
  route @37 :Route;

  # ---- appended for the hop breakdown (issue 27; `native_bench --hops`) -----------------------
  # (diagnostics) An enqueue that carries a trace asks the node where its time went: the client
  # puts its own instants in (at most 8), the answer carries them followed by the node's — read by
  # the endpoint, admitted (handed to the committer), its group began, the group's commit began,
  # its log record's write and flush began, the commit ended, the completion ran, the endpoint
  # answered. Instants are
  # CLOCK_MONOTONIC nanoseconds, comparable between processes of one machine; 0: not seen.
  trace @49 :List(Int64);
}

# node → node (mesh socket): effects of the sender's turns on the receiver's shard, from the
# sender's outbox, in its order (one payload frame per effect: the message). → count: the last
# outbox seq applied from this origin for this shard (applied once each, ever).
struct MeshEffects {
  origin @0 :Text;                 # the sending node's name
  shard @1 :UInt32;
  effects @2 :List(MeshEffect);
}

struct MeshEffect {
  seq @0 :UInt64;
  queue @1 :Text;                  # an enqueue, or (empty) a tell to class/name
  class @2 :Text;
  name @3 :Text;
  contentType @4 :ContentType;
  delayMs @5 :UInt64;
  id @6 :Text;
  key @7 :Text;
}

# node → node: one step of moving a shard to the receiver (docs/mesh.md, "Moving shards").
struct ShardCopy {
  move @0 :UInt64;                 # the move's id, chosen by the source
  shard @1 :UInt32;
  phase @2 :ShardCopyPhase;
  origin @3 :Text;                 # the source node
  epoch @4 :Int64;                 # (finish) the source's claim: the target switches the shard from it
}

enum ShardCopyPhase {
  bodies @0;                       # message bodies, while the source still serves the shard → count stored
  queues @1;                       # exported queues, once the source closed the shard → count
  marks @2;                        # the shard's outbox marks → count
  finish @3;                       # build the queues and take the shard over → count: the new epoch
  abort @4;                        # forget the move
  objects @5;                      # rows of the shard's objects, once the source closed it → count
}

struct Route {
  shard @0 :UInt32;
  epoch @1 :Int64;                 # the owner claim's creation revision in etcd
}

struct Hello {
  protocolVersion @0 :UInt16;
  token @1 :Text;           # the same HS256 JWT the gateway takes; empty = none
  client @2 :Text;          # free-form client name and version, for logs
  heartbeatMs @3 :UInt32;   # how often the client will send heartbeats; 0 = the node's default
}

struct HelloOk {
  protocolVersion @0 :UInt16;
  node @1 :Text;              # "roost/0.1.0"
  instance @2 :UInt64;        # changes on every node start: a client that sees it change re-hellos
  heartbeatMs @3 :UInt32;     # the interval the node expects; silent for 3× that = gone
  maxMessageBytes @4 :UInt64;
}

struct Heartbeat {
  instance @0 :UInt64;        # node → client: the node's instance; client → node: 0
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct NewMessage {
  contentType @0 :ContentType;
  delayMs @1 :UInt64;
  id @2 :Text;              # producer id for deduplication; empty = none
  key @3 :Text;             # ordering key; empty = none
}

struct Enqueue {
  queue @0 :Text;
  messages @1 :List(NewMessage);   # as many payload frames follow, in order
}

struct Enqueued {
  ids @0 :List(Text);              # message ids in order (for a duplicate, the first one's id)
}

struct Pull {
  queue @0 :Text;
  batchSize @1 :UInt32;            # 0 = 10
  visibilityTimeoutMs @2 :UInt64;  # 0 = the queue's
  waitMs @3 :UInt64;               # long poll: answer when a message arrives or this is over
}

struct LeasedMessage {
  id @0 :Text;
  leaseId @1 :Text;
  contentType @2 :ContentType;
  attempts @3 :UInt32;
  timestampMs @4 :Int64;
  key @5 :Text;
}

struct QueueMessages {
  queue @0 :Text;
  messages @1 :List(LeasedMessage);  # as many payload frames follow, in order
}

struct Retry {
  leaseId @0 :Text;
  delayMs @1 :Number;              # null = the queue's retry_delay_ms
}

struct Ack {
  queue @0 :Text;
  acks @1 :List(Text);
  retries @2 :List(Retry);
}

struct Acked {
  acked @0 :UInt32;
  retried @1 :UInt32;
  unknown @2 :List(Text);          # lease ids that no longer hold
}

struct Extend {
  queue @0 :Text;
  leaseIds @1 :List(Text);
  visibilityTimeoutMs @2 :UInt64;  # the new lease length from now; 0 = the queue's
}

struct Extended {
  extended @0 :UInt32;
  unknown @1 :List(Text);
}

struct Consume {
  queue @0 :Text;
  maxInFlight @1 :UInt32;          # the window: leased and not yet acked/retried; 0 = 100
  visibilityTimeoutMs @2 :UInt64;  # 0 = the queue's
}

struct Credit {
  stream @0 :UInt64;               # the consume request's id
  messages @1 :UInt32;             # widens the window by this many
}

struct Cancel {
  stream @0 :UInt64;               # the consume or subscribe request's id
}

struct Publish {
  channel @0 :Text;
  contentType @1 :ContentType;     # json is validated; text and bytes reach browsers as strings
}

struct Published {
  offset @0 :UInt64;
  epoch @1 :Text;
  subscribers @2 :UInt64;
}

struct Subscribe {
  pattern @0 :Text;                # `*` one token, `>` the rest
  union {
    live @1 :Void;                 # only new messages
    since @2 :Position;            # resume after this position (concrete channels only)
    recent @3 :UInt32;             # replay up to this many kept messages first
  }
}

struct Position {
  epoch @0 :Text;
  offset @1 :UInt64;
}

struct Subscribed {
  epoch @0 :Text;
  offset @1 :UInt64;               # the channel's latest offset at subscription
  recovered @2 :UInt64;
  reset @3 :Bool;
}

struct ChannelMessage {
  channel @0 :Text;
  offset @1 :UInt64;
  epoch @2 :Text;
  contentType @3 :ContentType;
  timestampMs @4 :Int64;
  # Presence events (namespaces with join_leave): a direct subscriber joined or left; no offset,
  # an empty payload, and `subscribers` = the channel's direct subscribers after the change.
  kind @5 :MessageKind;
  subscribers @6 :UInt64;
  # (mesh) A presence event the channel's home announced for a subscription made on node `origin`
  # (its id there): that node does not tell the subscriber about itself.
  origin @7 :Text;
  originSubscription @8 :UInt64;
}

enum MessageKind {
  data @0;
  join @1;
  leave @2;
}

struct ChannelMessages {
  messages @0 :List(ChannelMessage);
  # Empty: one payload frame per message follows, in order. Otherwise one frame follows holding
  # every payload back to back, and sizes[i] is the length of message i's (the node packs
  # small messages this way; a client must accept both).
  sizes @1 :List(UInt32);
}

# Fire-and-forget publishes in one message (the SDK batches consecutive `publish` calls): exactly
# one payload frame follows, the payloads back to back, sizes[i] bytes each. Errors are not
# reported (as for a publish with id 0); an id other than 0 gets `count` (how many were accepted).
struct PublishBatch {
  items @0 :List(Publish);
  sizes @1 :List(UInt32);
}

struct Lagged {
  dropped @0 :UInt64;
}

struct QueueConfig {
  visibilityTimeoutMs @0 :Number;
  maxRetries @1 :Number;
  retryDelayMs @2 :Number;
  deadLetterQueue @3 :Text;        # null = unchanged; "" = none
  maxMessages @4 :Number;
  maxBytes @5 :Number;
  messageTtlMs @6 :Number;
  dedupWindowMs @7 :Number;
  push @8 :PushTarget;             # null = unchanged; a url of "" = pulled again
}

struct PushTarget {
  url @0 :Text;
  concurrency @1 :UInt32;
  timeoutMs @2 :UInt64;
  batchSize @3 :UInt32;
}

struct PutQueue {
  name @0 :Text;
  config @1 :QueueConfig;          # fields left null keep their value (or default)
}

struct QueueName {
  name @0 :Text;
}

struct Redrive {
  from @0 :Text;
  to @1 :Text;
  max @2 :UInt64;                  # 0 = all
}

struct QueueStats {
  ready @0 :UInt64;
  delayed @1 :UInt64;
  inFlight @2 :UInt64;
  blocked @3 :UInt64;
  messages @4 :UInt64;
  bytes @5 :UInt64;
  oldestAgeMs @6 :Int64;
  enqueued @7 :UInt64;
  deduplicated @8 :UInt64;
  acked @9 :UInt64;
  retried @10 :UInt64;
  deadLettered @11 :UInt64;
  dropped @12 :UInt64;
  expired @13 :UInt64;
  redriven @14 :UInt64;
  purged @15 :UInt64;
}

struct QueueInfo {
  name @0 :Text;
  config @1 :QueueConfig;          # every field set
  stats @2 :QueueStats;
  createdAtMs @3 :Int64;
}

# Object mailboxes. objectSend → count (the message's mailbox seq, once durable) | error;
# objectCall → objectReply (payload frame: the reply) | error (call_timeout, actor_error, …).
struct ObjectSend {
  class @0 :Text;
  name @1 :Text;                   # payload frame: the message
  contentType @2 :ContentType;
}

struct ObjectCall {
  class @0 :Text;
  name @1 :Text;
  timeoutMs @2 :UInt64;            # 0 = the node's call_timeout_ms; payload frame: the request
  contentType @3 :ContentType;
}

struct ObjectReply {
  contentType @0 :ContentType;     # payload frame: the reply
  # (objectFetch) the object's HTTP response: status and headers.
  status @1 :UInt16;
  headers @2 :List(Header);
}

struct Header {
  name @0 :Text;
  value @1 :Text;
}

# node → node (mesh socket): an HTTP request to an object's on_fetch, forwarded to its owner.
# Payload frame: the body. → objectReply (status, headers; payload frame: the body) | error.
struct ObjectFetch {
  class @0 :Text;
  name @1 :Text;
  timeoutMs @2 :UInt64;
  method @3 :Text;
  path @4 :Text;
  query @5 :Text;
  headers @6 :List(Header);
  clientAddress @7 :Text;
  claims @8 :Text;
}

# node → owner (mesh socket): a WebSocket that reached the sender's gateway, for an object the
# receiver owns. The object's on_connect runs on the owner; the socket stays where the browser is.
struct ObjectConnect {
  class @0 :Text;
  name @1 :Text;
  path @2 :Text;
  query @3 :Text;
  origin @4 :Text;
  protocol @5 :Text;
  headers @6 :List(Header);
  clientAddress @7 :Text;
  claims @8 :Text;
}

# A text frame of a socket attached by objectConnect (`stream` = that request's id). From the
# browser's node to the owner: a request with id 0 (no answer). From the owner: an event with the
# envelope id = `stream`. Frames of one socket arrive in the order they were sent.
struct SocketFrame {
  stream @0 :UInt64;
}

# The end of such a socket: from the browser's node, the browser closed it (the object's
# on_close runs); from the owner, the object closed it (the node closes the browser's socket with
# this code and then answers with its own socketClose). A node that loses its link to the owner
# closes the browser's sockets with 1012; an owner that loses a node closes them as 1006.
struct SocketClose {
  stream @0 :UInt64;
  code @1 :UInt16;
  reason @2 :Text;
}

struct PresenceCount {
  subscribers @0 :UInt64;          # subscriptions whose pattern matches the channel
  direct @1 :UInt64;               # subscriptions to exactly the channel
}

# node → the home of a channel (mesh socket, id 0): a direct subscription of the sender joined or
# left the channel; `direct` = the sender's direct subscriptions of it after the change. The home
# announces the event with the whole mesh's count to every node's subscribers.
struct PresenceEvent {
  channel @0 :Text;
  kind @1 :MessageKind;
  origin @2 :Text;
  direct @3 :UInt64;
  subscription @4 :UInt64;
}
