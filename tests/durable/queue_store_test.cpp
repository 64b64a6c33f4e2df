#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "store_fixture.h"

using roost::ErrorCode;
using roost::NewMessage;
using roost::QueueConfigPatch;
using roost::RetryRequest;
using roost::test::StoreFixture;

namespace {
QueueConfigPatch vis(std::uint64_t ms) {
  QueueConfigPatch p;
  p.visibility_timeout_ms = ms;
  return p;
}
}  // namespace

TEST_CASE("enqueue, pull, ack round trip", "[durable]") {
  StoreFixture f;
  auto ids = f.enqueue1("jobs", R"({"n":1})");
  REQUIRE(ids);
  REQUIRE(ids->size() == 1);
  CHECK(f.stats("jobs").ready == 1);

  auto got = f.pull("jobs");
  REQUIRE(got);
  REQUIRE(got->size() == 1);
  const auto& m = got->front();
  CHECK(m.id == ids->front());
  CHECK(m.body == R"({"n":1})");
  CHECK(m.attempts == 1);
  CHECK(f.stats("jobs").in_flight == 1);
  CHECK(f.stats("jobs").ready == 0);

  auto r = f.ack("jobs", {m.lease_id});
  REQUIRE(r);
  CHECK(r->acked == 1);
  CHECK(r->unknown.empty());
  auto s = f.stats("jobs");
  CHECK(s.messages == 0);
  CHECK(s.in_flight == 0);
  CHECK(s.acked == 1);
  CHECK(s.enqueued == 1);
  CHECK(f.pull("jobs")->empty());
}

TEST_CASE("pull respects batch size and FIFO order", "[durable]") {
  StoreFixture f;
  std::vector<NewMessage> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(NewMessage{std::to_string(i)});
  auto ids = f.enqueue("q", batch);
  REQUIRE(ids->size() == 25);
  auto a = f.pull("q", 10);
  auto b = f.pull("q", 10);
  auto c = f.pull("q", 10);
  REQUIRE(a->size() == 10);
  REQUIRE(b->size() == 10);
  REQUIRE(c->size() == 5);
  CHECK(a->front().body == "0");
  CHECK(b->front().body == "10");
  CHECK(c->back().body == "24");
}

TEST_CASE("an expired lease makes the message visible again with attempts counted", "[durable]") {
  StoreFixture f;
  REQUIRE(f.put("q", vis(1000)));
  f.enqueue1("q", "x");
  auto first = f.pull("q");
  REQUIRE(first->size() == 1);
  CHECK(f.pull("q")->empty());  // leased: invisible
  f.advance(999);
  CHECK(f.pull("q")->empty());
  f.advance(2);
  auto second = f.pull("q");
  REQUIRE(second->size() == 1);
  CHECK(second->front().attempts == 2);
  CHECK(second->front().id == first->front().id);
  // The first lease no longer holds.
  auto r = f.ack("q", {first->front().lease_id});
  CHECK(r->acked == 0);
  REQUIRE(r->unknown.size() == 1);
  CHECK(f.ack("q", {second->front().lease_id})->acked == 1);
}

TEST_CASE("a lease past its deadline still acks until its message is delivered again", "[durable]") {
  StoreFixture f;
  f.put("q", vis(100));
  f.enqueue1("q", "x");
  f.enqueue1("q", "y");
  f.enqueue1("q", "z");
  f.enqueue1("q", "w");
  auto leased = f.pull("q", 4);
  REQUIRE(leased->size() == 4);
  f.advance(100);
  // An extend needs a live lease.
  auto ext = roost::test::wait_for<roost::ExtendResult>(
      [&](auto cb) { f.store().extend("q", {(*leased)[0].lease_id}, 1000, std::move(cb)); });
  CHECK(ext->extended == 0);
  // Expired, not yet returned by maintenance: the ack counts.
  auto r = f.ack("q", {(*leased)[0].lease_id});
  CHECK(r->acked == 1);
  CHECK(r->unknown.empty());
  // Returned to the queue (visible again) but not delivered again: ack and retry still count.
  f.maintain();
  CHECK(f.stats("q").ready == 3);
  r = f.ack("q", {(*leased)[1].lease_id}, {RetryRequest{(*leased)[2].lease_id, 5000}});
  CHECK(r->acked == 1);
  CHECK(r->retried == 1);
  CHECK(f.stats("q").delayed == 1);
  // Delivered again: the old lease no longer counts, the new one does.
  auto again = f.pull("q", 10);
  REQUIRE(again->size() == 1);
  CHECK(again->front().body == "w");
  CHECK(again->front().attempts == 2);
  r = f.ack("q", {(*leased)[3].lease_id});
  CHECK(r->acked == 0);
  CHECK(r->unknown == std::vector<std::string>{(*leased)[3].lease_id});
  // A retried lease is spent: acking it afterwards does nothing.
  CHECK(f.ack("q", {(*leased)[2].lease_id})->unknown.size() == 1);
  // So is every lease across a restart whose message was delivered again; one that was not
  // still acks after the restart.
  f.restart();
  CHECK(f.ack("q", {again->front().lease_id})->acked == 1);
  CHECK(f.stats("q").messages == 1);  // z, delayed
}

TEST_CASE("maintenance returns expired leases to ready", "[durable]") {
  StoreFixture f;
  f.put("q", vis(100));
  f.enqueue1("q", "x");
  f.pull("q");
  CHECK(f.stats("q").in_flight == 1);
  f.advance(200);
  f.maintain();
  auto s = f.stats("q");
  CHECK(s.in_flight == 0);
  CHECK(s.ready == 1);
}

TEST_CASE("retry with a delay, and the queue's default retry delay", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.retry_delay_ms = 500;
  f.put("q", p);
  f.enqueue1("q", "x");
  auto m = f.pull("q")->front();
  auto r = f.ack("q", {}, {RetryRequest{m.lease_id, 2000}});
  CHECK(r->retried == 1);
  CHECK(f.stats("q").delayed == 1);
  CHECK(f.stats("q").retried == 1);
  f.advance(1999);
  CHECK(f.pull("q")->empty());
  f.advance(1);
  auto again = f.pull("q");
  REQUIRE(again->size() == 1);
  CHECK(again->front().attempts == 2);

  // No delay given: the queue's retry_delay_ms (500) applies.
  f.ack("q", {}, {RetryRequest{again->front().lease_id, std::nullopt}});
  f.advance(499);
  CHECK(f.pull("q")->empty());
  f.advance(1);
  CHECK(f.pull("q")->size() == 1);
}

TEST_CASE("after max_retries a message moves to the dead-letter queue", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_retries = 2;
  p.dead_letter_queue = "q-dlq";
  f.put("q", p);
  auto id = f.enqueue1("q", "poison")->front();
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto m = f.pull("q");
    REQUIRE(m->size() == 1);
    CHECK(m->front().attempts == static_cast<std::uint32_t>(attempt));
    f.ack("q", {}, {RetryRequest{m->front().lease_id, 0}});
  }
  CHECK(f.pull("q")->empty());
  auto s = f.stats("q");
  CHECK(s.dead_lettered == 1);
  CHECK(s.messages == 0);
  auto dlq = f.pull("q-dlq");
  REQUIRE(dlq->size() == 1);
  CHECK(dlq->front().id == id);  // ids survive the move
  CHECK(dlq->front().body == "poison");
  CHECK(dlq->front().attempts == 1);
}

TEST_CASE("expired leases count toward max_retries too", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_retries = 1;
  p.visibility_timeout_ms = 100;
  p.dead_letter_queue = "dead";
  f.put("q", p);
  f.enqueue1("q", "x");
  f.pull("q");
  f.advance(100);
  REQUIRE(f.pull("q")->size() == 1);  // second delivery
  f.advance(100);
  CHECK(f.pull("q")->empty());  // third would exceed: dead-lettered instead
  CHECK(f.stats("dead").ready == 1);
}

TEST_CASE("without a dead-letter queue exhausted messages are dropped and counted", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_retries = 0;
  f.put("q", p);
  f.enqueue1("q", "x");
  auto m = f.pull("q")->front();
  f.ack("q", {}, {RetryRequest{m.lease_id, 0}});
  auto s = f.stats("q");
  CHECK(s.dropped == 1);
  CHECK(s.dead_lettered == 1);
  CHECK(s.messages == 0);
}

TEST_CASE("delayed messages become visible at their time", "[durable]") {
  StoreFixture f;
  f.enqueue1("q", "later", {}, {}, 5000);
  f.enqueue1("q", "now");
  auto s = f.stats("q");
  CHECK(s.delayed == 1);
  CHECK(s.ready == 1);
  auto a = f.pull("q");
  REQUIRE(a->size() == 1);
  CHECK(a->front().body == "now");
  f.advance(5000);
  auto b = f.pull("q");
  REQUIRE(b->size() == 1);
  CHECK(b->front().body == "later");
}

TEST_CASE("dedup by producer id within the window", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.dedup_window_ms = 1000;
  f.put("q", p);
  auto a = f.enqueue1("q", "one", {}, "order-7");
  auto b = f.enqueue1("q", "two", {}, "order-7");
  CHECK(a->front() == b->front());
  CHECK(f.stats("q").messages == 1);
  CHECK(f.stats("q").deduplicated == 1);
  // Duplicates inside one batch too.
  auto c = f.enqueue("q", {NewMessage{"x", roost::ContentType::kText, 0, "b1"},
                           NewMessage{"y", roost::ContentType::kText, 0, "b1"}});
  CHECK((*c)[0] == (*c)[1]);
  // After the window the id is new again.
  f.advance(1001);
  f.maintain();
  auto d = f.enqueue1("q", "three", {}, "order-7");
  CHECK(d->front() != a->front());
  CHECK(f.stats("q").messages == 3);
}

TEST_CASE("messages of one key are delivered in order, one in flight at a time", "[durable]") {
  StoreFixture f;
  f.put("q", vis(1000));
  f.enqueue1("q", "a1", "A");
  f.enqueue1("q", "b1", "B");
  f.enqueue1("q", "a2", "A");
  f.enqueue1("q", "a3", "A");
  f.enqueue1("q", "free");
  CHECK(f.stats("q").blocked == 2);

  auto first = f.pull("q", 10);
  std::vector<std::string> bodies;
  for (auto& m : *first) bodies.push_back(m.body);
  CHECK(bodies == std::vector<std::string>{"a1", "b1", "free"});
  CHECK(f.pull("q", 10)->empty());

  f.ack("q", {(*first)[1].lease_id, (*first)[2].lease_id});
  // Retrying a1 keeps it first for key A.
  auto a1 = (*first)[0];
  f.ack("q", {}, {RetryRequest{a1.lease_id, 0}});
  auto again = f.pull("q", 10);
  REQUIRE(again->size() == 1);
  CHECK(again->front().body == "a1");
  f.ack("q", {again->front().lease_id});
  auto next = f.pull("q", 10);
  REQUIRE(next->size() == 1);
  CHECK(next->front().body == "a2");
  CHECK(next->front().key == "A");
  // An expired lease also keeps the order.
  f.advance(1000);
  auto redelivered = f.pull("q", 10);
  REQUIRE(redelivered->size() == 1);
  CHECK(redelivered->front().body == "a2");
  f.ack("q", {redelivered->front().lease_id});
  auto last = f.pull("q", 10);
  REQUIRE(last->size() == 1);
  CHECK(last->front().body == "a3");
}

TEST_CASE("message TTL removes messages never acked in time", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.message_ttl_ms = 1000;
  f.put("q", p);
  f.enqueue1("q", "old");
  f.advance(500);
  f.enqueue1("q", "young");
  f.advance(600);  // "old" is 1100 ms old, "young" 600 ms
  auto got = f.pull("q");
  REQUIRE(got->size() == 1);
  CHECK(got->front().body == "young");
  CHECK(f.stats("q").expired == 1);
  // The sweep removes expired messages nobody pulls.
  f.enqueue1("q", "forgotten");
  f.advance(1001);
  f.maintain();
  auto s = f.stats("q");
  CHECK(s.expired >= 2);
  CHECK(s.ready == 0);
}

TEST_CASE("redrive moves dead letters back", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_retries = 0;
  p.dead_letter_queue = "dlq";
  f.put("work", p);
  for (int i = 0; i < 5; ++i) f.enqueue1("work", "m" + std::to_string(i));
  auto leased = f.pull("work", 10);
  for (auto& m : *leased) f.ack("work", {}, {RetryRequest{m.lease_id, 0}});
  CHECK(f.stats("dlq").ready == 5);

  auto moved = f.redrive("dlq", "work", 3);
  REQUIRE(moved);
  CHECK(*moved == 3);
  CHECK(f.stats("dlq").ready == 2);
  auto back = f.pull("work", 10);
  REQUIRE(back->size() == 3);
  CHECK(back->front().body == "m0");
  CHECK(back->front().attempts == 1);  // attempts start again
  CHECK(*f.redrive("dlq", "work") == 2);
  CHECK(f.redrive("dlq", "dlq").error().code == ErrorCode::CONFLICT);
  CHECK(f.redrive("nope", "work").error().code == ErrorCode::QUEUE_NOT_FOUND);
}

TEST_CASE("after a restart every unacked message is visible again", "[durable]") {
  StoreFixture f;
  f.put("q", vis(3'600'000));
  for (int i = 0; i < 4; ++i) f.enqueue1("q", std::to_string(i));
  auto leased = f.pull("q", 3);
  REQUIRE(leased->size() == 3);
  f.ack("q", {leased->front().lease_id});
  f.restart();
  auto s = f.stats("q");
  CHECK(s.in_flight == 0);
  CHECK(s.ready == 3);
  CHECK(s.acked == 1);
  auto again = f.pull("q", 10);
  REQUIRE(again->size() == 3);
  CHECK(again->front().body == "1");
  CHECK(again->front().attempts == 2);
  // Old leases are void after the restart.
  CHECK(f.ack("q", {(*leased)[1].lease_id})->unknown.size() == 1);
  // Ids keep increasing across restarts.
  auto id = f.enqueue1("q", "new")->front();
  CHECK(id > again->back().id);
}

TEST_CASE("queue limits answer queue_full", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_messages = 2;
  f.put("q", p);
  REQUIRE(f.enqueue1("q", "a"));
  REQUIRE(f.enqueue1("q", "b"));
  auto full = f.enqueue1("q", "c");
  REQUIRE_FALSE(full);
  CHECK(full.error().code == ErrorCode::QUEUE_FULL);
  // A batch that does not fit is refused whole.
  QueueConfigPatch bytes;
  bytes.max_bytes = 10;
  f.put("b", bytes);
  auto r = f.enqueue("b", {NewMessage{"123456"}, NewMessage{"123456"}});
  CHECK(r.error().code == ErrorCode::QUEUE_FULL);
  CHECK(f.stats("b").messages == 0);
  REQUIRE(f.enqueue1("b", "1234567890"));
}

TEST_CASE("bad input gets stable error codes", "[durable]") {
  roost::durable::QueueStoreOptions opts;
  opts.auto_create_queues = false;
  opts.max_message_bytes = 16;
  StoreFixture f({}, opts);
  CHECK(f.enqueue1("missing", "x").error().code == ErrorCode::QUEUE_NOT_FOUND);
  CHECK(f.pull("missing").error().code == ErrorCode::QUEUE_NOT_FOUND);
  CHECK(f.ack("missing", {"x"}).error().code == ErrorCode::QUEUE_NOT_FOUND);
  CHECK(f.put("bad name!").error().code == ErrorCode::INVALID_NAME);
  CHECK(f.put("").error().code == ErrorCode::INVALID_NAME);
  REQUIRE(f.put("q"));
  CHECK(f.enqueue1("q", std::string(17, 'x')).error().code == ErrorCode::MESSAGE_TOO_LARGE);
  CHECK(f.enqueue("q", {}).error().code == ErrorCode::INVALID_ARGUMENT);
  CHECK(f.pull("q", 0).error().code == ErrorCode::INVALID_ARGUMENT);
  CHECK(f.pull("q", 1001).error().code == ErrorCode::INVALID_ARGUMENT);
  QueueConfigPatch self;
  self.dead_letter_queue = "q";
  CHECK(f.put("q", self).error().code == ErrorCode::CONFLICT);
  QueueConfigPatch zero;
  zero.visibility_timeout_ms = 0;
  CHECK(f.put("q", zero).error().code == ErrorCode::INVALID_ARGUMENT);
  // Garbage lease ids are "unknown", not errors.
  auto r = f.ack("q", {"not-a-lease", ""});
  CHECK(r->unknown.size() == 2);
}

TEST_CASE("configuration persists and updates partially", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p;
  p.max_retries = 7;
  f.put("q", p);
  QueueConfigPatch p2;
  p2.visibility_timeout_ms = 1234;
  auto info = f.put("q", p2);
  CHECK(info->config.max_retries == 7);
  CHECK(info->config.visibility_timeout_ms == 1234);
  f.restart();
  auto again = f.store().get_queue("q");
  CHECK(again->config.max_retries == 7);
  CHECK(again->config.visibility_timeout_ms == 1234);
}

TEST_CASE("delete removes a queue and all its messages", "[durable]") {
  StoreFixture f;
  for (int i = 0; i < 100; ++i) f.enqueue1("q", "x", i % 3 ? "k" : "", "id" + std::to_string(i));
  auto leased = f.pull("q", 5);
  REQUIRE(f.del("q"));
  CHECK(f.store().get_queue("q").error().code == ErrorCode::QUEUE_NOT_FOUND);
  CHECK(f.del("q").error().code == ErrorCode::QUEUE_NOT_FOUND);
  // Recreated under the same name it starts empty; old leases and dedup ids are gone.
  f.enqueue1("q", "fresh", {}, "id1");
  auto s = f.stats("q");
  CHECK(s.messages == 1);
  CHECK(f.ack("q", {leased->front().lease_id})->unknown.size() == 1);
  CHECK(f.store().list_queues().size() == 1);
}

TEST_CASE("purge deletes every message and keeps the queue, its config and its dedup ids", "[durable]") {
  StoreFixture f;
  QueueConfigPatch p = vis(1000);
  p.max_retries = 7;
  f.put("q", p);
  for (int i = 0; i < 50; ++i)
    f.enqueue1("q", "m" + std::to_string(i), i % 5 == 0 ? "k" : "", "id" + std::to_string(i));
  f.enqueue1("q", "later", {}, {}, 60'000);  // delayed
  auto leased = f.pull("q", 3);
  REQUIRE(leased->size() == 3);
  auto before = f.stats("q");
  CHECK(before.blocked > 0);
  CHECK(before.delayed == 1);
  CHECK(before.in_flight == 3);

  auto purged = f.purge("q");
  REQUIRE(purged);
  CHECK(*purged == 51);
  auto s = f.stats("q");
  CHECK(s.messages == 0);
  CHECK(s.ready + s.delayed + s.in_flight + s.blocked + s.bytes == 0);
  CHECK(s.purged == 51);
  CHECK(s.enqueued == before.enqueued);  // lifetime counters stay
  CHECK(f.store().get_queue("q")->config.max_retries == 7);
  // Dedup ids stay: a producer's retry of a purged message is still a duplicate.
  f.enqueue1("q", "again", {}, "id1");
  CHECK(f.stats("q").messages == 0);
  // A purged message's lease no longer holds; nothing comes back, not even when leases expire.
  CHECK(f.ack("q", {leased->front().lease_id})->unknown.size() == 1);
  f.advance(120'000);
  f.maintain();
  CHECK(f.pull("q", 100)->empty());
  // A key that had messages waiting is free again; new messages flow.
  f.enqueue1("q", "k1", "k");
  f.enqueue1("q", "k2", "k");
  auto got = f.pull("q", 10);
  REQUIRE(got->size() == 1);
  CHECK(got->front().body == "k1");
  // The count survives a restart (stored with the queue's record).
  f.restart();
  CHECK(f.stats("q").purged == 51);
  CHECK(f.stats("q").messages == 2);
  CHECK(f.purge("nope").error().code == ErrorCode::QUEUE_NOT_FOUND);
  f.set_closed("q", true);
  CHECK(f.purge("q").error().code == ErrorCode::OWNER_UNAVAILABLE);
}

TEST_CASE("peek shows what a pull would lease, in its order, and leases nothing", "[durable]") {
  StoreFixture f;
  f.put("q", vis(1000));
  f.enqueue1("q", "a1", "A");
  f.enqueue1("q", "a2", "A");  // blocked behind a1: not next
  f.enqueue1("q", "b");
  f.enqueue1("q", "soon", {}, {}, 500);
  auto seen = f.peek("q", 10);
  REQUIRE(seen);
  std::vector<std::string> bodies;
  for (const auto& m : *seen) {
    bodies.push_back(m.body);
    CHECK(m.lease_id.empty());
    CHECK(m.attempts == 0);
  }
  CHECK(bodies == std::vector<std::string>{"a1", "b"});
  CHECK(f.stats("q").in_flight == 0);
  CHECK(f.peek("q", 1)->size() == 1);
  // The delayed one is peeked once it is due, as a pull would lease it.
  f.advance(500);
  CHECK(f.peek("q", 10)->size() == 3);
  auto pulled = f.pull("q", 10);
  REQUIRE(pulled->size() == 3);
  CHECK(pulled->front().id == seen->front().id);
  // A retried message shows its deliveries so far.
  f.ack("q", {}, {RetryRequest{pulled->front().lease_id, 0}});
  auto again = f.peek("q", 10);
  REQUIRE(again->size() == 1);
  CHECK(again->front().attempts == 1);
  CHECK(f.peek("q", 0).error().code == ErrorCode::INVALID_ARGUMENT);
  CHECK(f.peek("nope").error().code == ErrorCode::QUEUE_NOT_FOUND);
}

TEST_CASE("list and stats report depth and oldest age", "[durable]") {
  StoreFixture f;
  f.enqueue1("a", "1");
  f.advance(250);
  f.enqueue1("b", "1");
  f.enqueue1("b", "2", {}, {}, 10'000);
  auto all = f.store().list_queues();
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "a");
  CHECK(all[0].stats.oldest_age_ms == 250);
  CHECK(all[1].stats.ready == 1);
  CHECK(all[1].stats.delayed == 1);
  CHECK(all[1].stats.bytes == 2);
}

TEST_CASE("group commit puts concurrent writers in one transaction", "[durable]") {
  StoreFixture f;
  constexpr int kThreads = 16;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> ids;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = f.enqueue1("q", "x");
        REQUIRE(r);
        std::lock_guard lock(mu);
        ids.insert(r->front());
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ids.size() == kThreads * kPerThread);
  const auto& m = f.committer().metrics();
  CHECK(m.ops.load() >= kThreads * kPerThread);
  // With 16 writers waiting on each commit, groups are larger than one op.
  CHECK(m.commits.load() < m.ops.load());
}

TEST_CASE("a full map answers storage_full and still lets acks free space", "[durable]") {
  roost::durable::EnvOptions env;
  env.initial_map_bytes = 1u << 20;
  env.max_map_bytes = 2u << 20;
  StoreFixture f(env);
  std::string body(16 * 1024, 'x');
  int stored = 0;
  roost::Error last;
  for (int i = 0; i < 1000; ++i) {
    auto r = f.enqueue1("q", body);
    if (!r) {
      last = r.error();
      break;
    }
    ++stored;
  }
  CHECK(last.code == ErrorCode::STORAGE_FULL);
  CHECK(stored > 10);
  CHECK(f.stats("q").messages == static_cast<std::uint64_t>(stored));
  // Acks still work when full, and free room for new messages.
  auto leased = f.pull("q", 50);
  REQUIRE(leased);
  std::vector<std::string> acks;
  for (auto& m : *leased) acks.push_back(m.lease_id);
  CHECK(f.ack("q", acks)->acked == leased->size());
  CHECK(f.enqueue1("q", body));
  // Nothing acknowledged was lost.
  f.restart();
  CHECK(f.stats("q").messages == static_cast<std::uint64_t>(stored) - leased->size() + 1);
}

TEST_CASE("writes after the committer stopped answer unavailable", "[durable]") {
  StoreFixture f;
  REQUIRE(f.enqueue1("q", "x"));
  f.committer().stop();
  auto r = f.enqueue1("q", "y");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::UNAVAILABLE);
  CHECK(f.stats("q").messages == 1);  // reads still work
}

TEST_CASE("batch durability commits and survives a clean restart", "[durable]") {
  roost::durable::EnvOptions env;
  env.durability = roost::durable::Durability::kBatch;
  StoreFixture f(env);
  for (int i = 0; i < 50; ++i) REQUIRE(f.enqueue1("q", std::to_string(i)));
  f.restart();
  CHECK(f.stats("q").messages == 50);
}

namespace {
std::uint64_t data_file_size(roost::test::StoreFixture& f) {
  return std::filesystem::file_size(f.dir().path() / "data" / "data.mdb");
}
// True when every byte of the data file from `from` on is zero.
bool zeros_from(roost::test::StoreFixture& f, std::uint64_t from) {
  std::ifstream in(f.dir().path() / "data" / "data.mdb", std::ios::binary);
  in.seekg(static_cast<std::streamoff>(from));
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      if (buf[i] != 0) return false;
    }
  }
  return true;
}
}  // namespace

TEST_CASE("sync durability keeps the data file zero-filled ahead of its used pages", "[durable]") {
  roost::durable::EnvOptions env;
  env.zero_ahead_bytes = 1 << 20;
  env.wal = false;  // LMDB's own sync commits flush the data file; through the log only checkpoints do
  StoreFixture f(env);
  // The committer fills after completing a commit's writers: a later write has waited for it.
  REQUIRE(f.enqueue1("q", "first"));
  std::uint64_t used = f.env().used_bytes();
  f.maintain();
  CHECK(data_file_size(f) >= used + (512 << 10));
  CHECK(zeros_from(f, f.env().used_bytes()));
  // Grow through several zero-filled stretches; everything stays readable after a reopen, and
  // the file keeps its zeros ahead.
  const std::string body(1000, 'b');
  for (int round = 0; round < 150; ++round) {
    std::vector<NewMessage> batch(20);  // ~20 KiB a commit: small commits get zeros ahead
    for (auto& m : batch) m.body = body;
    REQUIRE(f.enqueue("q", std::move(batch)));
  }
  used = f.env().used_bytes();
  CHECK(used > (3u << 20));
  f.maintain();
  CHECK(data_file_size(f) >= used + (512 << 10));
  CHECK(zeros_from(f, f.env().used_bytes()));
  f.restart();
  CHECK(f.stats("q").messages == 3001);
  auto first = f.pull("q", 1);
  REQUIRE(first->size() == 1);
  CHECK(first->front().body == "first");
  REQUIRE(f.enqueue1("q", "after reopen"));
  CHECK(f.stats("q").messages == 3002);
}

TEST_CASE("commits that grow the database by much get no zeros ahead", "[durable]") {
  roost::durable::EnvOptions env;
  env.zero_ahead_bytes = 1 << 20;
  StoreFixture f(env);
  const std::string body(1000, 'b');
  for (int round = 0; round < 30; ++round) {
    std::vector<NewMessage> batch(200);  // ~200 KiB a commit: zeros would cost more than they save
    for (auto& m : batch) m.body = body;
    REQUIRE(f.enqueue("q", std::move(batch)));
  }
  f.maintain();
  std::uint64_t used = f.env().used_bytes();
  CHECK(used > (5u << 20));
  CHECK(data_file_size(f) < used + (256 << 10));
  CHECK(f.stats("q").messages == 6000);
}

TEST_CASE("without sync durability, or with zero_ahead_bytes 0, the file is not extended", "[durable]") {
  roost::durable::EnvOptions env;
  env.zero_ahead_bytes = 1 << 20;
  SECTION("batch durability") { env.durability = roost::durable::Durability::kBatch; }
  SECTION("zero_ahead_bytes 0") { env.zero_ahead_bytes = 0; }
  StoreFixture f(env);
  REQUIRE(f.enqueue1("q", "x"));
  f.maintain();
  CHECK(data_file_size(f) < f.env().used_bytes() + (256 << 10));
}

TEST_CASE("message ids keep increasing across restarts, past the stored reservation too", "[durable]") {
  // The next sequence number is stored a block (65,536) ahead, not on every enqueue; a restart
  // starts after the block, so ids never repeat.
  StoreFixture f;
  std::string last = f.enqueue1("q", "first")->front();
  f.restart();
  std::string after_restart = f.enqueue1("q", "second")->front();
  CHECK(after_restart > last);
  last = after_restart;
  for (int round = 0; round < 70; ++round) {  // 70,000 ids: crosses a block boundary
    std::vector<NewMessage> batch(1000);
    for (auto& m : batch) m.body = "x";
    auto ids = f.enqueue("q", std::move(batch));
    REQUIRE(ids);
    CHECK(ids->front() > last);
    last = ids->back();
  }
  f.restart();
  std::string again = f.enqueue1("q", "third")->front();
  CHECK(again > last);
  CHECK(f.stats("q").messages == 70'003);
}
