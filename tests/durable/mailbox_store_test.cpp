// MailboxStore on a real LMDB environment: mailbox sequence numbers, consumption, storage scans,
// alarms (one-shot, repeating with a missed count, replace, cancel), subscriptions, reopen.
#include <catch2/catch.hpp>

#include <roost/durable/committer.h>
#include <roost/durable/env.h>
#include <roost/durable/mailbox_store.h>

#include <future>

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
