#include <roost/channels/hub.h>
#include <roost/channels/outgoing_queue.h>
#include <roost/channels/subscription_trie.h>
#include <roost/core/subject.h>
#include <roost/gateway/frames.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

using namespace roost::channels;

namespace {
// Records what it receives.
struct Recorder : Subscriber {
  std::mutex mu;
  std::vector<MessagePtr> got;
  void deliver(const MessagePtr& m) override {
    std::lock_guard lock(mu);
    got.push_back(m);
  }
  std::vector<std::uint64_t> offsets() {
    std::lock_guard lock(mu);
    std::vector<std::uint64_t> out;
    for (auto& m : got) out.push_back(m->offset);
    return out;
  }
};

std::atomic<std::int64_t> fake_now{1'000'000};
std::int64_t now() { return fake_now.load(); }
}  // namespace

TEST_CASE("subject grammar", "[channels]") {
  CHECK_FALSE(validate_subject("chat.room1"));
  CHECK_FALSE(validate_subject("a"));
  CHECK_FALSE(validate_subject("orders.eu-west.user_42"));
  CHECK(validate_subject("")->message.find("empty") != std::string::npos);
  CHECK(validate_subject("chat..room")->message.find("empty token") != std::string::npos);
  CHECK(validate_subject(".chat")->message.find("empty token") != std::string::npos);
  CHECK(validate_subject("chat.*")->message.find("only for subscriptions") != std::string::npos);
  CHECK(validate_subject("chat room")->message.find("' '") != std::string::npos);
  CHECK(validate_subject(std::string(300, 'a'))->message.find("256") != std::string::npos);
  CHECK_FALSE(validate_pattern("chat.*"));
  CHECK_FALSE(validate_pattern("chat.>"));
  CHECK_FALSE(validate_pattern(">"));
  CHECK_FALSE(validate_pattern("*.room.*"));
  CHECK(validate_pattern("chat.>.x")->message.find("last token") != std::string::npos);
  CHECK(validate_pattern("chat.ro*")->message.find("stand alone") != std::string::npos);
  CHECK(validate_pattern("chat.")->code == roost::ErrorCode::INVALID_ARGUMENT);

  CHECK(pattern_matches("chat.*", "chat.room1"));
  CHECK_FALSE(pattern_matches("chat.*", "chat.room1.x"));
  CHECK_FALSE(pattern_matches("chat.*", "chat"));
  CHECK(pattern_matches("chat.>", "chat.room1.x"));
  CHECK_FALSE(pattern_matches("chat.>", "chat"));
  CHECK(pattern_matches(">", "anything.at.all"));
  CHECK(pattern_matches("*.b.*", "a.b.c"));
  CHECK(pattern_matches("a.b", "a.b"));
  CHECK_FALSE(pattern_matches("a.b", "a.c"));
}

TEST_CASE("trie matches wildcards, dedups subscribers, prunes on remove", "[channels]") {
  SubscriptionTrie t;
  auto a = std::make_shared<Recorder>();
  auto b = std::make_shared<Recorder>();
  auto c = std::make_shared<Recorder>();
  t.insert("chat.room1", 1, a);
  t.insert("chat.*", 2, b);
  t.insert("chat.>", 3, c);
  t.insert("chat.*", 4, a);  // a again through a wildcard
  CHECK(t.match("chat.room1").size() == 3);
  CHECK(t.match("chat.room2").size() == 3);
  CHECK(t.match("chat.room2.sub").size() == 1);
  CHECK(t.match("news.x").empty());
  CHECK(t.size() == 4);
  CHECK(t.remove("chat.*", 2));
  CHECK_FALSE(t.remove("chat.*", 2));
  CHECK_FALSE(t.remove("nope.x", 1));
  CHECK(t.match("chat.room2").size() == 2);
  CHECK(t.remove("chat.*", 4));
  CHECK(t.remove("chat.>", 3));
  CHECK(t.remove("chat.room1", 1));
  CHECK(t.size() == 0);
  CHECK(t.match("chat.room1").empty());
}

TEST_CASE("hub fans one immutable payload out to matching subscribers", "[channels]") {
  Hub hub({}, now);
  auto exact = std::make_shared<Recorder>();
  auto wild = std::make_shared<Recorder>();
  auto other = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("chat.room1", exact));
  auto wid = hub.subscribe("chat.*", wild);
  REQUIRE(wid);
  REQUIRE(hub.subscribe("news.>", other));
  auto r = hub.publish("chat.room1", R"({"text":"hi"})");
  REQUIRE(r);
  CHECK(r->offset == 1);
  CHECK(r->subscribers == 2);
  REQUIRE(exact->got.size() == 1);
  REQUIRE(wild->got.size() == 1);
  CHECK(exact->got[0].get() == wild->got[0].get());  // the same message object
  CHECK(exact->got[0]->audience == 2);               // the delivery hint: how many it reached
  CHECK(*roost::gateway::browser_frame(*exact->got[0]) ==
        R"({"op":"message","channel":"chat.room1","data":{"text":"hi"},"offset":1,"epoch":")" + r->epoch +
            "\"}");
  CHECK(other->got.empty());
  CHECK(hub.presence("chat.room1").subscribers == 2);
  CHECK(hub.presence("chat.room1").direct == 1);
  CHECK(hub.presence("chat.room9").subscribers == 1);
  CHECK(hub.presence("chat.room9").direct == 0);
  hub.unsubscribe(wid->id);
  CHECK(hub.publish("chat.room1", "2")->subscribers == 1);  // the match cache saw the change
  CHECK(wild->got.size() == 1);
  CHECK(exact->got.back()->audience == 1);
  auto late = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("chat.>", late));  // a new subscription also invalidates the cached match
  CHECK(hub.publish("chat.room1", "2b")->subscribers == 2);
  CHECK(late->got.size() == 1);
  CHECK(hub.publish("chat.room1", "3")->offset == 4);
  CHECK(hub.publish("chat.*", "1").error().code == roost::ErrorCode::INVALID_ARGUMENT);
  CHECK(hub.subscribe("bad..x", exact).error().code == roost::ErrorCode::INVALID_ARGUMENT);
}

TEST_CASE("history: resume fills the gap, or says reset when it cannot", "[channels]") {
  HubOptions opts;
  NamespaceConfig chat;
  chat.prefix = "chat.";
  chat.history_size = 3;
  chat.history_ttl_ms = 10'000;
  opts.namespaces.push_back(chat);
  Hub hub(opts, now);
  for (int i = 1; i <= 5; ++i) hub.publish("chat.r", std::to_string(i));
  auto first = std::make_shared<Recorder>();
  auto sub = hub.subscribe("chat.r", first);
  REQUIRE(sub);
  std::string epoch = sub->epoch;
  CHECK(sub->offset == 5);
  CHECK(first->got.empty());  // no since: live only

  auto resumed = std::make_shared<Recorder>();
  auto r = hub.subscribe("chat.r", resumed, Since{epoch, 3});
  REQUIRE(r);
  CHECK_FALSE(r->reset);
  CHECK(r->recovered == 2);
  CHECK(resumed->offsets() == std::vector<std::uint64_t>{4, 5});
  hub.publish("chat.r", "6");
  CHECK(resumed->offsets() == std::vector<std::uint64_t>{4, 5, 6});

  auto too_old = std::make_shared<Recorder>();
  auto gap = hub.subscribe("chat.r", too_old, Since{epoch, 1});  // history holds 4..6
  CHECK(gap->reset);
  auto wrong_epoch = hub.subscribe("chat.r", std::make_shared<Recorder>(), Since{"other", 5});
  CHECK(wrong_epoch->reset);
  auto up_to_date = hub.subscribe("chat.r", std::make_shared<Recorder>(), Since{epoch, 6});
  CHECK_FALSE(up_to_date->reset);
  CHECK(up_to_date->recovered == 0);

  fake_now += 20'000;  // history entries older than 10 s no longer count
  auto late = hub.subscribe("chat.r", std::make_shared<Recorder>(), Since{epoch, 5});
  CHECK(late->reset);
  CHECK(hub.subscribe("chat.*", std::make_shared<Recorder>(), Since{epoch, 1}).error().code ==
        roost::ErrorCode::INVALID_ARGUMENT);
  // A fresh client asks for the latest messages instead.
  auto fresh = std::make_shared<Recorder>();
  fake_now -= 20'000;
  auto recent = hub.subscribe("chat.r", fresh, Since{"", 0, 2});
  CHECK_FALSE(recent->reset);
  CHECK(fresh->offsets() == std::vector<std::uint64_t>{5, 6});
  fake_now += 20'000;
  // Channels outside the namespace keep no history.
  hub.publish("other.x", "1");
  auto none = hub.subscribe("other.x", std::make_shared<Recorder>(), Since{"", 0});
  CHECK(none->reset);
}

TEST_CASE("each subscriber sees one channel's messages in offset order under concurrency", "[channels]") {
  Hub hub({}, now);
  auto rec = std::make_shared<Recorder>();
  hub.subscribe("load.x", rec);
  std::vector<std::thread> publishers;
  for (int p = 0; p < 4; ++p) {
    publishers.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) hub.publish("load.x", "1");
    });
  }
  for (auto& t : publishers) t.join();
  auto offs = rec->offsets();
  REQUIRE(offs.size() == 8000);
  for (std::size_t i = 0; i < offs.size(); ++i) CHECK(offs[i] == i + 1);
  CHECK(hub.published() == 8000);
  CHECK(hub.delivered() == 8000);
}

TEST_CASE("outgoing queue: bounded, drop counts, disconnect policy", "[channels]") {
  OutgoingQueue q(2, 1000);
  auto f = std::make_shared<const std::string>("x");
  CHECK(q.push(f, SlowPolicy::kDrop) == OutgoingQueue::Push::kQueued);
  CHECK(q.push(f, SlowPolicy::kDrop) == OutgoingQueue::Push::kQueued);
  CHECK(q.push(f, SlowPolicy::kDrop) == OutgoingQueue::Push::kDropped);
  CHECK(q.push(f, SlowPolicy::kDrop) == OutgoingQueue::Push::kDropped);
  CHECK(q.push(f, SlowPolicy::kDisconnect) == OutgoingQueue::Push::kDisconnect);
  CHECK(q.size() == 2);
  CHECK_FALSE(q.has_room());
  q.push_control(f);  // control frames are never refused
  CHECK(q.size() == 3);
  q.pop();
  q.pop();
  CHECK(q.has_room());
  CHECK(q.take_dropped() == 2);
  CHECK(q.take_dropped() == 0);
  OutgoingQueue bytes(100, 10);
  CHECK(bytes.push(std::make_shared<const std::string>(8, 'a'), SlowPolicy::kDrop) ==
        OutgoingQueue::Push::kQueued);
  CHECK(bytes.push(std::make_shared<const std::string>(8, 'a'), SlowPolicy::kDrop) ==
        OutgoingQueue::Push::kDropped);
  CHECK(bytes.bytes() == 8);
}

TEST_CASE("join / leave events of direct subscribers, only where the namespace asks", "[channels]") {
  HubOptions o;
  NamespaceConfig room;
  room.prefix = "room.";
  room.join_leave = true;
  o.namespaces.push_back(room);
  Hub hub(o, now);
  auto a = std::make_shared<Recorder>(), b = std::make_shared<Recorder>(), w = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("room.a", a));
  REQUIRE(hub.subscribe("room.*", w));  // a pattern: no announcement of its own
  {
    std::lock_guard lock(a->mu);
    CHECK(a->got.empty());
  }
  auto sb = hub.subscribe("room.a", b);
  REQUIRE(sb);
  REQUIRE(hub.publish("room.a", "1"));
  hub.unsubscribe(sb->id);
  auto kinds = [](Recorder& r) {
    std::lock_guard lock(r.mu);
    std::vector<std::pair<MessageKind, std::uint64_t>> out;
    for (auto& m : r.got)
      out.emplace_back(m->kind, m->kind == MessageKind::kData ? m->offset : m->subscribers);
    return out;
  };
  using K = MessageKind;
  // a and the watcher see b join (2 direct subscribers), the message, b leave (1 left).
  std::vector<std::pair<K, std::uint64_t>> expect = {{K::kJoin, 2}, {K::kData, 1}, {K::kLeave, 1}};
  CHECK(kinds(*a) == expect);
  CHECK(kinds(*w) == expect);
  // b saw only the message: not its own join.
  CHECK(kinds(*b) == std::vector<std::pair<K, std::uint64_t>>{{K::kData, 1}});
  {
    std::lock_guard lock(a->mu);
    CHECK(*roost::gateway::browser_frame(*a->got[0]) ==
          R"({"op":"join","channel":"room.a","subscribers":2})");
    CHECK(roost::gateway::sse_frame(*a->got[0])->starts_with("event: join\ndata: {"));
  }
  // Presence events take no offset and stay out of history.
  CHECK(hub.publish("room.a", "2")->offset == 2);
  // Elsewhere, nothing is announced.
  auto c = std::make_shared<Recorder>(), d = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("other.x", c));
  REQUIRE(hub.subscribe("other.x", d));
  std::lock_guard lock(c->mu);
  CHECK(c->got.empty());
}

TEST_CASE("idle channels without history or direct subscribers are forgotten", "[channels]") {
  HubOptions o;
  NamespaceConfig kept;
  kept.prefix = "kept.";
  kept.history_size = 10;
  NamespaceConfig brief;
  brief.prefix = "brief.";
  brief.history_size = 10;
  brief.history_ttl_ms = 5'000;
  o.namespaces = {kept, brief};
  Hub hub(o, now);
  auto direct = std::make_shared<Recorder>(), wild = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("user.watched", direct));
  REQUIRE(hub.subscribe("user.*", wild));
  for (int i = 0; i < 1000; ++i) REQUIRE(hub.publish("user.u" + std::to_string(i), "1"));
  auto first = hub.publish("user.watched", "1");
  REQUIRE(first);
  REQUIRE(hub.publish("kept.a", "1"));
  REQUIRE(hub.publish("brief.a", "1"));
  CHECK(hub.channels() == 1003);
  CHECK(hub.forget_idle(60'000) == 0);  // nothing idle yet
  fake_now += 30'000;
  REQUIRE(hub.publish("user.u7", "2"));  // used again: stays
  fake_now += 40'000;
  // 1000 user channels idle 70 s (but u7), brief.a's history expired: gone. Kept: the one with a
  // direct subscriber, the one keeping history, and u7.
  CHECK(hub.forget_idle(60'000) == 1000);
  CHECK(hub.channels() == 3);
  // A forgotten channel comes back with a new epoch and offsets from 1; wildcard subscribers
  // still get its messages.
  auto again = hub.publish("user.u1", "3");
  REQUIRE(again);
  CHECK(again->offset == 1);
  CHECK(again->subscribers == 1);
  CHECK(wild->got.back()->channel == "user.u1");
  // The watched channel kept its epoch and numbering.
  auto next = hub.publish("user.watched", "2");
  CHECK(next->epoch == first->epoch);
  CHECK(next->offset == 2);
  fake_now -= 70'000;
}

TEST_CASE("publishing while channels are forgotten loses no message and keeps order", "[channels]") {
  Hub hub({}, now);
  auto wild = std::make_shared<Recorder>();
  REQUIRE(hub.subscribe("t.>", wild));
  std::atomic<bool> stop{false};
  std::thread sweeper([&] {
    while (!stop) hub.forget_idle(0);  // forget everything idle for 0 ms, all the time
  });
  constexpr int kThreads = 4, kEach = 5000;
  std::atomic<int> failed{0};
  std::vector<std::thread> pubs;
  for (int t = 0; t < kThreads; ++t) {
    pubs.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!hub.publish("t." + std::to_string(i % 7), std::to_string(t))) ++failed;
      }
    });
  }
  for (auto& p : pubs) p.join();
  stop = true;
  sweeper.join();
  CHECK(failed == 0);
  CHECK(wild->got.size() == static_cast<std::size_t>(kThreads * kEach));
  // Within one channel and one epoch, offsets keep rising.
  std::map<std::string, std::pair<std::string, std::uint64_t>> last;
  bool ordered = true;
  for (auto& m : wild->got) {
    auto& [epoch, offset] = last[m->channel];
    if (epoch == m->epoch && m->offset <= offset) ordered = false;
    epoch = m->epoch;
    offset = m->offset;
  }
  CHECK(ordered);
}

TEST_CASE("messages made on one thread and freed on others keep their contents", "[channels]") {
  // Messages come from a per-thread pool of freed blocks: a block freed on a thread serves that
  // thread's next message, and a thread's pool is emptied when it exits (the sanitizer build
  // reports the blocks as leaked otherwise).
  std::vector<MessagePtr> made;
  for (int i = 0; i < 5000; ++i) {
    made.push_back(make_message("pool.a", std::string(200, static_cast<char>('a' + i % 26)),
                                static_cast<std::uint64_t>(i + 1), "e", 1, roost::ContentType::kText));
  }
  std::vector<MessagePtr> remade;
  std::thread t([&] {
    made.clear();  // freed here: this thread's pool takes them
    for (int i = 0; i < 3000; ++i) {
      remade.push_back(make_message("pool.b", std::to_string(i), static_cast<std::uint64_t>(i), "e", 2));
    }
  });
  t.join();
  REQUIRE(remade.size() == 3000);
  for (int i = 0; i < 3000; ++i) {
    const auto& m = *remade[static_cast<std::size_t>(i)];
    CHECK(m.channel == "pool.b");
    CHECK(m.data == std::to_string(i));
    CHECK(m.offset == static_cast<std::uint64_t>(i));
    CHECK(roost::gateway::browser_frame(m)->find("\"pool.b\"") != std::string::npos);
  }
  remade.clear();  // freed on the main thread, after the other exited
}

TEST_CASE("a peer node's interest (a watcher) is not presence and is never announced; relayed copies say so",
          "[channels]") {
  struct Peer : Recorder {
    bool watcher() const override { return true; }
  };
  HubOptions o;
  NamespaceConfig room;
  room.prefix = "room.";
  room.join_leave = true;
  o.namespaces.push_back(room);
  Hub hub(o, now);
  auto a = std::make_shared<Recorder>();
  auto peer = std::make_shared<Peer>(), peer_wild = std::make_shared<Peer>();
  REQUIRE(hub.subscribe("room.a", a));
  auto sp = hub.subscribe("room.a", peer);
  REQUIRE(sp);
  REQUIRE(hub.subscribe("room.*", peer_wild));
  // Only the client counts.
  CHECK(hub.presence("room.a").direct == 1);
  CHECK(hub.presence("room.a").subscribers == 1);
  {
    std::lock_guard lock(a->mu);
    CHECK(a->got.empty());  // the peer's arrival was not announced
  }
  REQUIRE(hub.publish("room.a", "1"));
  REQUIRE(hub.publish("room.a", "2", roost::ContentType::kJson, /*relayed=*/true));
  hub.unsubscribe(sp->id);  // nor its departure
  CHECK(hub.presence("room.a").direct == 1);
  std::lock_guard lock(a->mu);
  REQUIRE(a->got.size() == 2);
  CHECK_FALSE(a->got[0]->relayed);
  CHECK(a->got[1]->relayed);
  std::lock_guard lock_peer(peer->mu);
  CHECK(peer->got.size() == 2);  // (the hub delivers both; a mesh link drops the relayed one)
}
