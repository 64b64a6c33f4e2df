// roost::Host: the protocol of docs/hosts.md over one Boost.Beast WebSocket. An io thread reads
// frames and writes the queued ones; turns run on a thread pool, where a storage read or a call is
// a request whose answer the io thread hands back through a promise.
#include "roost/client/host.h"

#include <roost/core/base64.h>
#include <roost/core/log.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <deque>
#include <future>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace roost {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;

namespace {

std::string_view type_name(ContentType t) {
  return t == ContentType::kText ? "text" : t == ContentType::kBytes ? "bytes" : "json";
}
ContentType type_of(const json::object& o) {
  auto* t = o.if_contains("type");
  if (t == nullptr || !t->is_string() || t->get_string() == "json") return ContentType::kJson;
  return t->get_string() == "text" ? ContentType::kText : ContentType::kBytes;
}
std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}
std::uint64_t u64(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64()) return static_cast<std::uint64_t>(std::max<std::int64_t>(0, v->get_int64()));
  if (v->is_double()) return static_cast<std::uint64_t>(v->get_double());
  return 0;
}
std::string unb64(const std::string& s) { return base64_decode(s).value_or(std::string()); }
std::string data_of(const json::object& o) {
  auto d = str(o, "data");
  return type_of(o) == ContentType::kBytes ? unb64(d) : d;
}
void put_data(json::object& o, std::string_view data, ContentType t) {
  o["type"] = type_name(t);
  o["data"] = t == ContentType::kBytes ? json::string(base64_encode(data)) : json::string(data);
}
std::vector<std::pair<std::string, std::string>> headers_of(const json::object& o) {
  std::vector<std::pair<std::string, std::string>> out;
  if (auto* h = o.if_contains("headers"); h != nullptr && h->is_array()) {
    for (const auto& kv : h->get_array()) {
      if (kv.is_array() && kv.get_array().size() == 2 && kv.get_array()[0].is_string() &&
          kv.get_array()[1].is_string()) {
        out.emplace_back(std::string(kv.get_array()[0].get_string()),
                         std::string(kv.get_array()[1].get_string()));
      }
    }
  }
  return out;
}
std::vector<std::string> strings(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (auto* a = o.if_contains(key); a != nullptr && a->is_array()) {
    for (const auto& s : a->get_array()) {
      if (s.is_string()) out.emplace_back(s.get_string());
    }
  }
  return out;
}

// Thrown into a turn whose connection went away or that the node aborted.
struct TurnGone : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

struct Host::Impl {
  struct Klass {
    ActorFactory factory;
    ActorClassOptions options;
  };
  struct SocketInfo {
    std::vector<std::string> tags;
    std::string attachment;
  };
  // One object this host has (from `activate` to `release`).
  struct Object {
    std::unique_ptr<Actor> actor;
    std::map<std::uint64_t, SocketInfo> sockets;
    bool activated = false;
  };
  class Ctx;

  explicit Impl(HostOptions o) : options(std::move(o)) {}

  HostOptions options;
  std::map<std::string, Klass> classes;
  asio::io_context io;
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer buffer;
  std::deque<std::string> out;  // io thread only
  bool writing = false;
  std::unique_ptr<asio::thread_pool> pool;
  std::thread io_thread;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> connects{0};
  std::atomic<std::uint64_t> next_id{1};
  std::chrono::milliseconds delay{100};
  std::optional<std::promise<void>> first;  // start()'s wait for the first registration
  std::string first_error;

  Mutex mu;
  std::unordered_map<std::uint64_t, std::promise<json::object>> waiting ROOST_GUARDED_BY(mu);  // id → answer
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> turn_requests ROOST_GUARDED_BY(mu);
  std::unordered_map<std::string, std::shared_ptr<Object>> objects ROOST_GUARDED_BY(mu);
  std::unordered_map<std::uint64_t, bool> aborted ROOST_GUARDED_BY(mu);  // turns the node failed

  // --- io thread ---
  void connect() {
    std::string rest = options.url;
    if (rest.starts_with("http://")) rest = rest.substr(7);
    while (!rest.empty() && rest.back() == '/') rest.pop_back();
    auto colon = rest.rfind(':');
    std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
    std::string port = colon == std::string::npos ? "80" : rest.substr(colon + 1);
    ws.emplace(io);
    auto self = this;
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(io);
    resolver->async_resolve(host, port, [self, resolver, host, port](beast::error_code ec, auto results) {
      if (ec) return self->lost("cannot resolve " + host + ": " + ec.message());
      beast::get_lowest_layer(*self->ws).expires_after(std::chrono::seconds(10));
      beast::get_lowest_layer(*self->ws).async_connect(
          results, [self, host, port](beast::error_code cec, auto) {
            if (cec) return self->lost("cannot connect: " + cec.message());
            beast::get_lowest_layer(*self->ws).expires_never();
            websocket::stream_base::timeout t =
                websocket::stream_base::timeout::suggested(beast::role_type::client);
            self->ws->set_option(t);
            self->ws->read_message_max(64u << 20);
            std::string target = "/v1/hosts/connect";
            if (!self->options.token.empty()) target += "?token=" + self->options.token;
            self->ws->async_handshake(host + ":" + port, target, [self](beast::error_code hec) {
              if (hec) return self->lost("the node refused the host: " + hec.message());
              json::array list;
              for (const auto& [name, k] : self->classes) {
                list.push_back(json::object{{"name", name},
                                            {"max_retries", k.options.max_retries},
                                            {"retry_delay_ms", k.options.retry_delay_ms},
                                            {"dead_letter_queue", k.options.dead_letter_queue}});
              }
              self->write(json::serialize(json::object{{"t", "register"}, {"classes", std::move(list)}}));
              self->read();
            });
          });
    });
  }

  void read() {
    ws->async_read(buffer, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        std::string why(ws->reason().reason.data(), ws->reason().reason.size());
        return lost(why.empty() ? ec.message() : why);
      }
      auto text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      on_frame(text);
      read();
    });
  }

  void write(std::string frame) {
    out.push_back(std::move(frame));
    flush();
  }
  void flush() {
    if (writing || out.empty() || !ws) return;
    writing = true;
    ws->text(true);
    ws->async_write(asio::buffer(out.front()), [this](beast::error_code ec, std::size_t) {
      writing = false;
      out.pop_front();
      if (ec) return;  // the read side notices
      flush();
    });
  }

  // The connection ended: everything in flight is void (the node retries the turns).
  void lost(const std::string& why) {
    writing = false;
    out.clear();
    ws.reset();
    {
      MutexLock lock(mu);
      for (auto& [id, p] : waiting)
        p.set_exception(std::make_exception_ptr(TurnGone("connection lost: " + why)));
      waiting.clear();
      turn_requests.clear();
      objects.clear();
    }
    if (first) {  // the first connection: start() throws
      if (first_error.empty()) first_error = why;
      stopping = true;  // before waking start(), which reads it
      first->set_value();
      first.reset();
      return;
    }
    if (stopping) return;
    module_logger("host")->warn("disconnected from {} ({}); reconnecting in {} ms", options.url, why,
                                delay.count());
    auto timer = std::make_shared<asio::steady_timer>(io, delay);
    delay = std::min(delay * 2, options.reconnect_max);
    timer->async_wait([this, timer](beast::error_code ec) {
      if (!ec && !stopping) connect();
    });
  }

  void on_frame(const std::string& text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) return;
    auto& f = v.get_object();
    auto t = str(f, "t");
    if (t == "registered") {
      connects.fetch_add(1);
      delay = options.reconnect_min;
      if (first) {
        first->set_value();
        first.reset();
      }
    } else if (t == "error") {
      auto* e = f.if_contains("error");
      std::string message = e != nullptr && e->is_object() ? str(e->get_object(), "message") : "error";
      module_logger("host")->warn("node: {}", message);
      if (first) first_error = message;
    } else if (t == "result" || t == "reply") {
      MutexLock lock(mu);
      auto it = waiting.find(u64(f, "id"));
      if (it == waiting.end()) return;
      it->second.set_value(std::move(f));
      waiting.erase(it);
    } else if (t == "turn") {
      asio::post(*pool, [this, f = std::move(f)]() mutable { run_turn(std::move(f)); });
    } else if (t == "release") {
      MutexLock lock(mu);
      objects.erase(str(f, "class") + '\0' + str(f, "object"));
    } else if (t == "abort") {
      auto turn = u64(f, "turn");
      MutexLock lock(mu);
      aborted[turn] = true;
      for (auto id : turn_requests[turn]) {
        if (auto it = waiting.find(id); it != waiting.end()) {
          it->second.set_exception(std::make_exception_ptr(TurnGone("the node aborted the turn")));
          waiting.erase(it);
        }
      }
    }
  }

  // --- any thread ---
  void send(std::string frame) {
    asio::post(io, [this, frame = std::move(frame)]() mutable {
      if (ws) write(std::move(frame));
    });
  }
  // An op with an answer, for the turn `turn`; blocks the turn's thread until it comes.
  json::object request(std::uint64_t turn, json::array ops, json::object op) {
    auto id = next_id.fetch_add(1);
    op["id"] = id;
    ops.push_back(std::move(op));
    std::future<json::object> got;
    {
      MutexLock lock(mu);
      if (aborted.contains(turn)) throw TurnGone("the node aborted the turn");
      got = waiting[id].get_future();
      turn_requests[turn].push_back(id);
    }
    send(json::serialize(json::object{{"t", "op"}, {"turn", turn}, {"ops", std::move(ops)}}));
    return got.get();  // the io thread answers it, or fails it when the connection ends
  }

  void run_turn(json::object f);
};

// A turn's Context: effects are batched and sent with the next request or the `done`.
class Host::Impl::Ctx final : public Context, public Storage {
 public:
  Ctx(Impl& host, const json::object& f, Object& obj)
      : host_(host),
        f_(f),
        obj_(obj),
        turn_(u64(f, "turn")),
        cls_(str(f, "class")),
        name_(str(f, "object")),
        now_(static_cast<std::int64_t>(u64(f, "now_ms"))) {}

  std::string_view object_class() const override { return cls_; }
  std::string_view object_name() const override { return name_; }
  std::int64_t now_ms() const override { return now_; }
  Storage& storage() override { return *this; }

  std::optional<std::string> get(std::string_view key) override {
    auto r = ask(json::object{{"op", "get"}, {"key", key}});
    auto* v = r.if_contains("value");
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return unb64(std::string(v->get_string()));
  }
  void put(std::string_view key, std::string_view value) override {
    effect(json::object{{"op", "put"}, {"key", key}, {"value", base64_encode(value)}});
  }
  bool del(std::string_view key) override {
    auto r = ask(json::object{{"op", "delete"}, {"key", key}});
    auto* e = r.if_contains("existed");
    return e != nullptr && e->is_bool() && e->get_bool();
  }
  using Storage::list;
  std::vector<std::pair<std::string, std::string>> list(const ListOptions& o) override {
    auto r = ask(json::object{{"op", "list"},
                              {"prefix", o.prefix},
                              {"start", o.start},
                              {"end", o.end},
                              {"reverse", o.reverse},
                              {"limit", o.limit}});
    if (auto* e = r.if_contains("error"); e != nullptr && e->is_object()) {
      // (payload_too_large: the answer would pass the node's bound; ask for fewer)
      throw std::length_error(str(e->get_object(), "code") + ": " + str(e->get_object(), "message"));
    }
    std::vector<std::pair<std::string, std::string>> out;
    if (auto* e = r.if_contains("entries"); e != nullptr && e->is_array()) {
      for (const auto& kv : e->get_array()) {
        const auto& a = kv.get_array();
        out.emplace_back(std::string(a[0].get_string()), unb64(std::string(a[1].get_string())));
      }
    }
    return out;
  }

  std::vector<Socket> sockets(std::string_view tag) override {
    std::vector<Socket> out;
    for (const auto& [id, s] : obj_.sockets) {
      if (tag.empty() || std::find(s.tags.begin(), s.tags.end(), tag) != s.tags.end())
        out.push_back(Socket{id});
    }
    return out;
  }
  std::vector<std::string> tags(Socket s) override {
    if (auto it = obj_.sockets.find(s.id); it != obj_.sockets.end()) return it->second.tags;
    return s.id == u64(f_, "socket") ? strings(f_, "tags") : std::vector<std::string>{};
  }
  std::string attachment(Socket s) override {
    if (auto it = obj_.sockets.find(s.id); it != obj_.sockets.end()) return it->second.attachment;
    return s.id == u64(f_, "socket") ? str(f_, "attachment") : std::string();
  }
  void set_attachment(Socket s, std::string data) override {
    if (data.size() > (16u << 10)) throw std::length_error("socket attachments are at most 16 KiB");
    if (auto it = obj_.sockets.find(s.id); it != obj_.sockets.end()) it->second.attachment = data;
    effect(json::object{{"op", "attachment"}, {"socket", s.id}, {"data", std::move(data)}});
  }
  void set_tags(Socket s, std::vector<std::string> tags) override {
    if (tags.size() > 10) throw std::length_error("at most 10 tags a socket");
    json::array a;
    for (const auto& t : tags) a.push_back(json::string(t));
    if (auto it = obj_.sockets.find(s.id); it != obj_.sockets.end()) it->second.tags = std::move(tags);
    effect(json::object{{"op", "tags"}, {"socket", s.id}, {"tags", std::move(a)}});
  }
  void send(Socket s, std::string data) override {
    effect(json::object{{"op", "send"}, {"socket", s.id}, {"data", std::move(data)}});
  }
  void broadcast(std::string data, std::string_view tag) override {
    effect(json::object{{"op", "broadcast"}, {"data", std::move(data)}, {"tag", tag}});
  }
  void close(Socket s, std::uint16_t code, std::string reason) override {
    effect(json::object{{"op", "close"}, {"socket", s.id}, {"code", code}, {"reason", std::move(reason)}});
  }
  void set_auto_response(std::string request, std::string response) override {
    effect(json::object{
        {"op", "auto_response"}, {"request", std::move(request)}, {"response", std::move(response)}});
  }
  void publish(std::string_view subject, std::string data, ContentType type) override {
    json::object o{{"op", "publish"}, {"subject", subject}};
    put_data(o, data, type);
    effect(std::move(o));
  }
  void enqueue(std::string_view queue, std::string data, ContentType type) override {
    json::object o{{"op", "enqueue"}, {"queue", queue}};
    put_data(o, data, type);
    effect(std::move(o));
  }
  void tell(std::string_view cls, std::string_view name, std::string data, ContentType type) override {
    json::object o{{"op", "tell"}, {"class", cls}, {"object", name}};
    put_data(o, data, type);
    effect(std::move(o));
  }
  CallReply call(std::string_view cls, std::string_view name, std::string data, ContentType type,
                 std::uint64_t timeout_ms) override {
    json::object o{{"op", "call"}, {"class", cls}, {"object", name}, {"timeout_ms", timeout_ms}};
    put_data(o, data, type);
    auto r = ask(std::move(o));
    if (auto* e = r.if_contains("error"); e != nullptr && e->is_object()) {
      throw CallError(str(e->get_object(), "code"), str(e->get_object(), "message"));
    }
    return CallReply{data_of(r), type_of(r)};
  }
  void reply(std::string data, ContentType type) override {
    if (str(f_, "kind") != "call") throw std::logic_error("reply() outside on_call");
    json::object r;
    put_data(r, data, type);
    reply_ = std::move(r);
  }
  void set_alarm(std::string_view name, std::int64_t time_ms, std::uint64_t every_ms) override {
    effect(json::object{{"op", "set_alarm"}, {"name", name}, {"time_ms", time_ms}, {"every_ms", every_ms}});
  }
  void cancel_alarm(std::string_view name) override {
    effect(json::object{{"op", "cancel_alarm"}, {"name", name}});
  }
  void subscribe(std::string_view pattern) override {
    effect(json::object{{"op", "subscribe"}, {"pattern", pattern}});
  }
  void unsubscribe(std::string_view pattern) override {
    effect(json::object{{"op", "unsubscribe"}, {"pattern", pattern}});
  }

  // The end of the turn: what is still batched, and the reply or response.
  json::object done(std::optional<HttpResponse> response) {
    json::object d{{"t", "done"}, {"turn", turn_}, {"ops", std::move(ops_)}};
    if (reply_) d["reply"] = std::move(*reply_);
    if (response) {
      json::array headers;
      for (auto& [k, v] : response->headers) headers.push_back(json::array{json::string(k), json::string(v)});
      d["response"] = json::object{{"status", response->status},
                                   {"headers", std::move(headers)},
                                   {"body", base64_encode(response->body)}};
    }
    return d;
  }

 private:
  void effect(json::object op) { ops_.push_back(std::move(op)); }
  json::object ask(json::object op) {
    auto ops = std::move(ops_);
    ops_ = json::array();
    return host_.request(turn_, std::move(ops), std::move(op));
  }

  Impl& host_;
  const json::object& f_;
  Object& obj_;
  std::uint64_t turn_;
  std::string cls_, name_;
  std::int64_t now_;
  json::array ops_;
  std::optional<json::object> reply_;
};

void Host::Impl::run_turn(json::object f) {
  auto turn = u64(f, "turn");
  auto key = str(f, "class") + '\0' + str(f, "object");
  auto kind = str(f, "kind");
  std::shared_ptr<Object> obj;
  {
    MutexLock lock(mu);
    auto& slot = objects[key];
    if (!slot || f.contains("activate")) slot = std::make_shared<Object>();
    obj = slot;
  }
  auto fail = [&](const std::string& why, bool reject) {
    {
      MutexLock lock(mu);
      // A failed turn resets the object in the node (its next turn brings a snapshot); a refused
      // connect does not.
      if (auto it = objects.find(key); !reject && it != objects.end() && it->second == obj) objects.erase(it);
      aborted.erase(turn);
      turn_requests.erase(turn);
    }
    send(json::serialize(json::object{{"t", "fail"}, {"turn", turn}, {"error", why}, {"reject", reject}}));
  };
  try {
    if (!obj->actor) {
      auto k = classes.find(str(f, "class"));
      if (k == classes.end()) return fail("this host has no class " + str(f, "class"), false);
      if (auto* a = f.if_contains("activate"); a != nullptr && a->is_object()) {
        if (auto* ss = a->get_object().if_contains("sockets"); ss != nullptr && ss->is_array()) {
          for (const auto& s : ss->get_array()) {
            const auto& so = s.get_object();
            obj->sockets[u64(so, "id")] = SocketInfo{strings(so, "tags"), str(so, "attachment")};
          }
        }
      }
      obj->actor = k->second.factory();
      if (!obj->actor) throw std::runtime_error("the actor factory returned no actor");
    }
    Ctx ctx(*this, f, *obj);
    Actor& a = *obj->actor;
    if (!obj->activated) {
      obj->activated = true;
      a.on_activate(ctx);
    }
    std::optional<HttpResponse> response;
    if (kind == "message" || kind == "channel") {
      auto data = data_of(f);
      auto subject = str(f, "subject");
      a.on_message(ctx, Message{data, type_of(f), u64(f, "seq"),
                                static_cast<std::uint32_t>(u64(f, "attempt")), subject});
    } else if (kind == "alarm") {
      auto name = str(f, "name");
      a.on_alarm(ctx, AlarmInfo{name, static_cast<std::int64_t>(u64(f, "scheduled_ms")),
                                static_cast<std::uint32_t>(u64(f, "retry_count")), u64(f, "missed")});
    } else if (kind == "call") {
      auto data = data_of(f);
      a.on_call(ctx, Message{data, type_of(f), 0, 1, {}});
    } else if (kind == "fetch") {
      const auto& r = f.at("request").as_object();
      auto headers = headers_of(r);
      auto method = str(r, "method"), path = str(r, "path"), query = str(r, "query");
      auto body = unb64(str(r, "body")), client = str(r, "client_address"), claims = str(r, "claims");
      response = a.on_fetch(ctx, HttpRequest{method, path, query, headers, body, client, claims});
    } else if (kind == "connect") {
      const auto& r = f.at("request").as_object();
      auto headers = headers_of(r);
      auto query = str(r, "query"), origin = str(r, "origin"), protocol = str(r, "protocol"),
           path = str(r, "path");
      auto client = str(r, "client_address"), claims = str(r, "claims");
      Socket s{u64(f, "socket")};
      obj->sockets[s.id] = SocketInfo{};  // among ctx.sockets() during on_connect, as in the node
      try {
        a.on_connect(ctx, s, ConnectRequest{query, origin, protocol, path, headers, client, claims});
      } catch (...) {
        obj->sockets.erase(s.id);
        throw;
      }
    } else if (kind == "socket_message") {
      a.on_socket_message(ctx, Socket{u64(f, "socket")}, str(f, "data"));
    } else if (kind == "disconnect") {
      Socket s{u64(f, "socket")};
      obj->sockets.erase(s.id);  // gone; its tags and attachment come with the frame
      auto code = static_cast<std::uint16_t>(u64(f, "code"));
      auto reason = str(f, "reason");
      a.on_disconnect(ctx, s, CloseInfo{code, reason, code != 1006});
    } else {
      return fail("unknown turn kind " + kind, false);
    }
    send(json::serialize(ctx.done(std::move(response))));
    MutexLock lock(mu);
    turn_requests.erase(turn);
    aborted.erase(turn);
  } catch (const Reject& r) {
    fail(r.what(), kind == "connect");
  } catch (const std::exception& e) {
    fail(e.what(), false);
  }
}

Host::Host(HostOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Host::~Host() { stop(); }

void Host::add(std::string object_class, ActorFactory factory, ActorClassOptions options) {
  impl_->classes[std::move(object_class)] = Impl::Klass{std::move(factory), std::move(options)};
}

void Host::start() {
  auto& d = *impl_;
  d.pool = std::make_unique<asio::thread_pool>(std::max(1u, d.options.threads));
  d.first.emplace();
  auto registered = d.first->get_future();
  d.delay = d.options.reconnect_min;
  asio::post(d.io, [&d] { d.connect(); });
  d.io_thread = std::thread([&d] {
    auto guard = asio::make_work_guard(d.io);
    d.io.run();
  });
  registered.wait();
  if (d.stopping) {
    auto why = d.first_error;
    stop();
    throw std::runtime_error("roost::Host: " + why);
  }
}

void Host::stop() {
  auto& d = *impl_;
  d.stopping = true;
  if (d.io_thread.joinable()) {
    asio::post(d.io, [&d] {
      if (d.ws) {
        beast::error_code ec;
        beast::get_lowest_layer(*d.ws).socket().close(ec);
      }
      d.io.stop();
    });
    d.io_thread.join();
  }
  {
    MutexLock lock(d.mu);
    for (auto& [id, p] : d.waiting) p.set_exception(std::make_exception_ptr(TurnGone("the host stopped")));
    d.waiting.clear();
  }
  if (d.pool) {
    d.pool->join();
    d.pool.reset();
  }
  MutexLock lock(d.mu);
  d.objects.clear();
}

std::uint64_t Host::connections() const { return impl_->connects.load(); }

}  // namespace roost
