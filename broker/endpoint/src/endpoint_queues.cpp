#include "endpoint_impl.h"

namespace roost::broker {

void Endpoint::Impl::release_leases(const std::unordered_map<std::string, Lease>& leases) {
  std::unordered_map<std::string, std::vector<RetryRequest>> by_queue;
  for (const auto& [lease, rec] : leases) by_queue[rec.queue].push_back(RetryRequest{lease, 0});
  for (auto& [queue, retries] : by_queue) {
    log->debug("releasing {} leases on {}", retries.size(), queue);
    router.ack(queue, {}, std::move(retries), [](Result<AckResult>) {});
  }
}

void Endpoint::Impl::release_messages(const std::string& queue, const std::vector<LeasedMessage>& messages) {
  std::vector<RetryRequest> retries;
  for (const auto& m : messages) retries.push_back(RetryRequest{m.lease_id, 0});
  if (!retries.empty()) router.ack(queue, {}, std::move(retries), [](Result<AckResult>) {});
}

std::uint64_t Endpoint::Impl::vis_or_default(const std::string& queue, std::uint64_t vis) {
  if (vis != 0) return vis;
  auto info = router.get_queue(queue);
  return info ? info->config.visibility_timeout_ms : 30'000;
}

void Endpoint::Impl::send_messages(Session& s, std::uint64_t id, const std::string& queue,
                                   const std::vector<LeasedMessage>& msgs, bool event) {
  capnp::MallocMessageBuilder b(256 + msgs.size() * 16);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  auto qm = event ? env.initDelivery() : env.initMessages();
  qm.setQueue(text(queue));
  auto list = qm.initMessages(static_cast<unsigned>(msgs.size()));
  std::vector<zmq::message_t> frames;
  frames.reserve(msgs.size() + 1);
  frames.emplace_back();
  for (unsigned i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    auto l = list[i];
    l.setId(text(m.id));
    l.setLeaseId(text(m.lease_id));
    l.setContentType(wire::to_wire(m.content_type));
    l.setAttempts(m.attempts);
    l.setTimestampMs(m.timestamp_ms);
    if (!m.key.empty()) l.setKey(text(m.key));
    frames.push_back(payload_frame(m.body));
  }
  frames[0] = to_frame(b);
  send(s, frames, false);
}

bool Endpoint::Impl::allowed_queue(Session& s, std::uint64_t id, std::string_view queue) {
  if (s.who.may_use_queue(queue)) return true;
  reply_error(s.identity, id, ErrorCode::FORBIDDEN, "the token does not grant queue " + std::string(queue));
  return false;
}

std::shared_ptr<Endpoint::Impl::Trace> Endpoint::Impl::start_trace(proto::Envelope::Reader env) {
  if (!env.hasTrace() || env.getTrace().size() > hop_trace::kMaxClientStamps) return nullptr;
  auto t = std::make_shared<Trace>();
  t->node.read = hop_trace::now_ns();
  for (auto stamp : env.getTrace()) t->client.push_back(stamp);
  return t;
}

void Endpoint::Impl::finish_trace(Trace& t, proto::Envelope::Builder out) {
  t.node.answered = hop_trace::now_ns();
  const auto& n = t.node;
  const std::int64_t node[] = {n.read,    n.admitted,  n.began,     n.committing,
                               n.logging, n.committed, n.completed, n.answered};
  static_assert(std::size(node) == hop_trace::kNodeStamps);
  // Forwarded to the shard's owner: the link's two instants around the owner's eight.
  const auto* f = t.forward.get();
  const bool forwarded = f != nullptr && f->sent != 0 && f->owner.size() == hop_trace::kNodeStamps;
  auto list = out.initTrace(
      static_cast<unsigned>(t.client.size() + std::size(node) + (forwarded ? hop_trace::kForwardStamps : 0)));
  unsigned i = 0;
  for (auto stamp : t.client) list.set(i++, stamp);
  for (auto stamp : node) list.set(i++, stamp);
  if (!forwarded) return;
  list.set(i++, f->sent);
  for (auto stamp : f->owner) list.set(i++, stamp);
  list.set(i++, f->received);
}

void Endpoint::Impl::on_enqueue(Session& s, std::uint64_t id, proto::Enqueue::Reader req,
                                std::span<zmq::message_t> payloads, std::shared_ptr<Trace> trace) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  auto metas = req.getMessages();
  if (metas.size() != payloads.size()) {
    return reply_error(s.identity, id, ErrorCode::MALFORMED,
                       std::to_string(metas.size()) + " messages described but " +
                           std::to_string(payloads.size()) + " payload frames sent");
  }
  if (metas.size() == 0 || metas.size() > options.max_batch) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT,
                       "an enqueue carries 1.." + std::to_string(options.max_batch) + " messages");
  }
  std::vector<NewMessage> msgs;
  msgs.reserve(metas.size());
  for (unsigned i = 0; i < metas.size(); ++i) {
    auto m = metas[i];
    if (payloads[i].size() > options.max_message_bytes) {
      return reply_error(s.identity, id, ErrorCode::MESSAGE_TOO_LARGE,
                         "message " + std::to_string(i) + " has " + std::to_string(payloads[i].size()) +
                             " bytes; the limit is " + std::to_string(options.max_message_bytes));
    }
    NewMessage nm;
    nm.body.assign(frame_view(payloads[i]));
    nm.content_type = wire::from_wire(m.getContentType());
    if (nm.content_type == ContentType::kJson && !valid_json(nm.body)) {
      return reply_error(s.identity, id, ErrorCode::MALFORMED,
                         "message " + std::to_string(i) + " is not valid JSON (content type json)");
    }
    if (nm.content_type == ContentType::kText && !valid_utf8(nm.body)) {
      return reply_error(s.identity, id, ErrorCode::MALFORMED,
                         "message " + std::to_string(i) + " is not valid UTF-8 (content type text)");
    }
    nm.delay_ms = m.getDelayMs();
    nm.id = std::string(view(m.getId()));
    nm.key = std::string(view(m.getKey()));
    msgs.push_back(std::move(nm));
  }
  auto done = answer<std::vector<std::string>>(s, id, [trace](proto::Envelope::Builder out, const auto& ids) {
    wire::set_texts(out.initEnqueued().initIds(static_cast<unsigned>(ids.size())), ids);
    if (trace) finish_trace(*trace, out);
  });
  if (trace) {
    done = [trace, done = std::move(done)](Result<std::vector<std::string>> r) mutable {
      const auto& group = hop_trace::completing_group();
      trace->node.began = group.began;
      trace->node.committing = group.committing;
      trace->node.logging = group.logging;
      trace->node.committed = group.committed;
      trace->node.completed = hop_trace::now_ns();
      done(std::move(r));
    };
  }
  {
    if (trace) trace->forward = std::make_shared<hop_trace::Forward>();
    hop_trace::ForwardingScope forwarding(trace ? trace->forward : nullptr);
    router.enqueue(std::move(queue), std::move(msgs), std::move(done));
  }
  if (trace && trace->node.admitted == 0) trace->node.admitted = hop_trace::now_ns();
}

void Endpoint::Impl::on_pull(Session& s, std::uint64_t id, proto::Pull::Reader req) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  PullOptions opts;
  opts.batch_size = req.getBatchSize() == 0 ? 10 : req.getBatchSize();
  if (req.getVisibilityTimeoutMs() != 0) opts.visibility_timeout_ms = req.getVisibilityTimeoutMs();
  std::uint64_t wait = std::min(req.getWaitMs(), kMaxWaitMs);
  router.pull(
      queue, opts, wait,
      [this, identity = s.identity, serial = s.serial, id,
       queue](Result<std::vector<LeasedMessage>> r) mutable {
        later(identity, serial, [this, identity, id, queue, r = std::move(r)](Session* cur) {
          if (cur == nullptr) {
            if (r) release_messages(queue, *r);
            return;
          }
          if (!r) return reply_error(identity, id, r.error());
          // A pulled lease is the client's until its visibility timeout, as over HTTP
          // (another process may ack it); only push deliveries are tied to the session.
          send_messages(*cur, id, queue, *r, false);
        });
      },
      s.gone);
}

void Endpoint::Impl::on_ack(Session& s, std::uint64_t id, proto::Ack::Reader req) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  std::vector<std::string> acks;
  for (auto a : req.getAcks()) acks.emplace_back(view(a));
  std::vector<RetryRequest> retries;
  for (auto r : req.getRetries()) {
    RetryRequest rr{std::string(view(r.getLeaseId())), std::nullopt};
    if (r.hasDelayMs()) rr.delay_ms = r.getDelayMs().getValue();
    retries.push_back(std::move(rr));
  }
  settle(s, acks, [](const std::string& l) -> std::string_view { return l; });
  settle(s, retries, [](const RetryRequest& r) -> std::string_view { return r.lease_id; });
  router.ack(std::move(queue), std::move(acks), std::move(retries),
             answer<AckResult>(s, id, [](proto::Envelope::Builder out, const AckResult& r) {
               auto a = out.initAcked();
               a.setAcked(r.acked);
               a.setRetried(r.retried);
               wire::set_texts(a.initUnknown(static_cast<unsigned>(r.unknown.size())), r.unknown);
             }));
}

void Endpoint::Impl::on_extend(Session& s, std::uint64_t id, proto::Extend::Reader req) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  std::vector<std::string> leases;
  for (auto l : req.getLeaseIds()) leases.emplace_back(view(l));
  std::uint64_t vis = req.getVisibilityTimeoutMs();
  router.extend(
      queue, leases, vis,
      [this, identity = s.identity, serial = s.serial, id, queue, vis,
       leases](Result<ExtendResult> r) mutable {
        later(identity, serial, [this, identity, id, queue, vis, leases, r = std::move(r)](Session* cur) {
          if (cur == nullptr) return;
          if (!r) return reply_error(identity, id, r.error());
          std::int64_t expires = steady_ms() + static_cast<std::int64_t>(vis_or_default(queue, vis));
          for (const auto& l : leases) {
            if (auto it = cur->leases.find(l); it != cur->leases.end()) it->second.expires_at = expires;
          }
          if (id == 0) return;
          capnp::MallocMessageBuilder b(64);
          auto out = b.initRoot<proto::Envelope>();
          out.setId(id);
          auto e = out.initExtended();
          e.setExtended(r->extended);
          wire::set_texts(e.initUnknown(static_cast<unsigned>(r->unknown.size())), r->unknown);
          reply(identity, b);
        });
      });
}

void Endpoint::Impl::on_put_queue(Session& s, std::uint64_t id, proto::PutQueue::Reader req) {
  std::string name(view(req.getName()));
  if (!allowed_queue(s, id, name)) return;
  auto patch = wire::from_wire(req.getConfig());
  if (auto refused = s.who.may_configure_queue(patch)) return reply_error(s.identity, id, *refused);
  router.put_queue(name, patch,
                   answer<QueueInfo>(s, id, [](proto::Envelope::Builder out, const QueueInfo& q) {
                     wire::to_wire(out.initQueue(), q);
                   }));
}

void Endpoint::Impl::on_delete_queue(Session& s, std::uint64_t id, proto::QueueName::Reader req) {
  std::string name(view(req.getName()));
  if (!allowed_queue(s, id, name)) return;
  router.delete_queue(name, answer<bool>(s, id, [](proto::Envelope::Builder out, bool) { out.setOk(); }));
}

void Endpoint::Impl::on_redrive(Session& s, std::uint64_t id, proto::Redrive::Reader req) {
  std::string from(view(req.getFrom())), to(view(req.getTo()));
  if (!allowed_queue(s, id, from) || !allowed_queue(s, id, to)) return;
  router.redrive(
      from, to, req.getMax(),
      answer<std::uint64_t>(s, id, [](proto::Envelope::Builder out, std::uint64_t n) { out.setCount(n); }));
}

void Endpoint::Impl::on_purge(Session& s, std::uint64_t id, proto::QueueName::Reader req) {
  std::string name(view(req.getName()));
  if (!allowed_queue(s, id, name)) return;
  router.purge_queue(name, answer<std::uint64_t>(s, id, [](proto::Envelope::Builder out, std::uint64_t n) {
                       out.setCount(n);
                     }));
}

void Endpoint::Impl::on_peek(Session& s, std::uint64_t id, proto::Pull::Reader req) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  router.peek(
      queue, req.getBatchSize() == 0 ? 10 : req.getBatchSize(),
      [this, identity = s.identity, serial = s.serial, id, queue](Result<std::vector<LeasedMessage>> r) {
        later(identity, serial, [this, identity, id, queue, r = std::move(r)](Session* cur) {
          if (cur == nullptr) return;
          if (!r) return reply_error(identity, id, r.error());
          send_messages(*cur, id, queue, *r, false);
        });
      });
}

}  // namespace roost::broker
