#include "endpoint_impl.h"

namespace roost::broker {

void Endpoint::Impl::pump(Session& s, std::uint64_t stream) {
  auto it = s.consumers.find(stream);
  if (it == s.consumers.end()) return;
  Consumer& c = it->second;
  if (c.pulling || c.in_flight >= c.window) return;
  c.pulling = true;
  PullOptions opts;
  opts.batch_size = std::min<std::uint32_t>(c.window - c.in_flight, options.max_batch);
  if (c.visibility_ms != 0) opts.visibility_timeout_ms = c.visibility_ms;
  router.pull(
      c.queue, opts, kConsumerWaitMs,
      [this, identity = s.identity, serial = s.serial, stream, queue = c.queue,
       vis = c.visibility_ms](Result<std::vector<LeasedMessage>> r) mutable {
        later(identity, serial, [this, stream, queue, vis, r = std::move(r)](Session* cur) {
          on_pushed(cur, stream, queue, vis, r);
        });
      },
      s.gone);
}

void Endpoint::Impl::on_pushed(Session* s, std::uint64_t stream, const std::string& queue, std::uint64_t vis,
                               const Result<std::vector<LeasedMessage>>& r) {
  if (s == nullptr || !s->consumers.contains(stream)) {
    if (r) release_messages(queue, *r);  // the consumer went away meanwhile
    return;
  }
  auto it = s->consumers.find(stream);
  Consumer& c = it->second;
  c.pulling = false;
  if (!r) {
    // The queue was deleted, or the node is stopping: end the stream with the error.
    s->consumers.erase(it);
    return send_error(s->identity, stream, r.error().code, r.error().message);
  }
  if (!r->empty()) {
    std::int64_t expires = steady_ms() + static_cast<std::int64_t>(vis_or_default(queue, vis));
    for (const auto& m : *r) s->leases[m.lease_id] = Lease{queue, stream, expires};
    c.in_flight += static_cast<std::uint32_t>(r->size());
    send_messages(*s, stream, queue, *r, /*event=*/true);
  }
  pump(*s, stream);
}

void Endpoint::Impl::on_consume(Session& s, std::uint64_t id, proto::Consume::Reader req) {
  std::string queue(view(req.getQueue()));
  if (!allowed_queue(s, id, queue)) return;
  if (id == 0) return;  // a stream needs an id
  if (s.consumers.contains(id) || s.subscriptions.contains(id)) {
    return reply_error(s.identity, id, ErrorCode::CONFLICT, "stream id already in use");
  }
  if (!stream_room(s, id)) return;
  Consumer c;
  c.queue = queue;
  c.window = req.getMaxInFlight() == 0 ? kDefaultWindow : req.getMaxInFlight();
  c.visibility_ms = req.getVisibilityTimeoutMs();
  // The queue must exist (in a mesh, its owner says so): the stream is held meanwhile, so the id
  // stays taken.
  c.pulling = true;
  s.consumers.emplace(id, std::move(c));
  router.get_queue_async(queue, [this, identity = s.identity, serial = s.serial, id](Result<QueueInfo> info) {
    later(identity, serial, [this, identity, id, info = std::move(info)](Session* cur) {
      if (cur == nullptr) return;
      auto it = cur->consumers.find(id);
      if (it == cur->consumers.end()) return;  // cancelled meanwhile
      it->second.pulling = false;
      if (!info) {
        cur->consumers.erase(it);
        return reply_error(identity, id, info.error());
      }
      reply_ok(identity, id);
      pump(*cur, id);
    });
  });
}

void Endpoint::Impl::on_cancel(Session& s, std::uint64_t id, std::uint64_t stream) {
  if (auto it = s.subscriptions.find(stream); it != s.subscriptions.end()) {
    it->second->closed = true;
    router.unsubscribe(it->second->hub_id);
    s.subscriptions.erase(it);
    return reply_ok(s.identity, id);
  }
  if (auto it = s.consumers.find(stream); it != s.consumers.end()) {
    // Leases already delivered stay with the client until it settles them or they expire.
    s.consumers.erase(it);
    for (auto& [lease, rec] : s.leases) {
      if (rec.stream == stream) rec.stream = 0;
    }
    return reply_ok(s.identity, id);
  }
  reply_error(s.identity, id, ErrorCode::NOT_FOUND, "no stream " + std::to_string(stream));
}

}  // namespace roost::broker
