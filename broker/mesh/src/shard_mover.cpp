#include "roost/broker/shard_mover.h"

#include <roost/broker/actor_runtime.h>
#include <roost/broker/mesh.h>
#include <roost/broker/mesh_router.h>
#include <roost/client/peer.h>
#include <roost/core/byte_codec.h>
#include <roost/core/log.h>
#include <roost/core/metrics.h>
#include <roost/core/thread_name.h>
#include <roost/durable/committer.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/outbox_store.h>
#include <roost/durable/queue_store.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <cstring>
#include <future>
#include <optional>
#include <random>
#include <unordered_set>

namespace roost::broker {

namespace json = boost::json;

namespace {

constexpr std::size_t kMaxHistory = 64;
constexpr std::size_t kCatchUpBytes = 1u << 20;  // close once a copy round had less than this to copy
constexpr int kMaxRounds = 5;
constexpr std::size_t kMaxSessionBytes = std::size_t{1} << 30;  // exported queues kept for a finish
constexpr auto kSessionIdle = std::chrono::minutes(5);

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The steps' payloads: little-endian u64 numbers and u64-length-prefixed strings (roost::bytes).

// Sends one step and waits for its answer (at most `timeout`).
Result<std::uint64_t> step(PeerLink& link, const ShardCopy& s, std::string payload,
                           std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<Result<std::uint64_t>>>();
  auto future = promise->get_future();
  link.shard_copy(s, std::move(payload),
                  [promise](Result<std::uint64_t> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(timeout) != std::future_status::ready) {
    return std::unexpected(Error{ErrorCode::TIMEOUT, "the target did not answer in time"});
  }
  return future.get();
}

// A no-op through the committer: once it completes, everything submitted before it is committed.
class Barrier final : public durable::Op {
 public:
  explicit Barrier(std::shared_ptr<std::promise<void>> done) : done_(std::move(done)) {}
  void apply(durable::WriteContext&) override {}
  void complete(const Error*) override { done_->set_value(); }

 private:
  std::shared_ptr<std::promise<void>> done_;
};

// (target) The outbox marks of a moved shard: each origin's last applied effect, never lowered.
class MarksOp final : public durable::Op {
 public:
  MarksOp(durable::OutboxStore& outbox, std::uint32_t shard,
          std::vector<std::pair<std::string, std::uint64_t>> marks, durable::OutboxStore::MoveMark move,
          Callback<std::uint64_t> done)
      : outbox_(outbox),
        shard_(shard),
        marks_(std::move(marks)),
        move_(std::move(move)),
        done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    for (const auto& [origin, seq] : marks_) {
      if (outbox_.applied_in(ctx.txn, origin, shard_) < seq)
        outbox_.set_applied_in(ctx.txn, origin, shard_, seq);
    }
    // From here until the switch is settled, a restart keeps the shard closed (see settle()).
    outbox_.set_move_mark_in(ctx.txn, move_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    done_(marks_.size());
  }

 private:
  durable::OutboxStore& outbox_;
  std::uint32_t shard_;
  std::vector<std::pair<std::string, std::uint64_t>> marks_;
  durable::OutboxStore::MoveMark move_;
  Callback<std::uint64_t> done_;
};

// A shard move's mark (OutboxStore::MoveMark) written, or (nullopt) removed.
class MoveMarkOp final : public durable::Op {
 public:
  MoveMarkOp(durable::OutboxStore& outbox, std::uint32_t shard,
             std::optional<durable::OutboxStore::MoveMark> mark, Callback<std::uint64_t> done)
      : outbox_(outbox), shard_(shard), mark_(std::move(mark)), done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    if (mark_)
      outbox_.set_move_mark_in(ctx.txn, *mark_);
    else
      outbox_.clear_move_mark_in(ctx.txn, shard_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    done_(1);
  }

 private:
  durable::OutboxStore& outbox_;
  std::uint32_t shard_;
  std::optional<durable::OutboxStore::MoveMark> mark_;
  Callback<std::uint64_t> done_;
};

// Test-only crash points: with ROOST_FAILPOINT=NAME the process exits at NAME at once, as a kill -9
// there would (tests/integration/mesh_test.cpp).
bool failpoint(std::string_view name) {
  static const char* const chosen = std::getenv("ROOST_FAILPOINT");
  return chosen != nullptr && name == chosen;
}

// (target) Rows of a moved shard's objects, written; or (either side) those objects' rows deleted.
class ObjectsOp final : public durable::Op {
 public:
  ObjectsOp(durable::MailboxStore& store, std::vector<std::string> chunks, std::vector<std::string> drop,
            Callback<std::set<std::string>> done)
      : store_(store), chunks_(std::move(chunks)), drop_(std::move(drop)), done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    okeys_.clear();
    bad_ = false;
    for (const auto& c : chunks_) {  // all checked before anything is written
      if (!durable::MailboxStore::chunk_objects(c)) {
        bad_ = true;
        return;
      }
    }
    for (const auto& c : chunks_) store_.import_in(ctx.txn, c, &okeys_);
    if (!drop_.empty()) store_.drop_in(ctx.txn, drop_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    if (bad_) return done_(std::unexpected(Error{ErrorCode::MALFORMED, "an objects step is malformed"}));
    done_(std::move(okeys_));
  }

 private:
  durable::MailboxStore& store_;
  std::vector<std::string> chunks_, drop_;
  Callback<std::set<std::string>> done_;
  std::set<std::string> okeys_;
  bool bad_ = false;
};

}  // namespace

struct ShardMover::Move {
  std::uint64_t id = 0;
  std::uint32_t shard = 0;
  std::string from, to;
  std::int64_t from_epoch = 0;
  std::atomic<std::int64_t> epoch{0};  // the new one, once moved
  std::atomic<int> state{0};           // index into kStates
  std::atomic<std::uint64_t> bytes{0}, messages{0}, queues{0}, objects{0}, rounds{0};
  std::int64_t started_ms = 0;
  std::atomic<std::int64_t> closed_ms{0}, ended_ms{0};
  Mutex mu;
  std::string error ROOST_GUARDED_BY(mu);
  static constexpr const char* kStates[] = {"copying", "closing", "finishing", "done", "failed"};
  enum { kCopying, kClosing, kFinishing, kDone, kFailed };
};

struct ShardMover::Session {
  std::string origin;
  std::uint32_t shard = 0;
  std::vector<std::string> exported;  // complete exported queues
  std::string partial;                // the one being received
  std::vector<std::pair<std::string, std::uint64_t>> marks;
  std::vector<std::string> objects;  // chunks of object rows
  std::size_t bytes = 0;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool finishing = false;
};

ShardMover::ShardMover(durable::QueueStore& queues, durable::MailboxStore& mailboxes,
                       durable::OutboxStore& outbox, durable::Committer& committer, ActorRuntime& actors,
                       MeshRouter& router, ShardMoverOptions options)
    : queues_(queues),
      mailboxes_(mailboxes),
      outbox_(outbox),
      committer_(committer),
      actors_(actors),
      router_(router),
      options_(options) {}

ShardMover::~ShardMover() { stop(); }

void ShardMover::stop() {
  stopping_ = true;
  std::thread t, settling;
  {
    MutexLock lock(mu_);
    t = std::move(thread_);
    settling = std::move(settle_thread_);
  }
  if (t.joinable()) t.join();
  if (settling.joinable()) settling.join();
  etcd_pool_.join();
}

Result<std::string> ShardMover::start(std::uint32_t shard, std::string to) {
  Mesh* mesh = mesh_.load();
  if (mesh == nullptr || mesh->shards() == 0) {
    return std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"});
  }
  const auto& me = mesh->options().node_name;
  if (shard >= mesh->shards()) {
    return std::unexpected(
        Error{ErrorCode::INVALID_ARGUMENT, "the mesh has shards 0.." + std::to_string(mesh->shards() - 1)});
  }
  if (to == me)
    return std::unexpected(Error{ErrorCode::CONFLICT, "shard " + std::to_string(shard) + " is on " + me});
  bool live = false;
  for (const auto& m : mesh->members()) live = live || m.name == to;
  if (!live) return std::unexpected(Error{ErrorCode::NOT_FOUND, to + " is not a live member of the mesh"});
  auto p = mesh->cached(shard);
  if (!p || p->owner != me || !mesh->serves(shard, p->epoch)) {
    return std::unexpected(Error{ErrorCode::CONFLICT,
                                 "this node does not own shard " + std::to_string(shard) +
                                     (p && !p->owner.empty() ? " (" + p->owner + " does)" : std::string())});
  }
  auto move = std::make_shared<Move>();
  move->id = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  move->shard = shard;
  move->from = me;
  move->to = std::move(to);
  move->from_epoch = p->epoch;
  move->started_ms = now_ms();
  {
    MutexLock lock(mu_);
    if (stopping_) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "the node is stopping"});
    if (running_) return std::unexpected(Error{ErrorCode::CONFLICT, "another shard move runs on this node"});
    running_ = true;
    if (thread_.joinable()) thread_.join();  // the last move's thread has ended (running_ was false)
    moves_.push_front(move);
    if (moves_.size() > kMaxHistory) moves_.pop_back();
    thread_ = std::thread([this, move] { run(move); });
  }
  module_logger("mesh")->info("shard {}: moving to {} (move {:x}, epoch {})", shard, move->to, move->id,
                              move->from_epoch);
  auto all = json::parse(moves_json()).as_object().at("moves").as_array();
  return json::serialize(all.empty() ? json::value() : all[0]);
}

void ShardMover::run(std::shared_ptr<Move> move) {
  auto log = module_logger("mesh");
  auto r = transfer(*move);
  move->ended_ms = now_ms();
  if (r) {
    move->epoch = *r;
    move->state = Move::kDone;
    moved_out_.fetch_add(1, std::memory_order_relaxed);
    log->info("shard {}: moved to {} under epoch {} in {} ms ({} messages, {} bytes, closed {} ms)",
              move->shard, move->to, *r, move->ended_ms - move->started_ms, move->messages.load(),
              move->bytes.load(), move->closed_ms.load() == 0 ? 0 : move->ended_ms - move->closed_ms);
  } else {
    {
      MutexLock lock(move->mu);
      move->error = std::string(error_code_name(r.error().code)) + ": " + r.error().message;
    }
    move->state = Move::kFailed;
    failed_.fetch_add(1, std::memory_order_relaxed);
    log->warn("shard {}: the move to {} failed: {}", move->shard, move->to, r.error().message);
  }
  MutexLock lock(mu_);
  running_ = false;
}

Result<std::int64_t> ShardMover::transfer(Move& move) {
  auto log = module_logger("mesh");
  Mesh* mesh = mesh_.load();
  if (mesh == nullptr) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "left the mesh"});
  auto link = router_.peer(move.to);
  if (!link) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "no link to " + move.to});
  const auto shards = mesh->shards();
  ShardCopy head{move.id, move.shard, ShardCopyPhase::kBodies, move.from, 0};
  auto send = [&](ShardCopyPhase phase, std::string payload) -> Result<std::uint64_t> {
    if (stopping_) return std::unexpected(Error{ErrorCode::UNAVAILABLE, "the node is stopping"});
    ShardCopy s = head;
    s.phase = phase;
    if (phase == ShardCopyPhase::kFinish) s.epoch = move.from_epoch;
    return step(*link, s, std::move(payload), options_.step_timeout);
  };
  auto in_shard = [&](std::string_view queue) { return shard_of_queue(queue, shards) == move.shard; };
  auto shard_queues = [&] {
    std::vector<std::string> out;
    for (auto& q : queues_.list_queues()) {
      if (in_shard(q.name)) out.push_back(std::move(q.name));
    }
    return out;
  };
  auto shard_objects = [&] {
    return mailboxes_.object_keys([&](const durable::ObjectRef& r) {
      return shard_of_object(r.object_class, r.name, shards) == move.shard;
    });
  };
  std::unordered_set<std::uint64_t> sent;
  // One round: the bodies not sent yet of every queue of the shard.
  auto copy_round = [&](const std::vector<std::string>& names) -> Result<std::uint64_t> {
    std::uint64_t round = 0;
    for (const auto& q : names) {
      std::vector<std::uint64_t> seqs;
      for (auto seq : queues_.message_seqs(q)) {
        if (!sent.contains(seq)) seqs.push_back(seq);
      }
      for (std::size_t at = 0; at < seqs.size();) {
        std::size_t next = at;
        auto bodies = queues_.read_bodies(seqs, at, options_.chunk_bytes, &next);
        at = next;
        if (bodies.empty()) continue;
        std::string payload;
        for (const auto& [seq, raw] : bodies) {
          bytes::Writer(payload).num(seq).str64(raw);
        }
        auto n = payload.size();
        if (auto r = send(ShardCopyPhase::kBodies, std::move(payload)); !r) return std::unexpected(r.error());
        for (const auto& b : bodies) sent.insert(b.first);
        round += n;
        move.bytes += n;
      }
    }
    move.rounds += 1;
    return round;
  };
  auto undo = [&](Error e, bool closed) -> Result<std::int64_t> {
    (void)send(ShardCopyPhase::kAbort, {});
    if (closed) {
      // The target may still switch the shard (a finish answered late): a new claim here makes
      // its compare fail. Until that claim is made the shard stays closed.
      auto again = mesh->reclaim(move.shard, move.from_epoch);
      if (!again) {
        log->warn(
            "shard {}: could not claim it anew after the failed move ({}); it stays closed until this node's "
            "next claim",
            move.shard, again.error().message);
        return std::unexpected(e);
      }
      mesh->reopen_shard(move.shard);
    }
    (void)mark(move.shard, std::nullopt);  // (set only once the finish was about to go)
    return std::unexpected(e);
  };

  // 1. Copy while serving; repeat while a round still had much to copy.
  for (int round = 0; round < kMaxRounds; ++round) {
    auto r = copy_round(shard_queues());
    if (!r) return undo(r.error(), false);
    log->info("shard {}: copy round {} sent {} bytes to {}", move.shard, round + 1, *r, move.to);
    if (*r < kCatchUpBytes) break;
  }
  // 2. Close: nothing of the shard is admitted here any more; what was admitted is committed.
  move.state = Move::kClosing;
  move.closed_ms = now_ms();
  mesh->close_shard(move.shard);
  {
    auto barrier = std::make_shared<std::promise<void>>();
    auto done = barrier->get_future();
    committer_.submit(std::make_unique<Barrier>(barrier));
    done.wait();
  }
  if (!mesh->holds(move.shard, move.from_epoch)) {
    return undo(Error{ErrorCode::OWNER_UNAVAILABLE, "this node lost the shard's claim during the move"},
                true);
  }
  // 3. The rest: new bodies, then every queue as it is now, the objects, and the outbox marks.
  // (The objects' turns cannot commit here any more: their rows are what they are.)
  auto names = shard_queues();
  auto okeys = shard_objects();
  // Long polls parked on these queues (relayed push consumers among them) answer
  // owner_unavailable now, so that their clients go where the shard will be, instead of waiting
  // out their wait here.
  if (wake_) {
    for (const auto& q : names) wake_(q);
  }
  if (auto r = copy_round(names); !r) return undo(r.error(), true);
  for (const auto& q : names) {
    auto blob = queues_.export_queue(q);
    if (!blob) continue;
    move.queues += 1;
    move.messages += durable::QueueStore::exported_messages(*blob);
    for (std::size_t at = 0; at < blob->size() || at == 0;) {
      auto n = std::min(options_.chunk_bytes, blob->size() - at);
      std::string payload(1, at + n < blob->size() ? '\1' : '\0');  // more to come?
      payload.append(*blob, at, n);
      if (auto r = send(ShardCopyPhase::kQueues, std::move(payload)); !r) return undo(r.error(), true);
      move.bytes += n;
      at += n;
      if (at >= blob->size()) break;
    }
  }
  for (auto& chunk : mailboxes_.export_objects(okeys, options_.chunk_bytes)) {
    auto n = chunk.size();
    if (auto r = send(ShardCopyPhase::kObjects, std::move(chunk)); !r) return undo(r.error(), true);
    move.bytes += n;
  }
  move.objects = okeys.size();
  std::string marks;
  for (const auto& [origin, seq] : outbox_.marks(move.shard)) {
    bytes::Writer(marks).str64(origin).num(seq);
  }
  if (auto r = send(ShardCopyPhase::kMarks, std::move(marks)); !r) return undo(r.error(), true);
  // 4. The target builds the queues and switches the shard in etcd. From the moment the finish
  // leaves, the shard may be the target's: should this node stop before its copy is gone, the
  // mark keeps the shard closed at the next start until etcd says whose it is.
  if (auto marked = mark(move.shard, durable::OutboxStore::MoveMark{move.shard, shards, move.to}); !marked)
    return undo(marked.error(), true);
  move.state = Move::kFinishing;
  auto finished = send(ShardCopyPhase::kFinish, {});
  if (!finished) {
    // Did the switch happen (an answer lost, or late)? etcd says.
    auto p = mesh->resolve(move.shard, true);
    if (!p || p->home != move.to) return undo(finished.error(), true);
    log->warn("shard {}: the target's answer was lost ({}), but etcd says it moved", move.shard,
              finished.error().message);
    finished = static_cast<std::uint64_t>(p->owner == move.to ? p->epoch : 0);
  }
  auto epoch = static_cast<std::int64_t>(*finished);
  if (failpoint("move.after_switch")) std::_Exit(86);
  mesh->moved_away(move.shard, move.to, epoch);
  // The copy here is stale now: the objects leave memory (their sockets close with 1012: the
  // browsers reconnect to where they live now), then their rows and the queues go (the shard
  // stays closed here).
  actors_.evict(okeys);
  if (auto e = remove_copy(okeys, names)) {
    log->warn("shard {}: moved, but deleting this node's stale copy failed: {}", move.shard, e->message);
  } else {
    (void)mark(move.shard, std::nullopt);
  }
  return epoch;
}

std::optional<Error> ShardMover::remove_copy(const std::vector<std::string>& okeys,
                                             const std::vector<std::string>& names) {
  if (!okeys.empty()) {
    auto gone = std::make_shared<std::promise<Result<std::set<std::string>>>>();
    auto gone_f = gone->get_future();
    committer_.submit(std::make_unique<ObjectsOp>(
        mailboxes_, std::vector<std::string>{}, okeys,
        [gone](Result<std::set<std::string>> r) { gone->set_value(std::move(r)); }));
    if (auto r = gone_f.get(); !r) return r.error();
  }
  auto dropped = std::make_shared<std::promise<Result<std::uint64_t>>>();
  auto dropped_f = dropped->get_future();
  queues_.drop_queues(names, [dropped](Result<std::uint64_t> r) { dropped->set_value(std::move(r)); });
  if (auto r = dropped_f.get(); !r) return r.error();
  return std::nullopt;
}

void ShardMover::unmark(std::uint32_t shard) {
  committer_.submit(std::make_unique<MoveMarkOp>(outbox_, shard, std::nullopt, [](Result<std::uint64_t>) {}));
}

Result<std::uint64_t> ShardMover::mark(std::uint32_t shard, std::optional<durable::OutboxStore::MoveMark> m) {
  auto p = std::make_shared<std::promise<Result<std::uint64_t>>>();
  auto f = p->get_future();
  committer_.submit(std::make_unique<MoveMarkOp>(outbox_, shard, std::move(m),
                                                 [p](Result<std::uint64_t> r) { p->set_value(r); }));
  return f.get();
}

void ShardMover::settle(std::vector<durable::OutboxStore::MoveMark> marks) {
  MutexLock lock(mu_);
  settle_thread_ = std::thread([this, marks = std::move(marks)] {
    roost::name_this_thread("roost-settle");
    for (const auto& mk : marks) settle_one(mk);
  });
}

void ShardMover::settle_one(const durable::OutboxStore::MoveMark& mk) {
  auto log = module_logger("mesh");
  Mesh* mesh = nullptr;
  Result<ShardPlacement> p = std::unexpected(Error{ErrorCode::UNAVAILABLE, "not asked yet"});
  while (!stopping_) {
    mesh = mesh_.load();
    if (mesh != nullptr && mesh->shards() != 0) {
      p = mesh->resolve(mk.shard, true);
      if (p) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!p || mesh == nullptr) return;  // stopping: the mark stays for the next start
  const auto& me = mesh->options().node_name;
  auto in_shard_object = [&](const durable::ObjectRef& r) {
    return shard_of_object(r.object_class, r.name, mk.shards) == mk.shard;
  };
  auto okeys = mailboxes_.object_keys(in_shard_object);
  if (p->home == me || p->home.empty() || mk.shards != mesh->shards()) {
    if (mk.shards != mesh->shards()) {
      log->warn("shard {}: a move to/from {} was unsettled, but the mesh has {} shards now (then {}): kept",
                mk.shard, mk.peer, mesh->shards(), mk.shards);
    }
    // The switch did not happen (or this node was the target and it did): the data here is the
    // shard's. Its objects load now.
    router_.release(mk.shard);
    actors_.adopt(okeys);
    log->info("shard {}: a move with {} was left unsettled; etcd says the shard is this node's: kept",
              mk.shard, mk.peer);
  } else {
    // Another node's: what is here is a stale copy (the source stopped before it removed it, or
    // the target before its switch, which then never happened).
    mesh->close_shard(mk.shard);
    router_.release(mk.shard);
    std::vector<std::string> names;
    for (auto& q : queues_.list_queues()) {
      if (shard_of_queue(q.name, mk.shards) == mk.shard) names.push_back(std::move(q.name));
    }
    if (auto e = remove_copy(okeys, names)) {
      log->warn("shard {}: removing this node's stale copy failed: {}", mk.shard, e->message);
      return;  // the mark stays: the next start tries again
    }
    log->info(
        "shard {}: a move with {} was left unsettled; the shard is {}'s (epoch {}): removed this node's "
        "stale copy ({} queues, {} objects)",
        mk.shard, mk.peer, p->home, p->epoch, names.size(), okeys.size());
  }
  (void)mark(mk.shard, std::nullopt);
}

void ShardMover::on_copy(ShardCopy s, std::string payload, Callback<std::uint64_t> done) {
  Mesh* mesh = mesh_.load();
  if (mesh == nullptr || mesh->shards() == 0) {
    return done(std::unexpected(Error{ErrorCode::UNAVAILABLE, "not joined to the mesh yet"}));
  }
  if (s.shard >= mesh->shards())
    return done(std::unexpected(Error{ErrorCode::INVALID_ARGUMENT, "no such shard"}));
  if (auto p = mesh->cached(s.shard);
      p && p->owner == mesh->options().node_name && s.phase != ShardCopyPhase::kAbort) {
    // This node serves the shard: what it holds of it is live, not a stale copy to replace.
    return done(
        std::unexpected(Error{ErrorCode::CONFLICT, "this node owns shard " + std::to_string(s.shard)}));
  }
  std::shared_ptr<Session> session;
  {
    MutexLock lock(mu_);
    // Sessions whose source went silent are forgotten (their bodies with them).
    auto now = std::chrono::steady_clock::now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->first != s.move && !it->second->finishing && now - it->second->last > kSessionIdle) {
        module_logger("mesh")->warn("shard {}: the move from {} went silent; forgetting it",
                                    it->second->shard, it->second->origin);
        queues_.import_abort(it->first, [](Result<std::uint64_t>) {});
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    if (s.phase == ShardCopyPhase::kAbort) {
      sessions_.erase(s.move);
    } else {
      auto& slot = sessions_[s.move];
      if (!slot) {
        slot = std::make_shared<Session>();
        slot->origin = s.origin;
        slot->shard = s.shard;
      }
      if (slot->origin != s.origin || slot->shard != s.shard) {
        return done(std::unexpected(Error{ErrorCode::CONFLICT, "move id reused"}));
      }
      if (slot->finishing) return done(std::unexpected(Error{ErrorCode::CONFLICT, "the move is finishing"}));
      slot->last = now;
      session = slot;
    }
  }
  switch (s.phase) {
    case ShardCopyPhase::kAbort: return queues_.import_abort(s.move, std::move(done));
    case ShardCopyPhase::kBodies: {
      std::vector<std::pair<std::uint64_t, std::string>> bodies;
      bytes::Reader c(payload);
      while (c.ok() && !c.done()) {
        auto seq = c.num<std::uint64_t>();
        auto raw = c.str64();
        if (c.ok()) bodies.emplace_back(seq, std::string(raw));
      }
      if (!c.ok()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "a bodies step is malformed"}));
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      return queues_.import_bodies(s.move, std::move(bodies), std::move(done));
    }
    case ShardCopyPhase::kQueues: {
      if (payload.empty()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "an empty queues step"}));
      MutexLock lock(mu_);
      session->bytes += payload.size();
      if (session->bytes > kMaxSessionBytes) {
        return done(std::unexpected(
            Error{ErrorCode::PAYLOAD_TOO_LARGE, "the shard's queues exceed 1 GiB of records"}));
      }
      bool more = payload[0] != '\0';
      session->partial.append(payload, 1);
      if (!more) session->exported.push_back(std::exchange(session->partial, {}));
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      return done(session->exported.size());
    }
    case ShardCopyPhase::kObjects: {
      if (payload.empty()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "an empty objects step"}));
      MutexLock lock(mu_);
      session->bytes += payload.size();
      if (session->bytes > kMaxSessionBytes) {
        return done(std::unexpected(Error{ErrorCode::PAYLOAD_TOO_LARGE, "the shard's records exceed 1 GiB"}));
      }
      bytes_in_.fetch_add(payload.size(), std::memory_order_relaxed);
      session->objects.push_back(std::move(payload));
      return done(session->objects.size());
    }
    case ShardCopyPhase::kMarks: {
      bytes::Reader c(payload);
      std::vector<std::pair<std::string, std::uint64_t>> marks;
      while (c.ok() && !c.done()) {
        auto origin = c.str64();
        auto seq = c.num<std::uint64_t>();
        if (c.ok()) marks.emplace_back(std::string(origin), seq);
      }
      if (!c.ok()) return done(std::unexpected(Error{ErrorCode::MALFORMED, "a marks step is malformed"}));
      MutexLock lock(mu_);
      session->marks = std::move(marks);
      return done(session->marks.size());
    }
    case ShardCopyPhase::kFinish: break;
  }
  // Finish: the marks, then the queues (one transaction each), then the switch in etcd.
  {
    MutexLock lock(mu_);
    if (!session->partial.empty()) {
      return done(std::unexpected(Error{ErrorCode::MALFORMED, "an exported queue was not complete"}));
    }
    session->finishing = true;
  }
  auto forget = [this, id = s.move] {
    MutexLock lock(mu_);
    sessions_.erase(id);
  };
  auto shared_done = std::make_shared<Callback<std::uint64_t>>(std::move(done));
  // Until the switch, the shard's objects written here stay inert: closed, their alarms do not
  // fire and no turn of theirs commits (take_over opens it).
  mesh->close_shard(s.shard);
  auto drop_objects = [this](std::set<std::string> okeys) {
    if (okeys.empty()) return;
    committer_.submit(std::make_unique<ObjectsOp>(mailboxes_, std::vector<std::string>{},
                                                  std::vector<std::string>(okeys.begin(), okeys.end()),
                                                  [](Result<std::set<std::string>>) {}));
  };
  committer_.submit(std::make_unique<MarksOp>(
      outbox_, s.shard, session->marks, durable::OutboxStore::MoveMark{s.shard, mesh->shards(), s.origin},
      [this, s, session, shared_done, forget, drop_objects](Result<std::uint64_t> marked) mutable {
        if (!marked) {
          forget();
          queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
          return (*shared_done)(std::unexpected(marked.error()));
        }
        committer_.submit(std::make_unique<ObjectsOp>(
            mailboxes_, std::move(session->objects), std::vector<std::string>{},
            [this, s, session, shared_done, forget,
             drop_objects](Result<std::set<std::string>> written) mutable {
              if (!written) {  // nothing of them was written
                forget();
                queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
                unmark(s.shard);
                return (*shared_done)(std::unexpected(written.error()));
              }
              std::vector<std::string> names;
              for (const auto& blob : session->exported) {
                names.push_back(durable::QueueStore::exported_name(blob));
              }
              queues_.import_queues(
                  s.move, std::move(session->exported),
                  [this, s, names, okeys = std::move(*written), shared_done, forget,
                   drop_objects](Result<std::uint64_t> placed) mutable {
                    forget();
                    if (!placed) {
                      queues_.import_abort(s.move, [](Result<std::uint64_t>) {});
                      drop_objects(std::move(okeys));
                      unmark(s.shard);
                      return (*shared_done)(std::unexpected(placed.error()));
                    }
                    // The switch blocks on etcd: off the committer thread.
                    boost::asio::post(etcd_pool_, [this, s, names, okeys = std::move(okeys), placed = *placed,
                                                   shared_done, drop_objects]() mutable {
                      Mesh* m = mesh_.load();
                      auto epoch = m != nullptr ? m->take_over(s.shard, s.origin, s.epoch)
                                                : Result<std::int64_t>(std::unexpected(
                                                      Error{ErrorCode::UNAVAILABLE, "left the mesh"}));
                      if (!epoch) {
                        // Not switched: what was built here is not this node's.
                        module_logger("mesh")->warn("shard {}: taking it over from {} failed: {}", s.shard,
                                                    s.origin, epoch.error().message);
                        queues_.drop_queues(names, [](Result<std::uint64_t>) {});
                        drop_objects(std::move(okeys));
                        unmark(s.shard);
                        return (*shared_done)(std::unexpected(epoch.error()));
                      }
                      // Open here now (take_over did): the objects' mail and subscriptions load.
                      actors_.adopt(std::vector<std::string>(okeys.begin(), okeys.end()));
                      unmark(s.shard);
                      moved_in_.fetch_add(1, std::memory_order_relaxed);
                      module_logger("mesh")->info(
                          "shard {}: took it over from {} ({} queues, {} messages, {} objects), epoch {}",
                          s.shard, s.origin, names.size(), placed, okeys.size(), *epoch);
                      (*shared_done)(static_cast<std::uint64_t>(*epoch));
                    });
                  });
            }));
      }));
}

std::string ShardMover::moves_json() const {
  json::array out;
  MutexLock lock(mu_);
  for (const auto& m : moves_) {
    std::string error;
    {
      MutexLock l(m->mu);
      error = m->error;
    }
    auto end = m->ended_ms.load();
    json::object o{
        {"id", json::string(fmt::format("{:016x}", m->id))},
        {"shard", m->shard},
        {"from", m->from},
        {"to", m->to},
        {"state", Move::kStates[m->state.load()]},
        {"from_epoch", m->from_epoch},
        {"epoch", m->epoch.load()},
        {"queues", m->queues.load()},
        {"messages", m->messages.load()},
        {"objects", m->objects.load()},
        {"bytes", m->bytes.load()},
        {"rounds", m->rounds.load()},
        {"started_ms", m->started_ms},
        {"duration_ms", (end != 0 ? end : now_ms()) - m->started_ms},
        {"closed_ms", m->closed_ms.load() == 0 ? 0 : (end != 0 ? end : now_ms()) - m->closed_ms.load()}};
    if (!error.empty()) o["error"] = error;
    out.push_back(std::move(o));
  }
  return json::serialize(json::object{{"moves", std::move(out)}});
}

std::string ShardMover::metrics_text() const {
  MetricsWriter w;
  w.counter("roost_mesh_moves_out_total", "Shard moves this node finished as the source.", moved_out_.load());
  w.counter("roost_mesh_moves_in_total", "Shard moves this node finished as the target.", moved_in_.load());
  w.counter("roost_mesh_moves_failed_total", "Shard moves this node started that failed (undone).",
            failed_.load());
  w.counter("roost_mesh_move_bytes_in_total", "Bytes of shard data this node received.", bytes_in_.load());
  return std::move(w).text();
}

}  // namespace roost::broker
