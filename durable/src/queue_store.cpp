#include "queue_work.h"

namespace roost::durable {

// ---- QueueStore --------------------------------------------------------------------------------

QueueStore::QueueStore(Env& env, Committer& committer, QueueStoreOptions options,
                       std::function<std::int64_t()> clock)
    : env_(env),
      committer_(committer),
      options_(options),
      clock_(std::move(clock)),
      tables_(std::make_unique<Tables>()),
      nonce_rng_(std::random_device{}()) {
  auto& t = *tables_;
  t.queues = env_.open_db("queues");
  t.meta = env_.open_db("meta");
  t.body = env_.open_db("body");
  t.state = env_.open_db("state");
  t.ready = env_.open_db("ready");
  t.due = env_.open_db("due");
  t.keyq = env_.open_db("keyq");
  t.dedup = env_.open_db("dedup");
  t.dedupx = env_.open_db("dedupx");
  t.mvmap = env_.open_db("mvmap");
  {
    Txn txn = env_.begin_read();
    if (auto v = txn.get(t.meta, "next_qid"); v && v->size() == 4) {
      next_qid_ = static_cast<std::uint32_t>(codec::get_be(*v, 0, 4));
    }
    if (auto v = txn.get(t.meta, "next_seq"); v && v->size() == 8) {
      next_seq_ = codec::get_be(*v, 0, 8);
    }
    seq_reserved_ = next_seq_;
    Cursor c(txn, t.queues);
    for (auto e = c.first(); e; e = c.next()) {
      if (auto rec = QueueRecord::decode(e->value)) names_[rec->qid] = std::string(e->key);
    }
  }
  recover();
  forget_moves();
  committer_.add_participant(this);
}

QueueStore::~QueueStore() = default;

// Leases do not survive a restart: every leased message becomes visible again. Done in
// transactions of at most kRecoverBatch messages, none holding the map's resize lock while the
// map grows (a write transaction holds it shared: growing inside one deadlocked), with progress
// logged every few seconds. When the storage is full and cannot grow, the rest stays leased: the
// leases run out at their visibility timeouts and the queue redelivers them then, so the node
// still starts (and can drain) on a full disk.
void QueueStore::recover() {
  auto log = roost::module_logger("durable");
  constexpr std::size_t kRecoverBatch = 20'000;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> leased;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, tables_->due);
    for (auto e = c.first(); e; e = c.next()) {
      leased.emplace_back(keys::qid_of(e->key), keys::tail_seq(e->key));
    }
  }
  if (leased.size() > kRecoverBatch) {
    log->info("recovery: {} messages were leased at the last stop; making them visible again", leased.size());
  }
  std::uint64_t released = 0;
  std::size_t at = 0;
  std::size_t batch = kRecoverBatch;
  bool bumped = false;
  auto started = std::chrono::steady_clock::now();
  auto last_log = started;
  while (true) {
    std::size_t end = std::min(leased.size(), at + batch);
    std::optional<MdbError> full;
    {
      Txn txn = env_.begin_write();
      WriteContext ctx{txn, clock_(), false};
      Work work(*this, ctx);
      std::uint64_t n = 0;
      try {
        for (std::size_t i = at; i < end; ++i) {
          auto [qid, seq] = leased[i];
          Queue* q = work.find_by_qid(qid);
          if (q == nullptr) continue;
          auto st = work.get_state(*q, seq);
          if (!st || st->kind != MsgStateKind::kLeased) continue;
          work.detach(*q, seq, *st);
          st->visible_at = ctx.now_ms;  // nonce kept: a late ack still counts until a redelivery
          work.activate(*q, seq, *st);
          ++n;
        }
        work.flush();
        txn.commit();
        work.publish();
        released += n;
        at = end;
        bumped = false;
      } catch (const MdbError& e) {
        bool disk_full = e.rc() == ENOSPC || e.rc() == EDQUOT || (e.rc() == EIO && env_.disk_low());
        if (e.rc() != MDB_MAP_FULL && !disk_full) throw;
        full = e;
      }
    }  // the transaction is over (aborted unless committed) before the map may grow
    if (full) {
      if (full->rc() == MDB_MAP_FULL && env_.grow_map()) continue;
      if (!bumped && env_.bump()) {
        bumped = true;
        continue;
      }
      if (batch > 16) {
        batch /= 8;  // a smaller transaction needs fewer new pages
        continue;
      }
      log->warn("recovery: storage is full ({}); {} messages stay leased until their visibility timeout",
                full->what(), leased.size() - at);
      break;
    }
    if (at >= leased.size()) break;
    if (auto now = std::chrono::steady_clock::now(); now - last_log >= std::chrono::seconds(2)) {
      last_log = now;
      log->info("recovery: {} of {} leased messages visible again ({:.0f} s)", at, leased.size(),
                std::chrono::duration<double>(now - started).count());
    }
  }
  log->info("queue store open: {} queues, next message seq {}, {} leases released", names_.size(), next_seq_,
            released);
}

void QueueStore::set_ready_listener(std::function<void(const std::string&)> listener) {
  ready_listener_ = std::move(listener);
}

void QueueStore::put_queue(std::string name, QueueConfigPatch patch, Callback<QueueInfo> done) {
  submit<QueueInfo>(std::move(done), [name = std::move(name), patch = std::move(patch)](Work& w) {
    return w.put_queue(name, patch);
  });
}

void QueueStore::delete_queue(std::string name, Callback<bool> done) {
  submit<bool>(std::move(done), [name = std::move(name)](Work& w) { return w.delete_queue(name); });
}

void QueueStore::enqueue(std::string name, std::vector<NewMessage> messages,
                         Callback<std::vector<std::string>> done) {
  submit<std::vector<std::string>>(std::move(done), [name = std::move(name), messages = std::move(messages)](
                                                        Work& w) { return w.enqueue(name, messages); });
}

Result<std::vector<std::string>> QueueStore::enqueue_in(const std::string& name,
                                                        const std::vector<NewMessage>& messages) {
  return work_->enqueue(name, messages);
}

std::optional<Error> QueueStore::check_enqueue_in(const std::string& name,
                                                  const std::vector<NewMessage>& messages) {
  return work_->check_enqueue(name, messages);
}

void QueueStore::pull(std::string name, PullOptions options, Callback<std::vector<LeasedMessage>> done) {
  // A lease lost to a power cut only means an earlier redelivery: answered before the flush.
  submit<std::vector<LeasedMessage>>(
      std::move(done), [name = std::move(name), options](Work& w) { return w.pull(name, options); }, false);
}

void QueueStore::ack(std::string name, std::vector<std::string> acks, std::vector<RetryRequest> retries,
                     Callback<AckResult> done) {
  submit<AckResult>(
      std::move(done),
      [name = std::move(name), acks = std::move(acks), retries = std::move(retries)](Work& w) {
        return w.ack(name, acks, retries);
      },
      false);  // an ack lost to a power cut: the message comes back (at-least-once)
}

void QueueStore::extend(std::string name, std::vector<std::string> leases,
                        std::uint64_t visibility_timeout_ms, Callback<ExtendResult> done) {
  submit<ExtendResult>(
      std::move(done),
      [name = std::move(name), leases = std::move(leases), visibility_timeout_ms](Work& w) {
        return w.extend(name, leases, visibility_timeout_ms);
      },
      false);
}

void QueueStore::redrive(std::string from, std::string to, std::uint64_t max, Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done), [from = std::move(from), to = std::move(to), max](Work& w) {
    return w.redrive(from, to, max);
  });
}

void QueueStore::purge(std::string name, Callback<std::uint64_t> done) {
  submit<std::uint64_t>(std::move(done), [name = std::move(name)](Work& w) { return w.purge(name); });
}

void QueueStore::peek(std::string name, std::uint32_t max, Callback<std::vector<LeasedMessage>> done) {
  submit<std::vector<LeasedMessage>>(std::move(done),
                                     [name = std::move(name), max](Work& w) { return w.peek(name, max); });
}

void QueueStore::begin(WriteContext& ctx) { work_ = std::make_unique<Work>(*this, ctx); }
void QueueStore::prepare(WriteContext&) { work_->flush(); }

void QueueStore::committed() {
  work_->publish();
  auto ready = work_->ready_queues();
  work_.reset();
  if (ready_listener_) {
    for (const auto& name : ready) ready_listener_(name);
  }
}

void QueueStore::aborted() { work_.reset(); }

bool QueueStore::maintain(WriteContext& ctx) {
  Work& w = *work_;
  std::uint32_t budget = options_.sweep_limit;
  std::uint32_t done = 0;
  // Each pass walks one index jumping from queue to queue, so its cost is one seek per queue.
  auto walk = [&](MDB_dbi dbi, auto&& handle) {
    std::uint32_t qid = 0;
    while (budget > 0) {
      std::optional<std::pair<std::uint32_t, std::int64_t>> head;
      {
        Cursor c(ctx.txn, dbi);
        auto e = c.seek(keys::qid(qid));
        if (!e) return;
        head.emplace(keys::qid_of(e->key), 0);
      }
      qid = head->first;
      std::uint32_t n = handle(qid);
      done += n;
      budget = n >= budget ? 0 : budget - n;
      if (qid == std::numeric_limits<std::uint32_t>::max()) return;
      ++qid;
    }
  };
  // A queue closed by the gate is left as it is: its shard is moving, and the copy is the truth.
  walk(tables_->due, [&](std::uint32_t qid) -> std::uint32_t {
    Queue* q = w.find_by_qid(qid);
    return q == nullptr || w.closed(q->name) ? 0 : w.promote_due(*q, budget);
  });
  walk(tables_->state, [&](std::uint32_t qid) -> std::uint32_t {
    Queue* q = w.find_by_qid(qid);
    return q == nullptr || w.closed(q->name) ? 0 : w.sweep_expired(*q, budget);
  });
  walk(tables_->dedupx, [&](std::uint32_t qid) -> std::uint32_t {
    Queue* q = w.find_by_qid(qid);
    return q != nullptr && w.closed(q->name) ? 0 : w.sweep_dedup(qid, budget);
  });
  return done > 0;
}

// ---- reads ------------------------------------------------------------------------------------

namespace {
QueueInfo info_from(std::string name, const QueueRecord& rec) {
  return QueueInfo{std::move(name), rec.config, rec.counters, rec.created_at};
}
}  // namespace

Result<QueueInfo> QueueStore::get_queue(std::string_view name) const {
  Txn txn = env_.begin_read();
  auto raw = txn.get(tables_->queues, name);
  if (!raw) {
    return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + std::string(name)));
  }
  auto rec = QueueRecord::decode(*raw);
  if (!rec) return std::unexpected(err(ErrorCode::INTERNAL, "corrupt queue record"));
  QueueInfo info = info_from(std::string(name), *rec);
  std::string prefix = keys::qid(rec->qid);
  Cursor c(txn, tables_->state);
  if (auto e = c.seek(prefix); e && starts_with(e->key, prefix)) {
    if (auto b = txn.get(tables_->body, keys::seq(keys::tail_seq(e->key)))) {
      if (auto body = BodyRecord::decode(*b)) {
        info.stats.oldest_age_ms = std::max<std::int64_t>(0, clock_() - body->enqueued_at);
      }
    }
  }
  return info;
}

std::vector<QueueInfo> QueueStore::list_queues() const {
  std::vector<std::string> names;
  {
    Txn txn = env_.begin_read();
    Cursor c(txn, tables_->queues);
    for (auto e = c.first(); e; e = c.next()) names.emplace_back(e->key);
  }
  std::vector<QueueInfo> out;
  for (const auto& n : names) {
    if (auto info = get_queue(n)) out.push_back(std::move(*info));
  }
  return out;
}

// ---- validation -------------------------------------------------------------------------------

std::optional<Error> QueueStore::validate_name(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return err(ErrorCode::INVALID_NAME, "queue names are 1 to 128 characters");
  }
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.';
    if (!ok) {
      return err(ErrorCode::INVALID_NAME,
                 "queue name '" + std::string(name) + "' may hold only A-Z a-z 0-9 - _ .");
    }
  }
  if (name.front() == '.' || name.back() == '.') {
    return err(ErrorCode::INVALID_NAME, "queue names do not start or end with '.'");
  }
  return std::nullopt;
}

std::optional<Error> QueueStore::validate_config(std::string_view name, const QueueConfig& c) {
  auto bad = [](std::string m) { return err(ErrorCode::INVALID_ARGUMENT, std::move(m)); };
  if (c.visibility_timeout_ms == 0 || c.visibility_timeout_ms > kMaxDelayMs) {
    return bad("visibility_timeout_ms must be 1..43200000");
  }
  if (c.max_retries > 1000) return bad("max_retries must be 0..1000");
  if (c.retry_delay_ms > kMaxDelayMs) return bad("retry_delay_ms must be 0..43200000");
  if (c.dedup_window_ms > 7ull * 24 * 3600 * 1000) return bad("dedup_window_ms must be <= 7 days");
  if (const auto& p = c.push; !p.url.empty()) {
    if (!p.url.starts_with("http://") || p.url.size() > 2048)
      return bad("push.url must be an http:// URL of at most 2048 characters");
    if (p.concurrency < 1 || p.concurrency > 256) return bad("push.concurrency must be 1..256");
    if (p.timeout_ms < 100 || p.timeout_ms > 3'600'000) return bad("push.timeout_ms must be 100..3600000");
    if (p.batch_size < 1 || p.batch_size > 100) return bad("push.batch_size must be 1..100");
  }
  if (!c.dead_letter_queue.empty()) {
    if (auto e = validate_name(c.dead_letter_queue)) return e;
    if (c.dead_letter_queue == name) {
      return err(ErrorCode::CONFLICT, "a queue cannot be its own dead_letter_queue");
    }
  }
  return std::nullopt;
}

}  // namespace roost::durable
