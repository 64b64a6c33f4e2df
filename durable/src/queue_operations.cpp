#include "queue_work.h"

namespace roost::durable {

std::optional<std::pair<std::uint64_t, MsgState>> QueueStore::Work::check_lease(Queue& q,
                                                                                std::string_view lease,
                                                                                bool late) {
  auto parsed = parse_lease_id(lease);
  if (!parsed || parsed->second == 0) return std::nullopt;
  auto st = get_state(q, parsed->first);
  if (!st || st->lease_nonce != parsed->second) return std::nullopt;  // gone, or delivered again
  if (st->kind == MsgStateKind::kLeased && st->visible_at > now_) return std::pair{parsed->first, *st};
  // The lease ran out (its message may be waiting again: it keeps the nonce until a pull gives it
  // a new one). An ack or retry of it still counts; an extend does not.
  if (!late) return std::nullopt;
  return std::pair{parsed->first, *st};
}

std::uint64_t QueueStore::Work::next_nonce() {
  std::uint64_t n;
  do n = s_.nonce_rng_();
  while (n == 0);
  return n;
}

Result<QueueInfo> QueueStore::Work::put_queue(const std::string& name, const QueueConfigPatch& patch) {
  if (auto e = validate_name(name)) return std::unexpected(*e);
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  QueueConfig config = q != nullptr ? q->config() : QueueConfig{};
  patch.apply_to(config);
  if (auto e = validate_config(name, config)) return std::unexpected(*e);
  if (q == nullptr) {
    if (storage_full()) return std::unexpected(err(ErrorCode::STORAGE_FULL, "storage is full"));
    q = &create(name, config);
  } else {
    q->config() = config;
    q->dirty = true;
  }
  return QueueInfo{q->name, q->config(), q->counters(), q->rec.created_at};
}

Result<bool> QueueStore::Work::delete_queue(const std::string& name) {
  if (auto e = closed(name)) return std::unexpected(*e);
  return remove_queue(name);
}

std::uint64_t QueueStore::Work::delete_messages(const Queue& q) {
  std::string prefix = keys::qid(q.rec.qid);
  std::uint64_t deleted = 0;
  for (;;) {
    std::vector<std::string> batch;
    {
      Cursor c(txn_, t_.state);
      for (auto e = c.seek(prefix); e && batch.size() < 4096; e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        batch.emplace_back(e->key);
      }
    }
    if (batch.empty()) break;
    for (const auto& k : batch) {
      txn_.del(t_.body, keys::seq(keys::tail_seq(k)));
      txn_.del(t_.state, k);
    }
    deleted += batch.size();
  }
  for (MDB_dbi dbi : {t_.ready, t_.due, t_.keyq}) del_prefix(dbi, prefix);
  return deleted;
}

Result<bool> QueueStore::Work::remove_queue(const std::string& name) {
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  std::string prefix = keys::qid(q->rec.qid);
  delete_messages(*q);
  for (MDB_dbi dbi : {t_.dedup, t_.dedupx}) del_prefix(dbi, prefix);
  q->deleted = true;
  deleted_.push_back(q->rec.qid);
  roost::module_logger("durable")->info("queue {} deleted ({} messages)", name, q->counters().messages);
  return true;
}

std::optional<Error> QueueStore::Work::check_enqueue(const std::string& name,
                                                     const std::vector<NewMessage>& messages) {
  const auto& opt = s_.options_;
  if (auto e = closed(name)) return e;
  if (messages.empty()) return err(ErrorCode::INVALID_ARGUMENT, "no messages to enqueue");
  if (messages.size() > opt.max_batch) {
    return err(ErrorCode::INVALID_ARGUMENT, "at most " + std::to_string(opt.max_batch) + " messages a batch");
  }
  std::uint64_t batch_bytes = 0;
  for (const auto& m : messages) {
    if (m.body.size() > opt.max_message_bytes) {
      return err(ErrorCode::MESSAGE_TOO_LARGE, "message body of " + std::to_string(m.body.size()) +
                                                   " bytes exceeds max_message_bytes " +
                                                   std::to_string(opt.max_message_bytes));
    }
    if (m.delay_ms > kMaxDelayMs) return err(ErrorCode::INVALID_ARGUMENT, "delay_ms exceeds 12 hours");
    if (m.key.size() > kMaxKeyBytes || m.id.size() > kMaxIdBytes) {
      return err(ErrorCode::INVALID_ARGUMENT, "key or id longer than 1024 bytes");
    }
    batch_bytes += m.body.size();
  }
  if (auto e = validate_name(name)) return e;
  if (storage_full()) return err(ErrorCode::STORAGE_FULL, "storage is full");
  Queue* q = find(name);
  if (q == nullptr) {
    // A new queue has the default configuration: no limits to check.
    if (!opt.auto_create_queues) return err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name);
    return std::nullopt;
  }
  const auto& cfg = q->config();
  const auto& c = q->counters();
  if (cfg.max_messages != 0 && c.messages + messages.size() > cfg.max_messages) {
    return err(ErrorCode::QUEUE_FULL,
               "queue " + name + " holds its max_messages " + std::to_string(cfg.max_messages));
  }
  if (cfg.max_bytes != 0 && c.bytes + batch_bytes > cfg.max_bytes) {
    return err(ErrorCode::QUEUE_FULL,
               "queue " + name + " holds its max_bytes " + std::to_string(cfg.max_bytes));
  }
  return std::nullopt;
}

Result<std::vector<std::string>> QueueStore::Work::enqueue(const std::string& name,
                                                           const std::vector<NewMessage>& messages) {
  if (auto e = check_enqueue(name, messages)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) q = &create(name, QueueConfig{});
  const auto& cfg = q->config();
  auto& c = q->counters();
  std::vector<std::string> ids;
  ids.reserve(messages.size());
  for (const auto& m : messages) {
    std::string dkey;
    if (!m.id.empty()) {
      dkey = keys::dedup(q->rec.qid, m.id);
      auto hit = txn_.get(t_.dedup, dkey);
      if (hit && hit->size() == 16 && static_cast<std::int64_t>(codec::get_be(*hit, 8, 8)) > now_) {
        ids.push_back(message_id(codec::get_be(*hit, 0, 8)));
        c.deduplicated += 1;
        q->dirty = true;
        continue;
      }
    }
    std::uint64_t seq = next_seq_++;
    BodyRecord body{m.content_type, now_, m.key, m.id, m.body};
    txn_.put(t_.body, keys::seq(seq), body.encode(), MDB_APPEND);
    MsgState st;
    st.has_key = !m.key.empty();
    st.body_size = static_cast<std::uint32_t>(m.body.size());
    st.expires_at = expiry(*q);
    st.visible_at = now_ + static_cast<std::int64_t>(m.delay_ms);
    place(*q, seq, st, m.key);
    c.enqueued += 1;
    if (!m.id.empty() && cfg.dedup_window_ms > 0) {
      auto until = now_ + static_cast<std::int64_t>(cfg.dedup_window_ms);
      std::string v;
      codec::put_be(v, seq, 8);
      codec::put_be(v, static_cast<std::uint64_t>(until), 8);
      txn_.put(t_.dedup, dkey, v);
      txn_.put(t_.dedupx, keys::dedupx(q->rec.qid, until, m.id), {});
    }
    ids.push_back(message_id(seq));
  }
  return ids;
}

Result<std::vector<LeasedMessage>> QueueStore::Work::pull(const std::string& name, const PullOptions& opts) {
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  if (opts.batch_size == 0 || opts.batch_size > s_.options_.max_batch) {
    return std::unexpected(
        err(ErrorCode::INVALID_ARGUMENT, "batch_size must be 1.." + std::to_string(s_.options_.max_batch)));
  }
  if (!q->config().push.url.empty() && !opts.for_push) {
    return std::unexpected(
        err(ErrorCode::CONFLICT, "queue " + name + " is delivered by push to " + q->config().push.url +
                                     ": pulls are refused (remove its push target to pull)"));
  }
  std::uint64_t vis = opts.visibility_timeout_ms.value_or(q->config().visibility_timeout_ms);
  if (vis == 0 || vis > kMaxDelayMs) {
    return std::unexpected(err(ErrorCode::INVALID_ARGUMENT, "visibility_timeout_ms must be 1..43200000"));
  }
  promote_due(*q, s_.options_.sweep_limit);
  std::vector<LeasedMessage> out;
  std::string prefix = keys::qid(q->rec.qid);
  while (out.size() < opts.batch_size) {
    std::vector<std::uint64_t> seqs;
    {
      Cursor c(txn_, t_.ready);
      for (auto e = c.seek(prefix); e && seqs.size() < opts.batch_size - out.size(); e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        seqs.push_back(keys::tail_seq(e->key));
      }
    }
    if (seqs.empty()) break;
    for (std::uint64_t seq : seqs) {
      auto st = get_state(*q, seq);
      if (!st || st->kind != MsgStateKind::kReady) {
        txn_.del(t_.ready, keys::qseq(q->rec.qid, seq));  // stale index entry
        continue;
      }
      if (st->expires_at != 0 && st->expires_at <= now_) {
        destroy(*q, seq, *st);
        q->counters().expired += 1;
        continue;
      }
      auto raw = txn_.get(t_.body, keys::seq(seq));
      auto body = raw ? BodyRecord::decode(*raw) : std::nullopt;
      if (!body) throw MdbError(MDB_CORRUPTED, "message body " + message_id(seq));
      detach(*q, seq, *st);
      st->kind = MsgStateKind::kLeased;
      st->attempts += 1;
      st->visible_at = now_ + static_cast<std::int64_t>(vis);
      st->lease_nonce = next_nonce();
      txn_.put(t_.due, keys::due(q->rec.qid, st->visible_at, seq), {});
      count(*q, MsgStateKind::kLeased, +1);
      put_state(*q, seq, *st);
      out.push_back(LeasedMessage{message_id(seq), lease_id(seq, st->lease_nonce), std::string(body->body),
                                  body->content_type, st->attempts, body->enqueued_at,
                                  std::string(body->key)});
    }
  }
  return out;
}

Result<AckResult> QueueStore::Work::ack(const std::string& name, const std::vector<std::string>& acks,
                                        const std::vector<RetryRequest>& retries) {
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  AckResult r;
  for (const auto& lease : acks) {
    auto held = check_lease(*q, lease, true);
    if (!held) {
      r.unknown.push_back(lease);
      continue;
    }
    destroy(*q, held->first, held->second);
    q->counters().acked += 1;
    r.acked += 1;
  }
  for (const auto& retry : retries) {
    std::uint64_t delay = retry.delay_ms.value_or(q->config().retry_delay_ms);
    if (delay > kMaxDelayMs) {
      return std::unexpected(err(ErrorCode::INVALID_ARGUMENT, "delay_ms exceeds 12 hours"));
    }
  }
  for (const auto& retry : retries) {
    auto held = check_lease(*q, retry.lease_id, true);
    if (!held) {
      r.unknown.push_back(retry.lease_id);
      continue;
    }
    auto [seq, st] = *held;
    r.retried += 1;
    q->counters().retried += 1;
    if (st.attempts > q->config().max_retries) {
      dead_letter(*q, seq, st);
      continue;
    }
    detach(*q, seq, st);
    st.lease_nonce = 0;
    st.visible_at = now_ + static_cast<std::int64_t>(retry.delay_ms.value_or(q->config().retry_delay_ms));
    activate(*q, seq, st);
  }
  return r;
}

Result<ExtendResult> QueueStore::Work::extend(const std::string& name, const std::vector<std::string>& leases,
                                              std::uint64_t vis_ms) {
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  std::uint64_t vis = vis_ms != 0 ? vis_ms : q->config().visibility_timeout_ms;
  if (vis > kMaxDelayMs) {
    return std::unexpected(err(ErrorCode::INVALID_ARGUMENT, "visibility_timeout_ms must be 1..43200000"));
  }
  ExtendResult r;
  for (const auto& lease : leases) {
    auto held = check_lease(*q, lease);
    if (!held) {
      r.unknown.push_back(lease);
      continue;
    }
    auto [seq, st] = *held;
    txn_.del(t_.due, keys::due(q->rec.qid, st.visible_at, seq));
    st.visible_at = now_ + static_cast<std::int64_t>(vis);
    txn_.put(t_.due, keys::due(q->rec.qid, st.visible_at, seq), {});
    put_state(*q, seq, st);
    r.extended += 1;
  }
  return r;
}

Result<std::uint64_t> QueueStore::Work::redrive(const std::string& from, const std::string& to,
                                                std::uint64_t max) {
  if (auto e = validate_name(to)) return std::unexpected(*e);
  if (auto e = closed(from)) return std::unexpected(*e);
  if (auto e = closed(to)) return std::unexpected(*e);
  if (from == to) {
    return std::unexpected(err(ErrorCode::CONFLICT, "cannot redrive a queue into itself"));
  }
  Queue* src = find(from);
  if (src == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + from));
  Queue* dst = find(to);
  if (dst == nullptr) {
    if (!s_.options_.auto_create_queues) {
      return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + to));
    }
    dst = &create(to, QueueConfig{});
  }
  std::uint64_t moved = 0;
  std::string prefix = keys::qid(src->rec.qid);
  std::uint64_t after = 0;  // resume point: seqs below were looked at
  for (;;) {
    std::vector<std::pair<std::uint64_t, MsgState>> batch;
    {
      Cursor c(txn_, t_.state);
      for (auto e = c.seek(keys::qseq(src->rec.qid, after)); e && batch.size() < 4096; e = c.next()) {
        if (!starts_with(e->key, prefix)) break;
        if (max != 0 && moved + batch.size() >= max) break;
        auto st = MsgState::decode(e->value);
        after = keys::tail_seq(e->key) + 1;
        if (st && st->kind != MsgStateKind::kLeased) batch.emplace_back(after - 1, *st);
      }
    }
    if (batch.empty()) break;
    for (auto& [seq, st] : batch) {
      auto cur = get_state(*src, seq);  // a move may have activated a blocked one
      if (!cur || cur->kind == MsgStateKind::kLeased) continue;
      move(*src, seq, *cur, *dst);
      src->counters().redriven += 1;
      ++moved;
    }
  }
  return moved;
}

Result<std::uint64_t> QueueStore::Work::purge(const std::string& name) {
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  // Dedup entries stay: a producer's retry of a purged message is still a duplicate.
  std::uint64_t purged = delete_messages(*q);
  auto& c = q->counters();
  c.ready = c.delayed = c.in_flight = c.blocked = c.messages = c.bytes = 0;
  c.purged += purged;
  q->dirty = true;
  roost::module_logger("durable")->info("queue {} purged ({} messages)", name, purged);
  return purged;
}

Result<std::vector<LeasedMessage>> QueueStore::Work::peek(const std::string& name, std::uint32_t max) {
  if (auto e = closed(name)) return std::unexpected(*e);
  Queue* q = find(name);
  if (q == nullptr) return std::unexpected(err(ErrorCode::QUEUE_NOT_FOUND, "no queue " + name));
  if (max == 0 || max > s_.options_.max_batch) {
    return std::unexpected(
        err(ErrorCode::INVALID_ARGUMENT, "batch_size must be 1.." + std::to_string(s_.options_.max_batch)));
  }
  promote_due(*q, s_.options_.sweep_limit);
  std::vector<LeasedMessage> out;
  std::string prefix = keys::qid(q->rec.qid);
  Cursor c(txn_, t_.ready);
  for (auto e = c.seek(prefix); e && out.size() < max; e = c.next()) {
    if (!starts_with(e->key, prefix)) break;
    std::uint64_t seq = keys::tail_seq(e->key);
    auto st = get_state(*q, seq);
    if (!st || st->kind != MsgStateKind::kReady) continue;
    if (st->expires_at != 0 && st->expires_at <= now_) continue;  // a pull would remove it
    auto raw = txn_.get(t_.body, keys::seq(seq));
    auto body = raw ? BodyRecord::decode(*raw) : std::nullopt;
    if (!body) throw MdbError(MDB_CORRUPTED, "message body " + message_id(seq));
    out.push_back(LeasedMessage{message_id(seq), "", std::string(body->body), body->content_type,
                                st->attempts, body->enqueued_at, std::string(body->key)});
  }
  return out;
}

}  // namespace roost::durable
