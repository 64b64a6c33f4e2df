// The actor API of object mailboxes: what an application writes to give a named object a durable,
// ordered mailbox, transactional storage and the WebSockets attached to it.
//
// An object is a class name plus an object name ("doc" + "welcome"). Its actor is created on the
// first delivery (activation), runs one turn at a time — one message, call, socket event or alarm
// per turn — and is destroyed after `actor_idle_ms` without work (hibernation); its storage and
// mailbox stay on disk and its WebSockets stay open in the gateway.
//
// Everything a turn does through its Context is an *effect*: storage writes, socket sends,
// broadcasts, publishes, enqueues, tells, alarms and the reply. Effects commit in one transaction
// together with consuming the message, and outputs leave only after that commit (the output
// gate). A handler that throws has no effects: the message is retried with backoff, then
// dead-lettered with the error, and the object keeps serving. Turns run on the node's actor
// worker threads; a Context is only valid during the handler call that received it.
//
// Thread-safety: an Actor instance is only ever called by one thread at a time; it needs no locks
// for its own members. Keep turns short: a turn that blocks holds up its object only, but also one
// of the (few) worker threads.
#pragma once

#include <roost/core/content_type.h>
#include <roost/core/http_headers.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost {

// Bumped when the layout of anything below changes; plugins built against another version are
// refused at load time (see roost/actor_plugin.h).
inline constexpr std::uint32_t kActorAbiVersion = 2;

// A WebSocket attached to an object (GET /v1/objects/{class}/{name}/connect). The id is unique in
// the node's lifetime; a socket belongs to exactly one object.
struct Socket {
  std::uint64_t id = 0;
  friend bool operator==(Socket, Socket) = default;
};

// Close codes an endpoint may send (RFC 6455 §7.4): 1000-1003, 1007-1014 and 3000-4999. Context::
// close() refuses the others (1004-1006 and 1015 only report, 1016-2999 are the protocol's).
constexpr bool sendable_close_code(std::uint64_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

// What arrived: a tell, a call's request, a channel message of a durable subscription.
struct Message {
  std::string_view data;
  ContentType content_type = ContentType::kJson;
  std::uint64_t seq = 0;      // position in the mailbox (0 for calls: they are not durable)
  std::uint32_t attempt = 1;  // 1 on first delivery, +1 on each retry after a throwing turn
  std::string_view subject;   // the channel, for messages of a durable subscription; else empty
};

struct AlarmInfo {
  std::string_view name;
  std::int64_t scheduled_ms = 0;  // when it was due (ms since the epoch)
  std::uint32_t retry_count = 0;  // 0 on first delivery; +1 each time the turn threw
  std::uint64_t missed = 0;       // repeating alarms: occurrences skipped while the node was down
};

// How a socket ended, for on_disconnect: the close code and reason the client sent (1006 and no
// reason when the connection dropped; the node's own when it closed the socket).
struct CloseInfo {
  std::uint16_t code = 1006;
  std::string_view reason;
  bool was_clean = false;  // a close handshake took place (code != 1006)
};

// An HTTP request to the object, for on_fetch (ANY /v1/objects/{class}/{name}/fetch[/path]).
struct HttpRequest {
  std::string_view method;
  std::string_view path;  // below /fetch, starting with '/'
  std::string_view query;
  std::span<const std::pair<std::string, std::string>> headers;  // as sent, but Authorization
  std::string_view body;
  std::string_view client_address;  // as for ConnectRequest
  std::string_view claims;          // the verified token's payload as JSON ("" without a token)

  std::string_view header(std::string_view name) const { return find_header(headers, name); }
};

// on_fetch's answer: status (100–599), headers (Content-Length and hop-by-hop ones are the node's)
// and body. It leaves after the turn committed, like a call's reply.
struct HttpResponse {
  std::uint16_t status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// The WebSocket upgrade request, for on_connect.
struct ConnectRequest {
  std::string_view query;  // the URL's query string, without '?'
  std::string_view origin;
  std::string_view protocol;  // Sec-WebSocket-Protocol, if any
  std::string_view path;      // the URL's path, without the query
  // The request's headers as the client sent them, except Authorization (its token was verified
  // and its claims are below).
  std::span<const std::pair<std::string, std::string>> headers;
  // Who connected: the peer's address, or — when the peer is one of trusted_proxies — the address
  // its X-Forwarded-For names (Cloudflare's CF-Connecting-IP).
  std::string_view client_address;
  // The verified token's payload as a JSON object ("" when the request carried no token).
  std::string_view claims;

  // The first header called `name` (ASCII case-insensitive), or empty.
  std::string_view header(std::string_view name) const { return find_header(headers, name); }
};

// What Storage::list returns: keys with `prefix`, from `start` (inclusive) to `end` (exclusive;
// empty = no upper bound), in key order or `reverse`d, at most `limit` (0 = all).
struct ListOptions {
  std::string_view prefix;
  std::string_view start;
  std::string_view end;
  bool reverse = false;
  std::size_t limit = 0;
};

// The object's transactional key-value storage. Reads see this object's writes of earlier turns
// even before they committed. Keys are up to 1 KiB, values up to 1 MiB.
class Storage {
 public:
  virtual ~Storage() = default;
  virtual std::optional<std::string> get(std::string_view key) = 0;
  virtual void put(std::string_view key, std::string_view value) = 0;
  // Returns whether the key existed.
  virtual bool del(std::string_view key) = 0;
  // Entries whose key starts with `prefix`, with start <= key < end (empty = no bound), in key
  // order — or, with `reverse`, from the last one down — at most `limit` (0 = all). A reverse list
  // with a limit reads only the entries it returns (Cloudflare's list({reverse, limit})).
  virtual std::vector<std::pair<std::string, std::string>> list(const ListOptions& options) = 0;
  // Shorthands for list(): by prefix; by range.
  std::vector<std::pair<std::string, std::string>> list(std::string_view prefix, std::size_t limit = 0) {
    return list(ListOptions{.prefix = prefix, .limit = limit});
  }
  std::vector<std::pair<std::string, std::string>> range(std::string_view start, std::string_view end,
                                                         std::size_t limit = 0) {
    return list(ListOptions{.start = start, .end = end, .limit = limit});
  }
};

// What another object answered to Context::call.
struct CallReply {
  std::string data;
  ContentType content_type = ContentType::kJson;
};

// Thrown by Context::call when the call failed; code() is the stable error code's name
// ("call_timeout", "call_cycle", "actor_error", "class_not_found", "invalid_name", …).
class CallError : public std::runtime_error {
 public:
  CallError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Handed to every handler; valid only during that call.
class Context {
 public:
  virtual ~Context() = default;
  virtual std::string_view object_class() const = 0;
  virtual std::string_view object_name() const = 0;
  virtual std::int64_t now_ms() const = 0;

  virtual Storage& storage() = 0;

  // Attached sockets, optionally only those carrying `tag`. Includes the socket being connected
  // in on_connect once accepted.
  virtual std::vector<Socket> sockets(std::string_view tag = {}) = 0;
  virtual std::vector<std::string> tags(Socket s) = 0;
  virtual std::string attachment(Socket s) = 0;
  // Up to 16 KiB of state kept with the socket in the gateway; survives hibernation.
  virtual void set_attachment(Socket s, std::string data) = 0;
  // Up to 10 tags, set in on_connect.
  virtual void set_tags(Socket s, std::vector<std::string> tags) = 0;
  // A text frame to one socket / to every socket (with `tag`). Sent after the turn commits.
  virtual void send(Socket s, std::string data) = 0;
  virtual void broadcast(std::string data, std::string_view tag = {}) = 0;
  // Closes a socket after the turn commits. Throws std::invalid_argument for a code sendable_close_code()
  // refuses, std::length_error for a reason over 123 bytes.
  virtual void close(Socket s, std::uint16_t code = 1000, std::string reason = {}) = 0;
  // A socket text frame equal to `request` is answered with `response` by the gateway, without
  // waking the object. Empty request clears it.
  virtual void set_auto_response(std::string request, std::string response) = 0;

  virtual void publish(std::string_view subject, std::string data, ContentType type = ContentType::kJson) = 0;
  virtual void enqueue(std::string_view queue, std::string data, ContentType type = ContentType::kJson) = 0;
  // A durable message to another object's mailbox (or this one's).
  virtual void tell(std::string_view object_class, std::string_view object_name, std::string data,
                    ContentType type = ContentType::kJson) = 0;
  // Calls another object and waits for its reply within this turn (Cloudflare's
  // `await stub.fetch()`). Meanwhile this object runs nothing else: its other items wait, one turn
  // at a time. The reply is what the callee's on_call answered, after the callee's turn committed;
  // this turn's own effects still commit only when it ends. timeout_ms 0 = the node's
  // call_timeout_ms. A call to an object already waiting in this chain of calls (A → B → A, or A →
  // A) throws CallError "call_cycle" at once instead of waiting out its timeout. Throws CallError
  // on any failure; uncaught, it fails the turn like any exception.
  virtual CallReply call(std::string_view object_class, std::string_view object_name, std::string data,
                         ContentType type = ContentType::kJson, std::uint64_t timeout_ms = 0) = 0;
  // The answer to the call being handled (on_call only).
  virtual void reply(std::string data, ContentType type = ContentType::kJson) = 0;

  // Durable, named alarms: at `time_ms` (ms since the epoch), then every `every_ms` if not 0.
  // Setting an existing name replaces it.
  virtual void set_alarm(std::string_view name, std::int64_t time_ms, std::uint64_t every_ms = 0) = 0;
  virtual void cancel_alarm(std::string_view name) = 0;
  // Durable subscription: messages published on `pattern` arrive in the mailbox (Message::subject
  // set), also after a restart.
  virtual void subscribe(std::string_view pattern) = 0;
  virtual void unsubscribe(std::string_view pattern) = 0;
};

// Thrown by on_connect to refuse a WebSocket; the client gets close code 4403 (or HTTP 403 on a
// plain request) with the reason.
class Reject : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Actor {
 public:
  virtual ~Actor() = default;
  // Before the first turn after activation (creation or wake from hibernation).
  virtual void on_activate(Context&) {}
  virtual void on_message(Context&, const Message&) {}
  // Request → reply: call ctx.reply(...). Throwing fails the call with actor_error.
  virtual void on_call(Context& ctx, const Message&) { ctx.reply("null"); }
  // Accept by returning (optionally setting tags and an attachment); refuse by throwing Reject.
  virtual void on_connect(Context&, Socket, const ConnectRequest&) {}
  virtual void on_socket_message(Context&, Socket, std::string_view) {}
  // An HTTP request (Cloudflare's fetch): answer with a status, headers and body; throwing answers
  // 500 actor_error. The default answers 501.
  virtual HttpResponse on_fetch(Context&, const HttpRequest&) {
    return HttpResponse{501, {{"Content-Type", "text/plain"}}, "this object class has no on_fetch"};
  }
  // The socket has left (it is no longer among ctx.sockets()); its tags and attachment are still
  // readable through ctx during this turn. Override either form: this one calls the older
  // (code-only) form by default.
  virtual void on_disconnect(Context& ctx, Socket s, const CloseInfo& info) {
    on_disconnect(ctx, s, info.code);
  }
  virtual void on_disconnect(Context&, Socket, std::uint16_t /*code*/) {}
  virtual void on_alarm(Context&, const AlarmInfo&) {}
};

using ActorFactory = std::function<std::unique_ptr<Actor>()>;

// Per-class settings; the defaults are what a class registered without options gets.
struct ActorClassOptions {
  std::uint32_t max_retries = 3;       // retries of a throwing turn before dead-lettering
  std::uint64_t retry_delay_ms = 100;  // first backoff; doubles each retry, at most 10 s
  std::string dead_letter_queue;       // default: "dead.<class>"
};

}  // namespace roost
