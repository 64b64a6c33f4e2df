#include "roost/broker/shard_mover.h"

#include "shard_move_ops.h"
#include "shard_receiver.h"

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
using namespace shard_moves;

namespace {

constexpr std::size_t kMaxHistory = 64;
constexpr std::size_t kCatchUpBytes = 1u << 20;  // close once a copy round had less than this to copy
constexpr int kMaxRounds = 5;

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

ShardMover::ShardMover(durable::QueueStore& queues, durable::MailboxStore& mailboxes,
                       durable::OutboxStore& outbox, durable::Committer& committer, ActorRuntime& actors,
                       MeshRouter& router, ShardMoverOptions options)
    : queues_(queues),
      mailboxes_(mailboxes),
      outbox_(outbox),
      committer_(committer),
      actors_(actors),
      router_(router),
      options_(options),
      receiver_(std::make_unique<ShardReceiver>(queues, mailboxes, outbox, committer, actors, mesh_)) {}

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
  receiver_->stop();
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

void ShardMover::on_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done) {
  receiver_->on_copy(std::move(step), std::move(payload), std::move(done));
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
  w.counter("roost_mesh_moves_in_total", "Shard moves this node finished as the target.",
            receiver_->moved_in());
  w.counter("roost_mesh_moves_failed_total", "Shard moves this node started that failed (undone).",
            failed_.load());
  w.counter("roost_mesh_move_bytes_in_total", "Bytes of shard data this node received.",
            receiver_->bytes_in());
  return std::move(w).text();
}

}  // namespace roost::broker
