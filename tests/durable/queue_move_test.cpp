// A shard move's queue half (durable/src/queue_move.cpp): the gate that closes a moving queue
// where writes take effect, and a queue exported by one store and imported by another.
#include <catch2/catch.hpp>

#include "store_fixture.h"

using roost::ErrorCode;
using roost::NewMessage;
using roost::QueueConfigPatch;
using roost::test::StoreFixture;
using roost::test::wait_for;

namespace {

constexpr std::uint64_t kMove = 7;

// Copies every body of `q` from `src` to `dst` for kMove, in chunks of about `chunk` bytes.
std::uint64_t copy_bodies(StoreFixture& src, StoreFixture& dst, const std::string& q, std::size_t chunk) {
  auto seqs = src.store().message_seqs(q);
  std::uint64_t stored = 0;
  for (std::size_t at = 0; at < seqs.size();) {
    std::size_t next = at;
    auto bodies = src.store().read_bodies(seqs, at, chunk, &next);
    REQUIRE(next > at);
    at = next;
    auto n =
        wait_for<std::uint64_t>([&](auto cb) { dst.store().import_bodies(kMove, bodies, std::move(cb)); });
    REQUIRE(n);
    stored += *n;
  }
  return stored;
}

roost::durable::Result<std::uint64_t> import(StoreFixture& dst, std::vector<std::string> exported) {
  return wait_for<std::uint64_t>(
      [&](auto cb) { dst.store().import_queues(kMove, std::move(exported), std::move(cb)); });
}

}  // namespace

TEST_CASE("a closed queue refuses every write where it takes effect, and maintenance leaves it alone",
          "[durable][move]") {
  StoreFixture f;
  REQUIRE(f.enqueue1("q", "1"));
  REQUIRE(f.enqueue1("q", "2"));
  auto leased = f.pull("q", 1, 1000);
  REQUIRE(leased->size() == 1);
  f.set_closed("q", true);
  auto refused = [](const auto& r) { return !r && r.error().code == ErrorCode::OWNER_UNAVAILABLE; };
  CHECK(refused(f.enqueue1("q", "3")));
  CHECK(refused(f.pull("q")));
  CHECK(refused(f.ack("q", {leased->front().lease_id})));
  CHECK(refused(f.put("q", QueueConfigPatch{})));
  CHECK(refused(f.del("q")));
  CHECK(refused(f.redrive("q", "other")));
  CHECK(refused(f.redrive("other", "q")));
  f.advance(5000);  // the lease ran out, but the queue is frozen as it was copied
  f.maintain();
  CHECK(f.stats("q").in_flight == 1);
  CHECK(f.stats("q").messages == 2);
  // Other queues are not affected.
  CHECK(f.enqueue1("other", "x"));
  f.set_closed("q", false);
  f.maintain();
  CHECK(f.stats("q").in_flight == 0);
  CHECK(f.pull("q")->size() == 2);
}

TEST_CASE(
    "a queue moves from one store to another with its order, attempts, delays, keys and dedup; leases are void",
    "[durable][move]") {
  StoreFixture src, dst;
  QueueConfigPatch cfg;
  cfg.dedup_window_ms = 600'000;
  cfg.max_retries = 7;
  REQUIRE(src.put("q", cfg));
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(src.enqueue1("q", "m" + std::to_string(i))->front());
  REQUIRE(src.enqueue1("q", "late", {}, {}, 60'000));
  auto once = src.enqueue1("q", "once", {}, "producer-1");
  REQUIRE(once);
  for (int i = 0; i < 3; ++i) REQUIRE(src.enqueue1("q", "k" + std::to_string(i), "key"));
  auto leased = src.pull("q", 2);  // m0, m1: leased when the move starts
  REQUIRE(leased->size() == 2);
  // Some data on the target already: its own queue, and its seqs (a move does not reuse them).
  REQUIRE(dst.enqueue1("mine", "own"));

  // Copy while the source serves; an ack in between leaves a body the target does not use.
  REQUIRE(copy_bodies(src, dst, "q", 40) == 15);
  REQUIRE(src.ack("q", {leased->at(1).lease_id})->acked == 1);  // m1 acked
  REQUIRE(copy_bodies(src, dst, "q", 1 << 20) == 0);            // a chunk sent again is stored once
  src.set_closed("q", true);
  auto blob = src.store().export_queue("q");
  REQUIRE(blob);
  CHECK(roost::durable::QueueStore::exported_name(*blob) == "q");
  CHECK(roost::durable::QueueStore::exported_messages(*blob) == 14);
  auto placed = import(dst, {*blob});
  REQUIRE(placed);
  CHECK(*placed == 14);

  auto s = dst.stats("q");
  CHECK(s.messages == 14);
  CHECK(s.delayed == 1);
  CHECK(s.blocked == 2);
  CHECK(s.in_flight == 0);  // m0's lease is void
  CHECK(s.enqueued == src.stats("q").enqueued);
  CHECK(s.acked == 1);
  CHECK(dst.store().get_queue("q")->config.max_retries == 7);
  // A producer's duplicate is still one.
  auto dup = dst.enqueue1("q", "once", {}, "producer-1");
  REQUIRE(dup);
  CHECK(dst.stats("q").messages == 14);
  CHECK(dst.stats("q").deduplicated == 1);
  // In order: m0 (a second attempt), m2..m9, once, k0 — then k1 after k0's ack.
  auto got = dst.pull("q", 100);
  REQUIRE(got);
  std::vector<std::string> bodies;
  for (const auto& m : *got) bodies.push_back(m.body);
  std::vector<std::string> want{"m0"};
  for (int i = 2; i < 10; ++i) want.push_back("m" + std::to_string(i));
  want.insert(want.end(), {"once", "k0"});
  CHECK(bodies == want);
  CHECK(got->front().attempts == 2);
  CHECK(got->at(1).attempts == 1);
  CHECK(dup->front() == got->at(9).id);  // the duplicate answered the moved message's id
  std::vector<std::string> leases;
  for (const auto& m : *got) leases.push_back(m.lease_id);
  REQUIRE(dst.ack("q", leases)->acked == got->size());
  auto k1 = dst.pull("q", 100);
  REQUIRE(k1->size() == 1);
  CHECK(k1->front().body == "k1");
  REQUIRE(dst.ack("q", {k1->front().lease_id})->acked == 1);
  dst.advance(61'000);
  dst.maintain();
  auto late = dst.pull("q", 100);  // the delayed one is due; k2 followed k1's ack
  REQUIRE(late->size() == 2);
  CHECK(late->front().body == "late");
  CHECK(late->back().body == "k2");
  CHECK(dst.pull("mine")->front().body == "own");

  // The source drops its copy past the gate (the gate stays closed for it).
  auto dropped = wait_for<std::uint64_t>([&](auto cb) { src.store().drop_queues({"q"}, std::move(cb)); });
  CHECK(dropped == std::uint64_t{1});
  CHECK_FALSE(src.store().get_queue("q"));
}

TEST_CASE("an import with a body missing writes nothing; an aborted or interrupted move leaves nothing",
          "[durable][move]") {
  StoreFixture src, dst;
  for (int i = 0; i < 5; ++i) REQUIRE(src.enqueue1("q", "m" + std::to_string(i)));
  auto seqs = src.store().message_seqs("q");
  std::size_t next = 0;
  auto part = src.store().read_bodies(seqs, 0, 1, &next);  // the first body only
  REQUIRE(part.size() == 1);
  REQUIRE(wait_for<std::uint64_t>([&](auto cb) { dst.store().import_bodies(kMove, part, std::move(cb)); }));
  auto blob = src.store().export_queue("q");
  auto r = import(dst, {*blob});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::INTERNAL);
  CHECK_FALSE(dst.store().get_queue("q"));

  SECTION("aborted") {
    REQUIRE(wait_for<std::uint64_t>([&](auto cb) { dst.store().import_abort(kMove, std::move(cb)); }) ==
            std::uint64_t{1});
  }
  SECTION("the target restarted") { dst.restart(); }
  // Either way the mapping is gone: the complete copy is needed again.
  copy_bodies(src, dst, "q", 1 << 20);
  auto again = import(dst, {*blob});
  REQUIRE(again);
  CHECK(*again == 5);
  // A stale copy on the target (from a time it held the shard) is replaced.
  REQUIRE(dst.enqueue1("q", "stale"));
  copy_bodies(src, dst, "q", 1 << 20);
  REQUIRE(import(dst, {*blob}));
  CHECK(dst.stats("q").messages == 5);
}
