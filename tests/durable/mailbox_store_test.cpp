// MailboxStore on a real LMDB environment: mailbox sequence numbers, consumption, storage scans,
// alarms (one-shot, repeating with a missed count, replace, cancel), subscriptions, reopen.
#include <catch2/catch.hpp>

#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/mailbox_store.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <set>

#include "../support/temp_dir.h"

using namespace roost;
using namespace roost::durable;

namespace {

// Runs `fn` inside a committed write transaction.
class FnOp final : public Op {
 public:
  FnOp(std::function<void(WriteContext&)> fn, std::promise<void>& done) : fn_(std::move(fn)), done_(done) {}
  void apply(WriteContext& ctx) override { fn_(ctx); }
  void complete(const Error* e) override {
    if (e)
      done_.set_exception(std::make_exception_ptr(std::runtime_error(e->message)));
    else
      done_.set_value();
  }

 private:
  std::function<void(WriteContext&)> fn_;
  std::promise<void>& done_;
};

struct Fixture {
  explicit Fixture(const std::filesystem::path& dir) {
    EnvOptions eo;
    eo.dir = dir;
    env = std::make_unique<Env>(eo);
    store = std::make_unique<MailboxStore>(*env);
    committer = std::make_unique<Committer>(*env, CommitterOptions{}, [] { return std::int64_t{0}; });
    committer->start();
  }
  ~Fixture() { committer->stop(); }
  void write(std::function<void(WriteContext&)> fn) {
    std::promise<void> p;
    committer->submit(std::make_unique<FnOp>(std::move(fn), p));
    p.get_future().get();
  }
  std::unique_ptr<Env> env;
  std::unique_ptr<MailboxStore> store;
  std::unique_ptr<Committer> committer;
};

MailRecord mail(std::string data) {
  MailRecord m;
  m.data = std::move(data);
  return m;
}

}  // namespace

TEST_CASE("mailbox: per-object sequences, consumption, pending mail after reopen", "[durable][mailbox]") {
  test::TempDir dir("roost-mbox");
  auto a = MailboxStore::object_key("doc", "a");
  auto ab = MailboxStore::object_key("doc", "ab");  // a name that extends another stays apart
  {
    Fixture f(dir.path());
    std::vector<std::uint64_t> seqs;
    f.write([&](WriteContext& ctx) {
      seqs.push_back(f.store->append_in(ctx.txn, a, mail("1")));
      seqs.push_back(f.store->append_in(ctx.txn, a, mail("2")));
      seqs.push_back(f.store->append_in(ctx.txn, ab, mail("x")));
      seqs.push_back(f.store->append_in(ctx.txn, a, mail("3")));
    });
    CHECK(seqs == std::vector<std::uint64_t>{1, 2, 1, 3});
    f.write([&](WriteContext& ctx) { CHECK(f.store->consume_in(ctx.txn, a, 1)); });
    f.write([&](WriteContext& ctx) { CHECK_FALSE(f.store->consume_in(ctx.txn, a, 1)); });
  }
  Fixture f(dir.path());
  auto pending = f.store->all_pending();
  REQUIRE(pending.size() == 3);
  CHECK(pending[0].object.name == "a");
  CHECK(pending[0].seq == 2);
  CHECK(pending[0].record.data == "2");
  CHECK(pending[1].seq == 3);
  CHECK(pending[2].object.name == "ab");
  CHECK(f.store->object_count() == 2);
  // Sequences continue after a reopen.
  f.write([&](WriteContext& ctx) { CHECK(f.store->append_in(ctx.txn, a, mail("4")) == 4); });
  auto ref = MailboxStore::parse_object_key(ab);
  REQUIRE(ref);
  CHECK(ref->object_class == "doc");
  CHECK(ref->name == "ab");
  CHECK_FALSE(MailboxStore::parse_object_key("\x05xy"));
}

TEST_CASE("mailbox: storage get, prefix and range scans stay inside the object", "[durable][mailbox]") {
  test::TempDir dir("roost-mbox");
  Fixture f(dir.path());
  auto a = MailboxStore::object_key("c", "a");
  auto b = MailboxStore::object_key("c", "b");
  f.write([&](WriteContext& ctx) {
    for (auto k : {"log/1", "log/2", "log/3", "other"})
      f.store->kv_put_in(ctx.txn, a, k, std::string("v") + k);
    f.store->kv_put_in(ctx.txn, b, "log/9", "b's");
  });
  CHECK(f.store->kv_get(a, "log/2") == "vlog/2");
  CHECK_FALSE(f.store->kv_get(b, "log/2"));
  auto logs = f.store->kv_scan(a, "log/", "", "", 0);
  REQUIRE(logs.size() == 3);
  CHECK(logs[0].first == "log/1");
  CHECK(f.store->kv_scan(a, "log/", "", "", 2).size() == 2);
  auto range = f.store->kv_scan(a, "", "log/2", "other", 0);
  REQUIRE(range.size() == 2);
  CHECK(range[0].first == "log/2");
  CHECK(range[1].first == "log/3");
  f.write([&](WriteContext& ctx) { CHECK(f.store->kv_del_in(ctx.txn, a, "log/1")); });
  CHECK(f.store->kv_scan(a, "log/", "", "", 0).size() == 2);
}

TEST_CASE("mailbox: alarms fire once, repeat with a missed count, can be replaced and cancelled",
          "[durable][mailbox]") {
  test::TempDir dir("roost-mbox");
  Fixture f(dir.path());
  auto o = MailboxStore::object_key("alarm", "o");
  f.write([&](WriteContext& ctx) {
    f.store->alarm_set_in(ctx.txn, o, "once", 1000, 0);
    f.store->alarm_set_in(ctx.txn, o, "tick", 500, 100);
    f.store->alarm_set_in(ctx.txn, o, "gone", 700, 0);
    f.store->alarm_set_in(ctx.txn, o, "moved", 200, 0);
    f.store->alarm_set_in(ctx.txn, o, "moved", 5000, 0);  // replaces
    f.store->alarm_cancel_in(ctx.txn, o, "gone");
  });
  CHECK(f.store->next_alarm_ms() == 500);
  CHECK(f.store->alarm(o, "moved")->due_ms == 5000);
  CHECK_FALSE(f.store->alarm(o, "gone"));
  std::vector<PendingMail> fired;
  f.write([&](WriteContext& ctx) { fired = f.store->fire_due_in(ctx.txn, 1250, 100); });
  REQUIRE(fired.size() == 2);
  CHECK(fired[0].record.subject == "tick");
  CHECK(fired[0].record.kind == MailKind::kAlarm);
  CHECK(fired[0].record.scheduled_ms == 500);
  CHECK(fired[0].record.missed == 7);  // 600 … 1200 skipped
  CHECK(fired[1].record.subject == "once");
  CHECK(fired[1].record.missed == 0);
  CHECK(f.store->alarm(o, "tick")->due_ms == 1300);  // the next occurrence after now
  CHECK_FALSE(f.store->alarm(o, "once"));
  CHECK(f.store->all_pending().size() == 2);  // the firings are durable mail
  f.write([&](WriteContext& ctx) { CHECK(f.store->fire_due_in(ctx.txn, 1250, 100).empty()); });
}

TEST_CASE("mailbox: durable subscriptions and record encoding", "[durable][mailbox]") {
  test::TempDir dir("roost-mbox");
  Fixture f(dir.path());
  auto o = MailboxStore::object_key("l", "x");
  f.write([&](WriteContext& ctx) {
    f.store->subscription_set_in(ctx.txn, o, "news.>", true);
    f.store->subscription_set_in(ctx.txn, o, "chat.*", true);
    f.store->subscription_set_in(ctx.txn, o, "chat.*", false);
  });
  auto subs = f.store->all_subscriptions();
  REQUIRE(subs.size() == 1);
  CHECK(subs[0].second == "news.>");
  MailRecord m;
  m.kind = MailKind::kChannel;
  m.content_type = ContentType::kBytes;
  m.subject = "news.a";
  m.data = std::string("\0\1\2", 3);
  auto back = MailRecord::decode(m.encode());
  REQUIRE(back);
  CHECK(back->kind == MailKind::kChannel);
  CHECK(back->content_type == ContentType::kBytes);
  CHECK(back->subject == "news.a");
  CHECK(back->data == m.data);
  CHECK_FALSE(MailRecord::decode("\x09"));
}

TEST_CASE(
    "mailbox: storage lists backwards from the end, with prefix, range and limit, and stays in its object",
    "[durable][mailbox]") {
  test::TempDir dir("roost-mbox");
  Fixture f(dir.path());
  // Three objects whose keys sit next to each other in the table: a scan must not cross into them.
  auto a = MailboxStore::object_key("kv", "a");
  auto before = MailboxStore::object_key("kv", "");
  auto after = MailboxStore::object_key("kv", "b");
  f.write([&](WriteContext& ctx) {
    for (int i = 0; i < 50; ++i) {
      char k[16];
      std::snprintf(k, sizeof k, "msg/%03d", i);
      f.store->kv_put_in(ctx.txn, a, k, std::to_string(i));
      f.store->kv_put_in(ctx.txn, after, k, "other");
      f.store->kv_put_in(ctx.txn, before, k, "other");
    }
    f.store->kv_put_in(ctx.txn, a, "zzz", "last");
    f.store->kv_put_in(ctx.txn, a, "aaa", "first");
    f.store->kv_put_in(ctx.txn, a, std::string("msg\xff", 4), "past the prefix");
  });
  auto keys = [](const std::vector<std::pair<std::string, std::string>>& v) {
    std::vector<std::string> out;
    for (const auto& [k, _] : v) out.push_back(k);
    return out;
  };
  using V = std::vector<std::string>;
  // The last 3 of a prefix, newest first.
  CHECK(keys(f.store->kv_scan(a, "msg/", "", "", 3, true)) == V{"msg/049", "msg/048", "msg/047"});
  // The whole object, backwards: its last key first, its first key last, nothing of the neighbours.
  auto all = f.store->kv_scan(a, "", "", "", 0, true);
  REQUIRE(all.size() == 53);
  CHECK(all.front().first == "zzz");
  CHECK(all.back().first == "aaa");
  CHECK(keys(f.store->kv_scan(a, "", "", "", 2, true)) == V{"zzz", std::string("msg\xff", 4)});
  // A range (end exclusive) backwards, and with a prefix.
  CHECK(keys(f.store->kv_scan(a, "", "msg/010", "msg/013", 0, true)) == V{"msg/012", "msg/011", "msg/010"});
  CHECK(keys(f.store->kv_scan(a, "msg/", "msg/047", "", 0, true)) == V{"msg/049", "msg/048", "msg/047"});
  // Forward and backward agree on the set.
  auto fwd = f.store->kv_scan(a, "msg/", "", "", 0, false);
  auto back = f.store->kv_scan(a, "msg/", "", "", 0, true);
  REQUIRE(fwd.size() == 50);
  std::reverse(back.begin(), back.end());
  CHECK(fwd == back);
  // Nothing in range: empty, in both directions.
  CHECK(f.store->kv_scan(a, "nope/", "", "", 0, true).empty());
  CHECK(f.store->kv_scan(a, "", "msg/100", "msg/200", 0, true).empty());
}

TEST_CASE("committer: a fence that says no abandons the group — nothing written, owner_unavailable",
          "[durable]") {
  test::TempDir dir("roost-fence");
  EnvOptions eo;
  eo.dir = dir.path();
  Env env(eo);
  MailboxStore store(env);
  Committer committer(env, CommitterOptions{}, [] { return std::int64_t{0}; });
  std::atomic<bool> may{true};
  committer.set_fence([&] { return may.load(); });
  committer.start();
  auto key = MailboxStore::object_key("doc", "f");
  auto write = [&](std::string data) {
    std::promise<void> p;
    committer.submit(std::make_unique<FnOp>(
        [&, data](WriteContext& ctx) { store.append_in(ctx.txn, key, mail(data)); }, p));
    try {
      p.get_future().get();
      return std::string();
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
  };
  CHECK(write("1").empty());
  may = false;
  CHECK(write("2") == "this node lost its ownership lease before the commit");
  CHECK(committer.metrics().fenced_groups.load() >= 1);
  may = true;
  CHECK(write("3").empty());
  committer.stop();
  // Only 1 and 3 were written: the fenced group left nothing behind.
  auto pending = store.all_pending();
  REQUIRE(pending.size() == 2);
  CHECK(pending[0].record.data == "1");
  CHECK(pending[1].record.data == "3");
  CHECK(pending[1].seq == 2);  // its seq was not used up either
}

TEST_CASE(
    "mailbox: a shard's objects are exported, imported elsewhere whole, and dropped; moving alarms wait",
    "[durable][mailbox][move]") {
  test::TempDir dir_a("roost-mbox"), dir_b("roost-mbox");
  Fixture a(dir_a.path()), b(dir_b.path());
  auto moving = MailboxStore::object_key("counter", "moving");
  auto staying = MailboxStore::object_key("counter", "staying");
  auto other = MailboxStore::object_key("counter", "other");  // b's own, untouched
  a.write([&](WriteContext& ctx) {
    for (const auto& o : {moving, staying}) {
      a.store->append_in(ctx.txn, o, mail("m1"));
      a.store->append_in(ctx.txn, o, mail("m2"));
      a.store->kv_put_in(ctx.txn, o, "count", "2");
      a.store->kv_put_in(ctx.txn, o, std::string(300, 'k'), std::string(2000, 'v'));  // a big row
      a.store->alarm_set_in(ctx.txn, o, "tick", 100, 50);
      a.store->subscription_set_in(ctx.txn, o, "news.>", true);
    }
    a.store->consume_in(ctx.txn, moving, 1);  // m1 consumed: the next seq is still 3
  });
  b.write([&](WriteContext& ctx) { b.store->kv_put_in(ctx.txn, other, "mine", "1"); });

  auto keys = a.store->object_keys([](const ObjectRef& r) { return r.name == "moving"; });
  REQUIRE(keys == std::vector<std::string>{moving});
  auto chunks = a.store->export_objects(keys, 1024);  // small chunks: the rows span several
  REQUIRE(chunks.size() >= 2);
  std::set<std::string> okeys;
  for (const auto& c : chunks) {
    auto in = MailboxStore::chunk_objects(c);
    REQUIRE(in);
    okeys.insert(in->begin(), in->end());
  }
  CHECK(okeys == std::set<std::string>{moving});
  CHECK_FALSE(MailboxStore::chunk_objects(chunks[0].substr(0, chunks[0].size() - 1)));  // cut short
  b.write([&](WriteContext& ctx) {
    for (const auto& c : chunks) CHECK(b.store->import_in(ctx.txn, c));
  });
  // Everything of it, nothing of the other object.
  auto pending = b.store->pending_of(moving);
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].seq == 2);
  CHECK(pending[0].record.data == "m2");
  CHECK(b.store->kv_get(moving, "count") == "2");
  CHECK(b.store->kv_get(moving, std::string(300, 'k')) == std::string(2000, 'v'));
  CHECK(b.store->alarm(moving, "tick")->every_ms == 50);
  CHECK(b.store->subscriptions_of(moving) == std::vector<std::string>{"news.>"});
  CHECK(b.store->pending_of(staying).empty());
  CHECK(b.store->kv_get(other, "mine") == "1");
  b.write([&](WriteContext& ctx) { CHECK(b.store->append_in(ctx.txn, moving, mail("m3")) == 3); });

  // An alarm of an object whose shard is moving waits; the others fire.
  std::vector<PendingMail> fired;
  a.write([&](WriteContext& ctx) {
    fired = a.store->fire_due_in(ctx.txn, 120, 100, [&](std::string_view okey) { return okey == moving; });
  });
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].object.name == "staying");
  CHECK(a.store->alarm(moving, "tick")->due_ms == 100);

  // The source drops it: no row of it is left, the other object is whole.
  a.write([&](WriteContext& ctx) { a.store->drop_in(ctx.txn, keys); });
  CHECK(a.store->pending_of(moving).empty());
  CHECK_FALSE(a.store->kv_get(moving, "count"));
  CHECK_FALSE(a.store->alarm(moving, "tick"));
  CHECK(a.store->subscriptions_of(moving).empty());
  CHECK(a.store->object_keys([](const ObjectRef& r) { return r.name == "moving"; }).empty());
  CHECK(a.store->kv_get(staying, "count") == "2");
  CHECK(a.store->next_alarm_ms() == 150);  // staying's next tick only
}
