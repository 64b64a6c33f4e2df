// The native protocol against the real binary: the C++ SDK (queues, push consumers with their
// window, channels, reconnect, auth, CURVE, ipc://), raw ZeroMQ clients for what the SDK never
// sends (requests before hello, malformed and random frames), and the CLI's pub/sub.
#include <roost/client/client.h>
#include <roost/core/auth.h>
#include <roost/wire/codec.h>

#include <capnp/schema.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "../support/eventually.h"
#include "../support/raw_native_client.h"
#include "http_fixture.h"

using namespace roost::test;
using namespace std::chrono_literals;
using roost::Client;
using roost::ClientOptions;
using roost::ContentType;
using roost::ErrorCode;
using roost::NewMessage;

namespace {

std::shared_ptr<Client> connect(const RoostProcess& p, ClientOptions o = {}) {
  o.url = p.endpoint();
  if (o.heartbeat == 1000ms) o.heartbeat = 200ms;
  auto c = Client::connect(o);
  INFO("connect: " << (c ? "" : c.error().message));
  REQUIRE(c);
  return *c;
}

NewMessage msg(std::string body, ContentType t = ContentType::kJson) {
  NewMessage m;
  m.body = std::move(body);
  m.content_type = t;
  return m;
}

std::string cap_name(ErrorCode c) {
  auto schema = capnp::Schema::from<roost::proto::ErrorCode>();
  for (auto e : schema.getEnumerants()) {
    if (e.getOrdinal() == static_cast<unsigned>(c)) return e.getProto().getName();
  }
  return "";
}

}  // namespace

TEST_CASE("every schema error code has a stable snake_case name and an HTTP status", "[native][unit]") {
  auto enumerants = capnp::Schema::from<roost::proto::ErrorCode>().getEnumerants();
  REQUIRE(enumerants.size() >= 20);
  for (auto e : enumerants) {
    auto code = static_cast<ErrorCode>(e.getOrdinal());
    std::string camel = e.getProto().getName();
    std::string snake;
    for (char ch : camel) {
      if (std::isupper(static_cast<unsigned char>(ch))) {
        snake += '_';
        snake += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      } else {
        snake += ch;
      }
    }
    CHECK(roost::error_code_name(code) == snake);
    CHECK(roost::error_http_status(code) >= 200);
  }
  CHECK(cap_name(ErrorCode::QUEUE_NOT_FOUND) == "queueNotFound");
  CHECK(static_cast<unsigned>(ErrorCode::HELLO_REQUIRED) == 19);
}

TEST_CASE("encode_to writes the same frame as messageToFlatArray, one or many segments", "[native][unit]") {
  for (unsigned first_words : {1024u, 4u}) {  // 4 words: the message spills over many segments
    capnp::MallocMessageBuilder b(first_words, capnp::AllocationStrategy::FIXED_SIZE);
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(42);
    auto list = env.initMessage().initMessages(50);
    for (unsigned i = 0; i < 50; ++i) {
      list[i].setChannel(roost::wire::text("chat.room" + std::to_string(i)));
      list[i].setOffset(i);
    }
    auto flat = roost::wire::encode(b);
    auto want = flat.asBytes();
    REQUIRE(roost::wire::encoded_size(b) == want.size());
    std::vector<capnp::word> out(want.size() / sizeof(capnp::word));
    roost::wire::encode_to(b, out.data(), want.size());
    CHECK(std::memcmp(out.data(), want.begin(), want.size()) == 0);
    CHECK(b.getSegmentsForOutput().size() >= (first_words == 4 ? 2u : 1u));
    roost::wire::EnvelopeReader r(out.data(), want.size());
    CHECK(r.get().getId() == 42);
    CHECK(r.get().getMessage().getMessages()[49].getChannel() == "chat.room49");
    CHECK_THROWS(roost::wire::encode_to(b, out.data(), want.size() - 8));
  }
}

TEST_CASE("SDK: a bad url or an absent node is an error, not a crash", "[native][unit]") {
  auto bad = Client::connect({.url = "tcp://not a host:x"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::INVALID_ARGUMENT);
  auto scheme = Client::connect({.url = "http://127.0.0.1:1"});
  REQUIRE_FALSE(scheme);
  CHECK(scheme.error().code == ErrorCode::INVALID_ARGUMENT);
  ClientOptions nobody;
  nobody.url = "tcp://127.0.0.1:1";  // nothing listens there
  nobody.connect_timeout = 300ms;
  auto none = Client::connect(nobody);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == ErrorCode::UNAVAILABLE);
}

TEST_CASE("SDK: enqueue, pull, ack, retry, extend and queue admin over the native protocol",
          "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  REQUIRE(c->connected());

  roost::QueueConfigPatch patch;
  patch.max_retries = 1;
  patch.visibility_timeout_ms = 60'000;
  auto info = c->put_queue("jobs", patch);
  REQUIRE(info);
  CHECK(info->config.max_retries == 1);

  std::vector<NewMessage> batch;
  batch.push_back(msg(R"({"n":1})"));
  batch.push_back(msg("plain text", ContentType::kText));
  batch.push_back(msg(std::string("\0\x01\xff bytes", 9), ContentType::kBytes));
  auto ids = c->enqueue("jobs", std::move(batch));
  REQUIRE(ids);
  REQUIRE(ids->size() == 3);

  roost::PullOptions po;
  po.batch_size = 10;
  auto got = c->pull("jobs", po);
  REQUIRE(got);
  REQUIRE(got->size() == 3);
  CHECK((*got)[0].body == R"({"n":1})");
  CHECK((*got)[0].content_type == ContentType::kJson);
  CHECK((*got)[1].body == "plain text");
  CHECK((*got)[1].content_type == ContentType::kText);
  CHECK((*got)[2].body == std::string("\0\x01\xff bytes", 9));
  CHECK((*got)[2].content_type == ContentType::kBytes);
  CHECK((*got)[0].attempts == 1);
  CHECK((*got)[0].id == (*ids)[0]);

  // ack one, retry one (no delay), extend the third.
  auto acked = c->ack("jobs", {(*got)[0].lease_id}, {roost::RetryRequest{(*got)[1].lease_id, 0}});
  REQUIRE(acked);
  CHECK(acked->acked == 1);
  CHECK(acked->retried == 1);
  auto ext = c->extend("jobs", {(*got)[2].lease_id, "0000000000000063-0000000000000001"}, 120'000ms);
  REQUIRE(ext);
  CHECK(ext->extended == 1);
  CHECK(ext->unknown.size() == 1);

  auto again = c->pull("jobs", po);
  REQUIRE(again);
  REQUIRE(again->size() == 1);  // the retried one; the extended one is still leased
  CHECK(again->front().body == "plain text");
  CHECK(again->front().attempts == 2);

  // The endpoint's counters are on /metrics.
  auto metrics = s.http().get("/metrics").body;
  CHECK(metrics.find("roost_endpoint_sessions 1") != std::string::npos);
  CHECK(metrics.find("roost_endpoint_requests_total") != std::string::npos);

  auto stats = c->get_queue("jobs");
  REQUIRE(stats);
  CHECK(stats->stats.in_flight == 2);
  CHECK(stats->stats.acked == 1);
  auto all = c->list_queues();
  REQUIRE(all);
  CHECK(all->size() == 1);

  // Long poll: answered when a message arrives.
  std::thread late([&] {
    std::this_thread::sleep_for(300ms);
    auto c2 = connect(s.proc());
    (void)c2->enqueue("jobs", {msg("42")});
  });
  auto t0 = std::chrono::steady_clock::now();
  auto waited = c->pull("jobs", po, 5000ms);
  late.join();
  REQUIRE(waited);
  REQUIRE(waited->size() == 1);
  CHECK(waited->front().body == "42");
  CHECK(std::chrono::steady_clock::now() - t0 < 4s);

  // Dead letter, then redrive.
  REQUIRE(c->put_queue("jobs-dlq"));
  roost::QueueConfigPatch dl;
  dl.dead_letter_queue = "jobs-dlq";
  dl.max_retries = 0;
  REQUIRE(c->put_queue("failing", dl));
  REQUIRE(c->enqueue("failing", {msg("1")}));
  auto f = c->pull("failing", po);
  REQUIRE(f);
  REQUIRE(f->size() == 1);
  REQUIRE(c->ack("failing", {}, {roost::RetryRequest{f->front().lease_id, 0}}));
  CHECK(c->get_queue("jobs-dlq")->stats.messages == 1);
  auto moved = c->redrive("jobs-dlq", "failing");
  REQUIRE(moved);
  CHECK(*moved == 1);
  // Peek leases nothing; purge deletes every message and keeps the queue.
  REQUIRE(c->enqueue("failing", {msg("2"), msg("3")}));
  auto peeked = c->peek("failing", 2);
  REQUIRE(peeked);
  REQUIRE(peeked->size() == 2);
  CHECK(peeked->front().lease_id.empty());
  CHECK(c->get_queue("failing")->stats.in_flight == 0);
  auto purged = c->purge_queue("failing");
  REQUIRE(purged);
  CHECK(*purged == 3);
  CHECK(c->get_queue("failing")->stats.messages == 0);
  CHECK(c->get_queue("failing")->stats.purged == 3);
  CHECK(c->purge_queue("never-made").error().code == ErrorCode::QUEUE_NOT_FOUND);
  REQUIRE(c->delete_queue("failing"));
  CHECK(c->get_queue("failing").error().code == ErrorCode::QUEUE_NOT_FOUND);
}

TEST_CASE("SDK: every error code the native protocol can answer", "[integration][native]") {
  Server s({"--max-message-bytes", "1024", "--auto-create-queues", "false"});
  auto c = connect(s.proc());
  auto code = [](const auto& r) { return r ? ErrorCode::OK : r.error().code; };
  CHECK(code(c->enqueue("nosuch", {msg("1")})) == ErrorCode::QUEUE_NOT_FOUND);
  CHECK(code(c->put_queue("bad name!")) == ErrorCode::INVALID_NAME);
  REQUIRE(c->put_queue("q"));
  CHECK(code(c->enqueue("q", {msg(std::string(2000, 'x'), ContentType::kText)})) ==
        ErrorCode::MESSAGE_TOO_LARGE);
  CHECK(code(c->enqueue("q", {msg("{not json")})) == ErrorCode::MALFORMED);
  CHECK(code(c->enqueue("q", {})) == ErrorCode::INVALID_ARGUMENT);
  roost::PullOptions big;
  big.batch_size = 5000;
  CHECK(code(c->pull("q", big)) == ErrorCode::INVALID_ARGUMENT);
  CHECK(code(c->redrive("q", "q")) == ErrorCode::CONFLICT);
  roost::QueueConfigPatch cap;
  cap.max_messages = 1;
  REQUIRE(c->put_queue("small", cap));
  REQUIRE(c->enqueue("small", {msg("1")}));
  CHECK(code(c->enqueue("small", {msg("2")})) == ErrorCode::QUEUE_FULL);
  CHECK(code(c->publish_sync("bad..subject", "1")) == ErrorCode::INVALID_ARGUMENT);
  CHECK(code(c->publish_sync("ok.subject", "{oops")) == ErrorCode::MALFORMED);
  CHECK(code(c->subscribe("a.>.b", [](const roost::ChannelMessage&) {})) == ErrorCode::INVALID_ARGUMENT);

  RawClient raw(s.proc().endpoint());
  // Before hello: hello_required, whatever the request.
  ErrorCode e = ErrorCode::OK;
  CHECK(raw.list_queues(5, &e) == roost::proto::Envelope::ERROR);
  CHECK(e == ErrorCode::HELLO_REQUIRED);
  raw.hello();
  CHECK(raw.list_queues(6) == roost::proto::Envelope::QUEUES);
  {
    // Cancel of a stream that does not exist: not_found. Object requests: unavailable (reserved).
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(7);
    env.initCancel().setStream(999);
    raw.send(b);
    auto r = raw.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    REQUIRE(rd.get().isError());
    CHECK(rd.get().getError().getCode() == ErrorCode::NOT_FOUND);
  }
  {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(8);
    auto send = env.initObjectSend();
    send.setClass("nosuch");  // this node has no actor classes
    send.setName("x");
    raw.send(b, {"{}"});
    auto r = raw.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    CHECK(rd.get().getError().getCode() == ErrorCode::CLASS_NOT_FOUND);
  }
  {
    // An enqueue whose payload frames don't match its description: malformed.
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(9);
    auto enq = env.initEnqueue();
    enq.setQueue("q");
    enq.initMessages(2);
    raw.send(b, {"1"});
    auto r = raw.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    CHECK(rd.get().getError().getCode() == ErrorCode::MALFORMED);
  }
  {
    // A hello speaking another protocol version: invalid_argument.
    RawClient other(s.proc().endpoint());
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(1);
    env.initHello().setProtocolVersion(99);
    other.send(b);
    auto r = other.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    CHECK(rd.get().getError().getCode() == ErrorCode::INVALID_ARGUMENT);
  }
  // A node that stops answering: the request times out on the client.
  ClientOptions quick;
  quick.request_timeout = 500ms;
  quick.heartbeat = 5000ms;
  auto q = connect(s.proc(), quick);
  kill(s.proc().pid(), SIGSTOP);
  // kill() returns before every thread of the target has stopped: let it settle.
  std::this_thread::sleep_for(100ms);
  auto t = q->list_queues();
  auto sub = q->subscribe("late.x", [](const roost::ChannelMessage&) {});
  kill(s.proc().pid(), SIGCONT);
  REQUIRE_FALSE(t);
  CHECK(t.error().code == ErrorCode::TIMEOUT);
  REQUIRE_FALSE(sub);
  CHECK(sub.error().code == ErrorCode::TIMEOUT);
  // The node opens that subscription once it runs again; the client's cancel must close it.
  auto subscriptions = [&] {
    auto text = s.http().get("/metrics").body;
    const std::string key = "\nroost_channel_subscriptions ";
    auto at = text.find(key);
    return at == std::string::npos ? 999ULL : std::stoull(text.substr(at + key.size()));
  };
  // An answer on the same connection: the subscribe sent before it has been handled (and the
  // cancel, sent at the timeout, with it or just after).
  REQUIRE(q->list_queues());
  CHECK(eventually([&] { return subscriptions() == 0; }));
}

TEST_CASE("SDK: many requests in flight on one connection, answers matched by id", "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  roost::Producer p(*c, "pipe", 64);
  constexpr int kN = 2000;
  std::mutex mu;
  std::vector<std::string> ids(kN);
  std::atomic<int> failed{0};
  for (int i = 0; i < kN; ++i) {
    p.send_async(msg(std::to_string(i)), [&, i](roost::Result<std::string> r) {
      if (!r) {
        failed++;
        return;
      }
      std::lock_guard lock(mu);
      ids[static_cast<std::size_t>(i)] = *r;
    });
  }
  p.flush();
  CHECK(failed == 0);
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique.size() == static_cast<std::size_t>(kN));
  // The ids are increasing in send order: answers reached the right callbacks.
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  // Pull everything back: each body once, the body matching its id's send order.
  roost::PullOptions po;
  po.batch_size = 1000;
  std::map<std::string, std::string> bodies;
  for (int round = 0; round < 5 && bodies.size() < kN; ++round) {
    auto got = c->pull("pipe", po);
    REQUIRE(got);
    for (auto& m : *got) bodies[m.id] = m.body;
  }
  REQUIRE(bodies.size() == static_cast<std::size_t>(kN));
  for (int i : {0, 1, 999, kN - 1}) CHECK(bodies[ids[static_cast<std::size_t>(i)]] == std::to_string(i));
  auto fut = p.send_async(msg("\"future\""));
  auto r = fut.get();
  CHECK(r);
  // The producer coalesced what waited for the window: far fewer requests than messages.
  auto requests_metric = [&] {
    auto text = s.http().get("/metrics").body;
    const std::string key = "\nroost_endpoint_requests_total ";
    auto at = text.find(key);
    REQUIRE(at != std::string::npos);
    return std::stoull(text.substr(at + key.size()));
  };
  CHECK(requests_metric() < static_cast<unsigned long long>(kN) / 2);

  // Without the producer, each enqueue_async is its own request: 500 pipelined on the connection.
  auto before = requests_metric();
  std::atomic<int> answered{0};
  std::vector<std::string> raw_ids(500);
  for (int i = 0; i < 500; ++i) {
    c->enqueue_async("pipe2", {msg(std::to_string(i))}, [&, i](roost::Result<std::vector<std::string>> rr) {
      std::lock_guard lock(mu);
      raw_ids[static_cast<std::size_t>(i)] = rr ? rr->front() : "error: " + rr.error().message;
      answered++;
    });
  }
  for (int i = 0; i < 500 && answered < 500; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(answered == 500);
  INFO("first answer: " << raw_ids[0]);
  CHECK(std::is_sorted(raw_ids.begin(), raw_ids.end()));
  CHECK(std::set<std::string>(raw_ids.begin(), raw_ids.end()).size() == 500);
  auto after = requests_metric();
  INFO("requests before " << before << " after " << after);
  CHECK(after - before >= 500);

  // A large window: once 256 messages wait behind the first request a second one goes out too;
  // every message is answered, in send order.
  roost::Producer wide(*c, "pipe3", 1000);
  constexpr int kWide = 6000;
  std::vector<std::string> wide_ids(kWide);
  for (int i = 0; i < kWide; ++i) {
    wide.send_async(msg(std::to_string(i)), [&, i](roost::Result<std::string> id) {
      std::lock_guard lock(mu);
      wide_ids[static_cast<std::size_t>(i)] = id ? *id : "error: " + id.error().message;
    });
  }
  wide.flush();
  INFO("first answer: " << wide_ids[0]);
  CHECK(std::is_sorted(wide_ids.begin(), wide_ids.end()));
  CHECK(std::set<std::string>(wide_ids.begin(), wide_ids.end()).size() == static_cast<std::size_t>(kWide));
  CHECK(c->get_queue("pipe3")->stats.messages == static_cast<std::uint64_t>(kWide));
}

TEST_CASE("SDK: push consumer keeps at most max_in_flight unsettled", "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  std::vector<NewMessage> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(msg(std::to_string(i)));
  REQUIRE(c->enqueue("work", std::move(batch)));
  std::mutex mu;
  std::vector<roost::Delivery> held;
  roost::ConsumeOptions co;
  co.max_in_flight = 5;
  auto stream = c->consume(
      "work",
      [&](const roost::Delivery& d) {
        std::lock_guard lock(mu);
        held.push_back(d);
      },
      co);
  REQUIRE(stream);
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return held.size() == 5;
  }));
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard lock(mu);
    CHECK(held.size() == 5);  // the window is full: nothing more comes
    held[0].ack();
    held[1].ack();
  }
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return held.size() == 7;
  }));
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard lock(mu);
    CHECK(held.size() == 7);
    // In order, each once.
    for (std::size_t i = 0; i < held.size(); ++i) CHECK(held[i].message.body == std::to_string(i));
  }
  // End the first consumer (what it holds stays leased to us), then settle everything as it
  // comes through a second one.
  stream->reset();
  std::atomic<int> seen{0};
  auto drain = c->consume(
      "work",
      [&](const roost::Delivery& d) {
        seen++;
        d.ack();
      },
      co);
  REQUIRE(drain);
  {
    std::lock_guard lock(mu);
    for (std::size_t i = 2; i < held.size(); ++i) held[i].ack();
  }
  REQUIRE(eventually([&] { return c->get_queue("work")->stats.messages == 0; }));
  CHECK(seen == 43);
}

TEST_CASE("SDK: leases of a client that goes silent are released at once", "[integration][native]") {
  Server s;
  auto producer = connect(s.proc());
  roost::QueueConfigPatch patch;
  patch.visibility_timeout_ms = 600'000;  // without the release these would stay leased 10 min
  REQUIRE(producer->put_queue("jobs", patch));
  std::vector<NewMessage> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(msg(std::to_string(i)));
  REQUIRE(producer->enqueue("jobs", std::move(batch)));

  ClientOptions fast;
  fast.heartbeat = 100ms;
  auto doomed = connect(s.proc(), fast);
  std::atomic<int> got{0};
  roost::ConsumeOptions co;
  co.max_in_flight = 10;
  auto stream = doomed->consume(
      "jobs", [&](const roost::Delivery&) { got++; }, co);
  REQUIRE(stream);
  REQUIRE(eventually([&] { return got == 10; }));
  CHECK(producer->get_queue("jobs")->stats.in_flight == 10);
  doomed->close();  // the socket closes; no goodbye: the node sees silence
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return producer->get_queue("jobs")->stats.ready == 10; }, 5s));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  roost::PullOptions po;
  po.batch_size = 10;
  auto again = producer->pull("jobs", po);
  REQUIRE(again);
  REQUIRE(again->size() == 10);
  CHECK(again->front().attempts == 2);
}

TEST_CASE("SDK: channels — wildcards, content types, recent history, lag notices", "[integration][native]") {
  Server s({"--channel-namespaces", "hist.:history=10;slow.:buffer_messages=8"});
  auto c = connect(s.proc());
  std::mutex mu;
  std::vector<roost::ChannelMessage> got;
  auto sub = c->subscribe("chat.*", [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    got.push_back(m);
  });
  REQUIRE(sub);
  auto other = connect(s.proc());
  auto r1 = other->publish_sync("chat.room1", R"({"t":"hi"})");
  REQUIRE(r1);
  CHECK(r1->subscribers == 1);
  other->publish("chat.room2", "text body", ContentType::kText);
  other->publish("news.x", "1");  // not matched
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() == 2;
  }));
  {
    std::lock_guard lock(mu);
    CHECK(got[0].channel == "chat.room1");
    CHECK(got[0].data == R"({"t":"hi"})");
    CHECK(got[0].offset == 1);
    CHECK(got[0].epoch == r1->epoch);
    CHECK(got[1].content_type == ContentType::kText);
    CHECK(got[1].data == "text body");
  }
  // Cancel: no more messages.
  sub->reset();
  REQUIRE(other->publish_sync("chat.room1", "2"));
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard lock(mu);
    CHECK(got.size() == 2);
  }

  // Recent history on subscribe.
  for (int i = 1; i <= 15; ++i) REQUIRE(other->publish_sync("hist.a", std::to_string(i)));
  std::vector<std::string> recent;
  roost::SubscribeOptions so;
  so.recent = 3;
  auto h = c->subscribe(
      "hist.a",
      [&](const roost::ChannelMessage& m) {
        std::lock_guard lock(mu);
        recent.push_back(m.data);
      },
      so);
  REQUIRE(h);
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return recent.size() == 3;
  }));
  {
    std::lock_guard lock(mu);
    CHECK(recent == std::vector<std::string>{"13", "14", "15"});
  }

  // A subscriber whose handler is slow loses messages and is told how many.
  std::atomic<std::uint64_t> lost{0};
  std::atomic<int> slow_seen{0};
  roost::SubscribeOptions lag;
  lag.on_lag = [&](std::uint64_t n) { lost += n; };
  auto slow_client = connect(s.proc());
  std::atomic<bool> gate{false};
  auto slow = slow_client->subscribe(
      "slow.x",
      [&](const roost::ChannelMessage&) {
        while (!gate) std::this_thread::sleep_for(1ms);
        slow_seen++;
      },
      lag);
  REQUIRE(slow);
  // The handler blocks on the first message; the node's buffer for this subscriber (8) and the
  // client's own queue overflow, and the losses are reported.
  std::string body = "\"" + std::string(1000, 'x') + "\"";
  for (int i = 0; i < 20'000; ++i) other->publish("slow.x", body);
  REQUIRE(other->publish_sync("slow.x", "0"));
  gate = true;
  REQUIRE(eventually([&] { return lost > 0; }, 10s));
  CHECK(slow_seen < 20'001);
  // The publisher and other subscribers were never held back: a fresh publish answers at once.
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(other->publish_sync("chat.room1", "3"));
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

// The client reconnects after a node restart and re-opens its streams. Its subscription's handler
// captures this frame's state by reference, as applications do.
void reconnect_and_reopen() {
  Server s({"--channel-history", "100"});
  ClientOptions o;
  o.heartbeat = 100ms;
  o.request_timeout = 10s;
  auto c = connect(s.proc(), o);
  std::mutex mu;
  std::vector<std::string> got;
  auto sub = c->subscribe("room.1", [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    got.push_back(m.data);
  });
  REQUIRE(sub);
  REQUIRE(c->enqueue("jobs", {msg("1")}));
  s.proc().restart();  // SIGTERM, start again on the same endpoint; queues survive
  // A request made once the client knows the connection is gone waits for it to come back; one
  // in flight when the client notices fails `unavailable` ("may or may not have been applied"),
  // so the producer retries with a dedup id, as a real one would.
  NewMessage two = msg("2");
  two.id = "message-two";
  roost::Result<std::vector<std::string>> ids;
  for (int attempt = 0; attempt < 3; ++attempt) {
    ids = c->enqueue("jobs", {two});
    if (ids || ids.error().code != ErrorCode::UNAVAILABLE) break;
  }
  INFO((ids ? "" : ids.error().message));
  REQUIRE(ids);
  REQUIRE(eventually([&] { return c->connected(); }));
  auto pub = connect(s.proc());
  // The subscription is re-opened after the new hello; publish until it is back.
  REQUIRE(eventually([&] {
    (void)pub->publish_sync("room.1", "\"after\"");
    std::lock_guard lock(mu);
    return !got.empty();
  }));
  CHECK(got.back() == "\"after\"");
  roost::PullOptions po;
  po.batch_size = 10;
  auto all = c->pull("jobs", po);
  REQUIRE(all);
  CHECK(all->size() == 2);
}

TEST_CASE("SDK: the client reconnects after a node restart and re-opens its streams",
          "[integration][native]") {
  reconnect_and_reopen();
}

// Issue 27 §3: "double free or corruption" at the end of the test above, about one run in seven
// on a loaded machine. The subscription's handler still ran from the client's dispatch queue
// after the test's frame (its mutex and vector) was gone: destroying a Stream did not wait for,
// nor stop, the handler calls queued for it. Now it does (StreamGate).
TEST_CASE("SDK: a destroyed Stream's handler never runs again (stress: restarts while streams re-open)",
          "[integration][native]") {
  for (int i = 0; i < 8; ++i) reconnect_and_reopen();
}

TEST_CASE("SDK: once a Stream is destroyed, none of its handlers runs or is running",
          "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  auto pub = connect(s.proc());
  std::atomic<int> seen{0}, after{0};
  std::atomic<bool> gone{false};
  auto sub = c->subscribe("burst", [&](const roost::ChannelMessage&) {
    if (gone) ++after;
    std::this_thread::sleep_for(1ms);  // a slow handler: the rest waits in the dispatch queue
    ++seen;
  });
  REQUIRE(sub);
  for (int i = 0; i < 500; ++i) pub->publish("burst", std::to_string(i));
  REQUIRE(pub->publish_sync("burst", "500"));
  REQUIRE(eventually([&] { return seen > 0; }));
  sub->reset();  // (the Stream)
  gone = true;
  std::this_thread::sleep_for(300ms);
  CHECK(after == 0);  // (before: the queued batches went on running)
  CHECK(seen < 501);  // there was a backlog to stop
}

TEST_CASE("SDK: a subscriber resumes a channel from its last offset after a reconnect",
          "[integration][native]") {
  Server s({"--channel-history", "100", "--heartbeat-ms", "100"});
  ClientOptions o;
  o.heartbeat = 100ms;
  auto c = connect(s.proc(), o);
  std::mutex mu;
  std::vector<std::string> got;
  auto sub = c->subscribe("feed.a", [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    got.push_back(m.data);
  });
  REQUIRE(sub);
  auto pub = connect(s.proc());
  REQUIRE(pub->publish_sync("feed.a", "1"));
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() == 1;
  }));
  // Freeze the subscriber's process side: stop its heartbeats by pausing the node long enough
  // for the client to give up on the connection, then publish while it is away.
  kill(s.proc().pid(), SIGSTOP);
  std::this_thread::sleep_for(500ms);  // the client sees 3 missed heartbeats and reconnects
  kill(s.proc().pid(), SIGCONT);
  // Meanwhile the node ends the old session (its heartbeats stopped arriving too).
  REQUIRE(pub->publish_sync("feed.a", "2"));
  REQUIRE(pub->publish_sync("feed.a", "3"));
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() >= 3;
  }));
  std::lock_guard lock(mu);
  // Each message once, in order: the gap was filled from history, nothing repeated.
  CHECK(got == std::vector<std::string>{"1", "2", "3"});
  CHECK(c->reconnects() >= 1);
}

TEST_CASE("native auth: hello needs a valid token; grants apply per queue and channel",
          "[integration][native]") {
  const std::string secret = "native-secret";
  Server s({"--auth-secret", secret});
  ClientOptions none;
  none.url = s.proc().endpoint();
  auto refused = Client::connect(none);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::UNAUTHORIZED);
  ClientOptions forged = none;
  forged.token = roost::sign_jwt("wrong", R"({"roost":{"queues":[">"]}})");
  auto f = Client::connect(forged);
  REQUIRE_FALSE(f);
  CHECK(f.error().code == ErrorCode::UNAUTHORIZED);

  ClientOptions ok = none;
  ok.token =
      roost::sign_jwt(secret, R"({"roost":{"queues":["jobs"],"publish":["news.>"],"subscribe":["news.*"]}})");
  auto c = Client::connect(ok);
  REQUIRE(c);
  CHECK((*c)->enqueue("jobs", {msg("1")}));
  CHECK((*c)->enqueue("other", {msg("1")}).error().code == ErrorCode::FORBIDDEN);
  CHECK((*c)->publish_sync("news.a", "1"));
  CHECK((*c)->publish_sync("chat.a", "1").error().code == ErrorCode::FORBIDDEN);
  CHECK((*c)->subscribe("news.*", [](const roost::ChannelMessage&) {}));
  CHECK((*c)->subscribe("news.>", [](const roost::ChannelMessage&) {}).error().code == ErrorCode::FORBIDDEN);
  auto listed = (*c)->list_queues();
  REQUIRE(listed);
  for (const auto& q : *listed) CHECK(q.name == "jobs");
}

TEST_CASE("native endpoint over ipc:// and with CURVE encryption", "[integration][native]") {
  TempDir dir("roost-ipc");
  std::string ipc = "ipc://" + (dir.path() / "roost.sock").string();
  Server s({"--endpoint", ipc});
  CHECK(s.proc().endpoint() == ipc);
  auto c = connect(s.proc());
  CHECK(c->enqueue("q", {msg("1")}));

  char pub[41], sec[41];
  REQUIRE(zmq_curve_keypair(pub, sec) == 0);
  Server e({"--endpoint-curve-secret", sec});
  ClientOptions with_key;
  with_key.curve_server_key = pub;
  auto secure = connect(e.proc(), with_key);
  CHECK(secure->enqueue("q", {msg("1")}));
  ClientOptions plain;
  plain.url = e.proc().endpoint();
  plain.connect_timeout = 500ms;
  auto refused = Client::connect(plain);  // a plain client cannot even say hello
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::UNAVAILABLE);
}

TEST_CASE("random and mutated frames neither crash nor wedge the endpoint", "[integration][native]") {
  Server s;
  std::mt19937_64 rng(20261127);
  // Valid frames to mutate: a hello, an enqueue, a subscribe.
  std::vector<std::string> seeds;
  {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(3);
    auto enq = env.initEnqueue();
    enq.setQueue("fuzz");
    auto l = enq.initMessages(2);
    l[0].setKey("k");
    l[1].setId("dup");
    auto w = roost::wire::encode(b);
    seeds.emplace_back(reinterpret_cast<const char*>(w.asBytes().begin()), w.asBytes().size());
  }
  {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(4);
    env.initSubscribe().setPattern("a.*");
    auto w = roost::wire::encode(b);
    seeds.emplace_back(reinterpret_cast<const char*>(w.asBytes().begin()), w.asBytes().size());
  }
  RawClient fuzz(s.proc().endpoint());
  fuzz.hello();
  int sent = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  for (int i = 0; i < 3000 && std::chrono::steady_clock::now() < deadline; ++i) {
    std::vector<zmq::message_t> frames;
    std::size_t parts = 1 + rng() % 4;
    for (std::size_t p = 0; p < parts; ++p) {
      std::string f;
      if (p == 0 && rng() % 2 == 0) {
        f = seeds[rng() % seeds.size()];
        for (int flips = 1 + static_cast<int>(rng() % 6); flips > 0; --flips) {
          f[rng() % f.size()] = static_cast<char>(rng());
        }
        if (rng() % 4 == 0) f.resize(rng() % f.size());
      } else {
        f.resize(rng() % 200);
        for (auto& ch : f) ch = static_cast<char>(rng());
      }
      frames.emplace_back(f.data(), f.size());
    }
    fuzz.send_frames(std::move(frames));
    ++sent;
  }
  CHECK(sent > 100);
  // Whatever came back, the node still serves: a fresh client works, and so does the fuzzer's
  // session after draining its answers.
  auto c = connect(s.proc());
  auto after = c->enqueue("after-fuzz", {msg("1")});
  INFO("enqueue after the fuzz: " << (after ? "ok" : after.error().message));
  CHECK(after);
  CHECK(c->publish_sync("after.fuzz", "1"));
  int status = 0;
  CHECK(waitpid(s.proc().pid(), &status, WNOHANG) == 0);
  auto http = s.http().get("/healthz");
  CHECK(http.status == 200);
}

TEST_CASE("CLI: roost pub and roost sub over the native protocol", "[integration][native][cli]") {
  Server s;
  std::string out_path =
      (std::filesystem::temp_directory_path() / ("roost-sub-" + std::to_string(getpid()))).string();
  std::string cmd =
      std::string(ROOST_BINARY) + " sub 'cli.*' --count 2 --url " + s.proc().endpoint() + " > " + out_path;
  std::thread sub([&] { REQUIRE(std::system(cmd.c_str()) == 0); });
  auto c = connect(s.proc());
  // Publish until the subscriber is there (it counts as a subscriber in the answer).
  REQUIRE(eventually([&] {
    auto r = c->publish_sync("cli.ping", "0");
    return r && r->subscribers == 1;
  }));
  std::string pub =
      std::string(ROOST_BINARY) + " pub cli.a '{\"k\":1}' --url " + s.proc().endpoint() + " > /dev/null";
  REQUIRE(std::system(pub.c_str()) == 0);
  sub.join();
  std::ifstream in(out_path);
  std::string line1, line2;
  std::getline(in, line1);
  std::getline(in, line2);
  std::filesystem::remove(out_path);
  CHECK(line1.find(R"("channel":"cli.ping")") != std::string::npos);
  auto v = json::parse(line2);
  CHECK(v.at("channel") == "cli.a");
  CHECK(v.at("data").at("k") == 1);
  // And the queue commands with --url tcp://.
  std::string push = std::string(ROOST_BINARY) + " queue push clijobs '{\"x\":1}' --url " +
                     s.proc().endpoint() + " > /dev/null";
  CHECK(std::system(push.c_str()) == 0);
  CHECK(c->get_queue("clijobs")->stats.messages == 1);
  std::string bad =
      std::string(ROOST_BINARY) + " pub 'bad..x' 1 --url " + s.proc().endpoint() + " 2>/dev/null";
  CHECK(WEXITSTATUS(std::system(bad.c_str())) == 1);
}

TEST_CASE("publishBatch: packed payloads in, packed or per-frame payloads out", "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  std::mutex mu;
  std::vector<roost::ChannelMessage> got;
  auto sub = c->subscribe("pb.>", [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    got.push_back(m);
  });
  REQUIRE(sub);
  // Fire-and-forget publishes from the SDK travel as publishBatch; a large one (> 4 KiB) comes
  // back in its own frame, small ones packed. Order is kept.
  std::string big(10'000, 'b');
  for (int i = 0; i < 300; ++i) {
    if (i == 150) {
      c->publish("pb.big", big, ContentType::kText);
    } else {
      c->publish("pb.n", std::to_string(i));
    }
  }
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() == 300;
  }));
  {
    std::lock_guard lock(mu);
    for (int i = 0; i < 300; ++i) {
      if (i == 150) {
        CHECK(got[150].data == big);
        CHECK(got[150].channel == "pb.big");
      } else {
        CHECK(got[static_cast<std::size_t>(i)].data == std::to_string(i));
      }
    }
  }
  // 120 publishes of 5 KiB with alternating channels fill more than one batch by bytes (256 KiB);
  // every one arrives, in order, on its channel.
  {
    std::lock_guard lock(mu);
    got.clear();
  }
  for (int i = 0; i < 120; ++i) {
    c->publish(i % 2 == 0 ? "pb.even" : "pb.odd", std::string(5000, static_cast<char>('a' + i % 26)),
               ContentType::kText);
  }
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() == 120;
  }));
  {
    std::lock_guard lock(mu);
    for (int i = 0; i < 120; ++i) {
      const auto& m = got[static_cast<std::size_t>(i)];
      CHECK(m.channel == (i % 2 == 0 ? "pb.even" : "pb.odd"));
      CHECK(m.data == std::string(5000, static_cast<char>('a' + i % 26)));
    }
    got.clear();
  }
  // A raw publishBatch with an id answers how many it accepted; one whose sizes don't add up
  // is malformed.
  RawClient raw(s.proc().endpoint());
  raw.hello();
  auto batch = [&](std::uint64_t id, std::vector<std::pair<std::string, std::string>> items,
                   std::uint32_t skew) {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(id);
    auto pb = env.initPublishBatch();
    auto list = pb.initItems(static_cast<unsigned>(items.size()));
    auto sizes = pb.initSizes(static_cast<unsigned>(items.size()));
    std::string payload;
    for (unsigned i = 0; i < items.size(); ++i) {
      list[i].setChannel(roost::wire::text(items[i].first));
      sizes.set(i, static_cast<std::uint32_t>(items[i].second.size()) + (i == 0 ? skew : 0));
      payload += items[i].second;
    }
    raw.send(b, {payload});
    auto r = raw.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    return std::pair{rd.get().isCount() ? rd.get().getCount() : 0,
                     rd.get().isError() ? rd.get().getError().getCode() : ErrorCode::OK};
  };
  auto ok = batch(11, {{"pb.x", "1"}, {"pb..bad", "2"}, {"pb.y", "{not json"}, {"pb.z", "[3]"}}, 0);
  CHECK(ok.first == 2);  // the invalid subject and the invalid JSON were refused
  auto bad = batch(12, {{"pb.x", "1"}}, 5);
  CHECK(bad.second == ErrorCode::MALFORMED);
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return got.size() == 2;
  }));
}

TEST_CASE("SDK: two subscriptions of one client and a second client each get every message in order",
          "[integration][native]") {
  // The node queues deliveries as runs per subscription; runs of several subscriptions
  // interleave within one flush and are gathered per subscription before they are sent.
  Server s;
  auto c = connect(s.proc());
  auto other = connect(s.proc());
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> got;
  auto recorder = [&](std::string who) {
    return [&, who](const roost::ChannelMessage& m) {
      std::lock_guard lock(mu);
      got[who].push_back(m.data);
    };
  };
  auto wide = c->subscribe("fan.>", recorder("wide"));
  auto narrow = c->subscribe("fan.x", recorder("narrow"));
  auto elsewhere = other->subscribe("fan.*", recorder("other"));
  REQUIRE(wide);
  REQUIRE(narrow);
  REQUIRE(elsewhere);
  auto pub = connect(s.proc());
  // Alternating channels: each publish is a run of its own in the node, so one flush holds many
  // runs of "wide" and "other" between those of "narrow" (which sees fan.x only).
  constexpr int kCount = 3000;
  for (int i = 0; i < kCount; ++i) pub->publish(i % 2 == 0 ? "fan.x" : "fan.y", std::to_string(i));
  REQUIRE(eventually(
      [&] {
        std::lock_guard l(mu);
        return got["wide"].size() == kCount && got["narrow"].size() == kCount / 2 &&
               got["other"].size() == kCount;
      },
      10s));
  std::lock_guard lock(mu);
  for (const auto* who : {"wide", "other"}) {
    INFO(who);
    for (int i = 0; i < kCount; ++i) REQUIRE(got[who][static_cast<std::size_t>(i)] == std::to_string(i));
  }
  for (int i = 0; i < kCount / 2; ++i)
    REQUIRE(got["narrow"][static_cast<std::size_t>(i)] == std::to_string(2 * i));
}

TEST_CASE("SDK: acks and publishes made just before close() still reach the node", "[integration][native]") {
  Server s;
  auto setup = connect(s.proc());
  std::vector<NewMessage> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(msg(std::to_string(i)));
  REQUIRE(setup->enqueue("last", std::move(batch)));
  std::mutex mu;
  std::vector<std::string> heard;
  auto listener = connect(s.proc());
  std::atomic<std::uint64_t> lagged{0};
  roost::SubscribeOptions so;
  so.on_lag = [&](std::uint64_t n) { lagged += n; };
  auto sub = listener->subscribe(
      "bye.>",
      [&](const roost::ChannelMessage& m) {
        std::lock_guard lock(mu);
        heard.push_back(m.data);
      },
      so);
  REQUIRE(sub);

  // A worker that acks each job as it finishes and closes right after the last one (what
  // examples/sdk/worker.cpp does), then a publisher that closes right after publishing.
  {
    auto worker = connect(s.proc());
    std::atomic<int> done{0};
    roost::ConsumeOptions co;
    co.max_in_flight = 16;
    auto stream = worker->consume(
        "last",
        [&](const roost::Delivery& d) {
          d.ack();
          done++;
        },
        co);
    REQUIRE(stream);
    REQUIRE(eventually([&] { return done.load() == 200; }));
    worker->close();
  }
  {
    auto publisher = connect(s.proc());
    for (int i = 0; i < 3000; ++i) publisher->publish("bye.now", std::to_string(i));
    publisher->close();
  }
  // Every job is acked (none comes back), every publish arrived, in order.
  CHECK(eventually([&] { return setup->get_queue("last")->stats.messages == 0; }));
  bool all = eventually([&] {
    std::lock_guard l(mu);
    return heard.size() == 3000;
  });
  INFO("heard " << heard.size() << ", lagged " << lagged.load());
  REQUIRE(all);
  std::lock_guard lock(mu);
  for (int i = 0; i < 3000; ++i) REQUIRE(heard[static_cast<std::size_t>(i)] == std::to_string(i));
}

TEST_CASE("SDK: presence events reach on_presence, not the message handler", "[integration][native]") {
  Server s({"--channel-namespaces", "room.:join_leave=true"});
  auto a = connect(s.proc());
  std::mutex mu;
  std::vector<std::pair<roost::ChannelEventKind, std::uint64_t>> presence;
  std::vector<std::string> data;
  roost::SubscribeOptions so;
  so.on_presence = [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    presence.emplace_back(m.kind, m.subscribers);
  };
  auto sa = a->subscribe(
      "room.1",
      [&](const roost::ChannelMessage& m) {
        std::lock_guard lock(mu);
        data.push_back(m.data);
      },
      so);
  REQUIRE(sa);
  auto b = connect(s.proc());
  auto sb = b->subscribe("room.1", [](const roost::ChannelMessage&) {});
  REQUIRE(sb);
  REQUIRE(b->publish_sync("room.1", "7"));
  sb->reset();
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return presence.size() == 2;
  }));
  {
    std::lock_guard lock(mu);
    using K = roost::ChannelEventKind;
    CHECK(presence == std::vector<std::pair<K, std::uint64_t>>{{K::kJoin, 2}, {K::kLeave, 1}});
    CHECK(data == std::vector<std::string>{"7"});
  }
  // The count, asked: a's exact subscription and a wildcard one of b.
  auto wild = b->subscribe("room.>", [](const roost::ChannelMessage&) {});
  REQUIRE(wild);
  auto seen = a->presence("room.1");
  REQUIRE(seen);
  CHECK(seen->subscribers == 2);
  CHECK(seen->direct == 1);
  auto bad = a->presence("room.*");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::INVALID_ARGUMENT);
  // A token without the subscribe grant for the channel is refused.
  Server secured({"--auth-secret", "k", "--channel-namespaces", "room.:join_leave=true"});
  auto limited =
      roost::Client::connect({.url = secured.proc().endpoint(),
                              .token = roost::sign_jwt("k", R"({"roost":{"subscribe":["other.>"]}})")});
  REQUIRE(limited);
  auto refused = (*limited)->presence("room.1");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::FORBIDDEN);
}

TEST_CASE("SDK: storage_full when the node's storage cap is reached; acks still work",
          "[integration][native]") {
  Server s({"--max-storage-bytes", "2097152"});
  auto c = connect(s.proc());
  std::string body(50'000, 'z');
  roost::ErrorCode last = ErrorCode::OK;
  int stored = 0;
  for (int i = 0; i < 200; ++i) {
    auto r = c->enqueue("full", {msg(body, ContentType::kText)});
    if (!r) {
      last = r.error().code;
      break;
    }
    ++stored;
  }
  CHECK(last == ErrorCode::STORAGE_FULL);
  CHECK(stored > 5);
  roost::PullOptions po;
  po.batch_size = 5;
  auto got = c->pull("full", po);
  REQUIRE(got);
  REQUIRE(got->size() == 5);
  std::vector<std::string> leases;
  for (auto& m : *got) leases.push_back(m.lease_id);
  auto a = c->ack("full", leases);
  REQUIRE(a);
  CHECK(a->acked == 5);
}

TEST_CASE("SDK: a handler on the I/O thread may publish, and is refused blocking calls",
          "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  std::mutex mu;
  std::vector<std::string> got, echoed;
  std::optional<ErrorCode> blocking;
  roost::SubscribeOptions inline_opts;
  inline_opts.on_io_thread = true;
  auto sub = c->subscribe(
      "io.in",
      [&](const roost::ChannelMessage& m) {
        {
          std::lock_guard lock(mu);
          got.push_back(m.data);
          if (!blocking) {
            auto r = c->list_queues();  // would deadlock: answered at once instead
            blocking = r ? ErrorCode::OK : r.error().code;
          }
        }
        c->publish("io.out", m.data);  // asynchronous: fine here
      },
      inline_opts);
  REQUIRE(sub);
  auto echo = c->subscribe("io.out", [&](const roost::ChannelMessage& m) {
    std::lock_guard lock(mu);
    echoed.push_back(m.data);
  });
  REQUIRE(echo);
  auto p = connect(s.proc());
  for (int i = 0; i < 100; ++i) p->publish("io.in", std::to_string(i));
  REQUIRE(eventually([&] {
    std::lock_guard l(mu);
    return echoed.size() == 100;
  }));
  std::lock_guard lock(mu);
  CHECK(got.size() == 100);
  CHECK(echoed.front() == "0");
  CHECK(echoed.back() == "99");
  REQUIRE(blocking);
  CHECK(*blocking == ErrorCode::INVALID_ARGUMENT);
}

TEST_CASE("SDK: a producer's coalesced sends all complete when the client closes under them",
          "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  auto p = std::make_unique<roost::Producer>(*c, "closing", 1000);
  std::atomic<int> ok{0}, failed{0};
  for (int i = 0; i < 300; ++i) {
    p->send_async(msg(std::to_string(i)), [&](roost::Result<std::string> r) { (r ? ok : failed)++; });
  }
  c->close();
  auto flushed = std::async(std::launch::async, [&] { p->flush(); });
  REQUIRE(flushed.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(ok + failed == 300);  // every callback ran once, sent or told `unavailable`
  p->send_async(msg("\"late\""), [&](roost::Result<std::string> r) {
    CHECK_FALSE(r);
    if (!r) CHECK(r.error().code == roost::ErrorCode::UNAVAILABLE);
  });
  p.reset();  // waits for that one too
}

TEST_CASE("SDK: a traced enqueue answers the instant of each hand-off, in order (native_bench --hops)",
          "[integration][native]") {
  Server s;
  auto c = connect(s.proc());
  for (int i = 0; i < 20; ++i) {
    auto t = c->trace_enqueue("traced", msg(std::to_string(i)));
    INFO("trace: " << (t ? "" : t.error().message));
    REQUIRE(t);
    // called, sent, read, admitted, group began, commit began, log write began, committed,
    // completed, answered, received, returned
    REQUIRE(t->size() == 12);
    const auto& v = *t;
    for (auto stamp : v) CHECK(stamp > 0);
    // The group may run on the endpoint's own thread (leader/follower) before `admitted` is
    // stamped; every other instant follows the one before it.
    for (std::size_t k : {1u, 2u, 4u, 5u, 6u, 7u, 8u, 9u, 10u, 11u}) {
      INFO("stamp " << k);
      CHECK(v[k] >= v[k == 4 ? 2 : k - 1]);
    }
    CHECK(v[3] >= v[2]);
  }
  // The messages are enqueued like any other.
  auto got = c->pull("traced", roost::PullOptions{.batch_size = 100});
  REQUIRE(got);
  CHECK(got->size() == 20);
}

TEST_CASE("native: a trace longer than a request may carry is ignored, the enqueue is not",
          "[integration][native]") {
  Server s;
  RawClient raw(s.proc().endpoint());
  raw.hello();
  for (unsigned n : {8u, 9u, 4096u}) {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(10 + n);
    auto enq = env.initEnqueue();
    enq.setQueue("traced");
    enq.initMessages(1);
    auto trace = env.initTrace(n);
    for (unsigned i = 0; i < n; ++i) trace.set(i, i + 1);
    raw.send(b, {"1"});
    auto r = raw.recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    INFO("client stamps: " << n);
    REQUIRE(rd.get().isEnqueued());
    if (n <= 8) {
      REQUIRE(rd.get().getTrace().size() == n + 8);
      CHECK(rd.get().getTrace()[0] == 1);
    } else {
      CHECK(!rd.get().hasTrace());
    }
  }
}
