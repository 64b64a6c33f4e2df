// The C++ SDK: a client of a Roost node's native endpoint (ZeroMQ + Cap'n Proto, see
// docs/protocol.md).
//
//   auto client = roost::Client::connect({.url = "tcp://127.0.0.1:7400"});
//   if (!client) { std::cerr << client.error().message; return 1; }
//   roost::Producer jobs(*client, "jobs");
//   auto id = jobs.send(R"({"task":"resize"})");
//
// Threads and safety. A Client is thread-safe: every method may be called from any thread, and
// many requests may be in flight at once (they are pipelined on one connection). The client runs
// two threads of its own:
//  - the I/O thread owns the ZeroMQ socket; completion callbacks of the *_async methods run on it.
//    Keep them short, and don't call blocking methods from them (those answer invalid_argument).
//  - the dispatch thread runs stream handlers (subscribe, consume), one at a time, in order; they
//    may block and may call any method, blocking ones included.
// Reconnection. The client heartbeats; when the node stops answering (3 heartbeats) or restarts, it
// reconnects with jittered exponential backoff, says hello again and re-opens its subscriptions
// (resuming concrete channels from the last offset seen) and consumers. Requests in flight when the
// connection is lost fail with `unavailable` (they may or may not have been applied); requests made
// while reconnecting wait for the connection until their timeout.
#pragma once

#include <roost/core/error.h>
#include <roost/core/object_types.h>
#include <roost/core/queue_types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace roost {

struct ClientOptions {
  std::string url = "tcp://127.0.0.1:7400";  // tcp://HOST:PORT or ipc://PATH
  std::string token;                         // HS256 JWT when the node has an auth secret
  // When set, called for the token of each hello (and reconnect) instead of `token`: short-lived
  // credentials renewed as they go (a node's mesh links).
  std::function<std::string()> token_source;
  std::string curve_server_key;    // the node's Z85 public key: encrypt with CURVE
  std::string name = "roost-cpp";  // shown in the node's logs
  std::chrono::milliseconds request_timeout{10'000};
  std::chrono::milliseconds connect_timeout{5'000};  // for connect() and each hello
  std::chrono::milliseconds heartbeat{1'000};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5'000};
  // Channel messages received but not yet handled (a slow handler): beyond either limit new ones
  // are dropped and reported to on_lag, as the node does for a slow connection.
  std::size_t max_queued_messages = 65'536;
  std::size_t max_queued_bytes = 64u << 20;
  // A request answered owner_unavailable (a mesh: the owner of its queue's or object's shard is
  // down, fenced or was just replaced; nothing was applied) is sent again with backoff — 100 ms,
  // doubling up to 1 s — for up to this long, within its own timeout. 0: answer it at once.
  std::chrono::milliseconds owner_retry{5'000};
};

// kMessage for published data; kJoin / kLeave for presence events (namespaces with join_leave),
// which carry no data, offset 0, and the channel's direct subscriber count after the change.
enum class ChannelEventKind : std::uint8_t { kMessage = 0, kJoin = 1, kLeave = 2 };

struct ChannelMessage {
  std::string channel;
  std::string data;
  ContentType content_type = ContentType::kJson;
  std::uint64_t offset = 0;
  std::string epoch;
  std::int64_t timestamp_ms = 0;
  ChannelEventKind kind = ChannelEventKind::kMessage;
  std::uint64_t subscribers = 0;
  // (mesh-internal) A join/leave announced by the channel's home: the node and the subscription
  // it is about.
  std::string origin;
  std::uint64_t origin_subscription = 0;
};

struct PublishAck {
  std::uint64_t offset = 0;
  std::string epoch;
  std::uint64_t subscribers = 0;
};

// A handle on a subscription or push consumer: cancel() (or destruction) ends it.
// A subscription or push consumer while it is open. cancel() (or the destructor) ends it: when it
// returns, none of its handlers runs again and none is still running (unless called from inside
// one of them), so what the handlers captured may be destroyed right after.
class Stream {
 public:
  Stream(std::weak_ptr<struct ClientCore> core, std::uint64_t id,
         std::shared_ptr<struct StreamGate> gate = nullptr);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void cancel();
  std::uint64_t id() const { return id_; }

 private:
  std::weak_ptr<struct ClientCore> core_;
  std::uint64_t id_;
  std::shared_ptr<struct StreamGate> gate_;
};

// A message handed to a push consumer's handler. Settle it with ack() or retry(); unsettled
// messages return to the queue when their lease expires.
class Delivery {
 public:
  std::string queue;
  LeasedMessage message;

  void ack() const;
  void retry(std::optional<std::chrono::milliseconds> delay = std::nullopt) const;
  void extend(std::chrono::milliseconds visibility) const;

 private:
  friend struct ClientCore;
  std::weak_ptr<struct ClientCore> core_;
};

struct SubscribeOptions {
  std::function<void(std::uint64_t dropped)> on_lag;  // messages lost because this client lagged
  std::function<void(const Error&)> on_error;         // the node ended the subscription
  // Join / leave events of the channel's direct subscribers (namespaces with join_leave);
  // without this handler they are not delivered.
  std::function<void(const ChannelMessage&)> on_presence;
  // Run the message handler on the client's I/O thread instead of the dispatch thread: one thread
  // hand-off less per batch (measurably faster for a single fast subscriber). The handler must
  // not block, and blocking methods called from it answer invalid_argument; asynchronous ones
  // (publish, *_async) are fine. While it runs, the client reads nothing else. on_presence runs
  // there too, in order with the messages.
  bool on_io_thread = false;
  // Called after the handler has seen every message of one batch the node sent (up to 256): a
  // handler that gathers may pass them on together here.
  std::function<void()> on_batch_end;
  std::size_t recent = 0;                                      // replay up to this many kept messages first
  std::optional<std::pair<std::string, std::uint64_t>> since;  // resume after (epoch, offset)
};

struct ConsumeOptions {
  std::uint32_t max_in_flight = 100;  // messages leased to this consumer and not yet settled
  std::optional<std::chrono::milliseconds> visibility;  // lease length; default: the queue's
  std::function<void(const Error&)> on_error;           // the node ended the consumer
};

class Client {
 public:
  static Result<std::shared_ptr<Client>> connect(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- queues ----
  Result<std::vector<std::string>> enqueue(const std::string& queue, std::vector<NewMessage> messages);
  void enqueue_async(const std::string& queue, std::vector<NewMessage> messages,
                     Callback<std::vector<std::string>> done);
  // (diagnostics: where the time of one enqueue goes; `native_bench --hops`) Enqueues one message
  // and answers the instants it crossed each hand-off, CLOCK_MONOTONIC nanoseconds: called here,
  // sent by the client's I/O thread, the node's eight (core/hop_trace.h: read by the endpoint,
  // admitted, its write group began, the group's commit began, its log write began, the commit
  // ended, the completion ran, the endpoint answered), received by the I/O thread, returned here;
  // then, when the node forwarded it to the shard's owner (a mesh), ten more: the link took it,
  // the owner's eight, the link had the answer.
  Result<std::vector<std::int64_t>> trace_enqueue(const std::string& queue, NewMessage message);
  // wait > 0 long-polls (up to 20 s).
  Result<std::vector<LeasedMessage>> pull(const std::string& queue, PullOptions options = {},
                                          std::chrono::milliseconds wait = {});
  Result<AckResult> ack(const std::string& queue, std::vector<std::string> acks,
                        std::vector<RetryRequest> retries = {});
  void ack_async(const std::string& queue, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                 Callback<AckResult> done);
  Result<ExtendResult> extend(const std::string& queue, std::vector<std::string> leases,
                              std::chrono::milliseconds visibility = {});
  Result<std::unique_ptr<Stream>> consume(const std::string& queue,
                                          std::function<void(const Delivery&)> handler,
                                          ConsumeOptions options = {});
  Result<QueueInfo> put_queue(const std::string& name, const QueueConfigPatch& patch = {});
  Result<void> delete_queue(const std::string& name);
  Result<QueueInfo> get_queue(const std::string& name);
  Result<std::vector<QueueInfo>> list_queues();
  Result<std::uint64_t> redrive(const std::string& from, const std::string& to, std::uint64_t max = 0);
  // Deletes every message of the queue (waiting, delayed, leased); answers how many.
  Result<std::uint64_t> purge_queue(const std::string& name);
  // The next `max` messages a pull would get, leasing nothing (lease_id empty).
  Result<std::vector<LeasedMessage>> peek(const std::string& queue, std::uint32_t max = 10);

  // ---- channels ----
  // Fire and forget (as NATS core): errors are not reported. The data is copied before this
  // returns; publishes in a row leave together as one publishBatch message.
  void publish(std::string_view channel, std::string_view data, ContentType type = ContentType::kJson);
  Result<PublishAck> publish_sync(const std::string& channel, std::string data,
                                  ContentType type = ContentType::kJson);
  Result<std::unique_ptr<Stream>> subscribe(const std::string& pattern,
                                            std::function<void(const ChannelMessage&)> handler,
                                            SubscribeOptions options = {});
  // Who is subscribed to a channel (in a mesh: on every node): subscriptions whose pattern
  // matches it, and those to exactly it. Needs the token's subscribe grant for the channel.
  struct Presence {
    std::uint64_t subscribers = 0;
    std::uint64_t direct = 0;
  };
  Result<Presence> presence(const std::string& channel);

  // ---- objects ----
  // A durable message to an object's mailbox; answers its mailbox seq once committed.
  Result<std::uint64_t> tell(const std::string& object_class, const std::string& name, std::string data,
                             ContentType type = ContentType::kJson);
  void tell_async(const std::string& object_class, const std::string& name, std::string data,
                  ContentType type, Callback<std::uint64_t> done);
  // Request → reply through the object's on_call. `timeout` 0 = the node's call_timeout_ms;
  // call_timeout when the object does not reply in time, actor_error when its handler threw.
  Result<ObjectReply> call(const std::string& object_class, const std::string& name, std::string data,
                           std::chrono::milliseconds timeout = {}, ContentType type = ContentType::kJson);

  // True while a session with the node is established.
  bool connected() const;
  // How many times the client had to reconnect (for tests and monitoring).
  std::uint64_t reconnects() const;
  // Ends the connection; requests waiting for an answer fail with `unavailable`. Publishes,
  // acks and retries already made still go out if connected: close() returns once the node has
  // read them (or after 1 s). Idempotent; the destructor closes too.
  void close();

 private:
  explicit Client(std::shared_ptr<ClientCore> core);
  friend class Producer;
  std::shared_ptr<ClientCore> core_;
};

// Sends to one queue, with a bounded window of asynchronous sends.
class Producer {
 public:
  Producer(Client& client, std::string queue, std::size_t window = 1000);
  ~Producer();  // waits for outstanding sends
  Result<std::string> send(std::string body, ContentType type = ContentType::kJson);
  Result<std::string> send(NewMessage message);
  Result<std::vector<std::string>> send_batch(std::vector<NewMessage> messages);
  // Blocks while `window` sends are outstanding; `done` runs on the client's I/O thread. Sends
  // coalesce: at most 2 enqueue requests are in flight, and each takes every message waiting
  // when the I/O thread sends it (up to 1000), so bursts leave as batch requests (order kept;
  // each message keeps its id, key and callback; a batch the node refuses — queue_full,
  // storage_full — fails every message in it).
  void send_async(NewMessage message, Callback<std::string> done);
  std::future<Result<std::string>> send_async(NewMessage message);
  // Waits until every asynchronous send has completed.
  void flush();

 private:
  struct State;
  Client& client_;
  std::string queue_;
  std::shared_ptr<State> state_;
};

// Takes from one queue: pull, or push with a window.
class Consumer {
 public:
  Consumer(Client& client, std::string queue) : client_(client), queue_(std::move(queue)) {}
  Result<std::vector<LeasedMessage>> pull(std::uint32_t batch = 10, std::chrono::milliseconds wait = {});
  Result<std::unique_ptr<Stream>> consume(std::function<void(const Delivery&)> handler,
                                          std::uint32_t max_in_flight = 100);
  Result<AckResult> ack(const std::string& lease_id);
  Result<AckResult> ack(std::vector<std::string> lease_ids);
  Result<AckResult> retry(const std::string& lease_id,
                          std::optional<std::chrono::milliseconds> delay = std::nullopt);
  Result<ExtendResult> extend(const std::string& lease_id, std::chrono::milliseconds visibility);

 private:
  Client& client_;
  std::string queue_;
};

class Publisher {
 public:
  explicit Publisher(Client& client) : client_(client) {}
  void publish(std::string_view channel, std::string_view data, ContentType type = ContentType::kJson) {
    client_.publish(channel, data, type);
  }
  Result<PublishAck> publish_sync(const std::string& channel, std::string data,
                                  ContentType type = ContentType::kJson) {
    return client_.publish_sync(channel, std::move(data), type);
  }

 private:
  Client& client_;
};

class Subscriber {
 public:
  explicit Subscriber(Client& client) : client_(client) {}
  Result<std::unique_ptr<Stream>> subscribe(const std::string& pattern,
                                            std::function<void(const ChannelMessage&)> handler,
                                            SubscribeOptions options = {}) {
    return client_.subscribe(pattern, std::move(handler), std::move(options));
  }

 private:
  Client& client_;
};

}  // namespace roost
