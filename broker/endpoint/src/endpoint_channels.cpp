#include "endpoint_impl.h"

namespace roost::broker {

void Endpoint::Impl::flush_deliveries(Outbox::Deliveries& d) {
  if (d.empty()) return;
  if (d.runs.size() == 1) {  // one subscription: no grouping to do
    send_to_sink(*d.runs[0].sink, d.messages);
    d.clear();
    return;
  }
  constexpr std::size_t kNone = ~std::size_t{0};
  // For each sink its first run; for each run the next run of the same sink.
  flush_first_.clear();
  flush_next_.assign(d.runs.size(), kNone);
  flush_starts_.resize(d.runs.size());
  std::vector<std::size_t>& last = flush_last_;
  last.clear();
  std::size_t start = 0;
  for (std::size_t r = 0; r < d.runs.size(); ++r) {
    flush_starts_[r] = start;
    start += d.runs[r].count;
    auto [it, fresh] = flush_first_.try_emplace(d.runs[r].sink.get(), last.size());
    if (fresh) {
      last.push_back(r);
      flush_order_.push_back(r);
    } else {
      flush_next_[last[it->second]] = r;
      last[it->second] = r;
    }
  }
  for (std::size_t first : flush_order_) {
    Sink& sink = *d.runs[first].sink;
    std::span<const channels::MessagePtr> msgs;
    if (flush_next_[first] == kNone) {
      msgs = std::span(d.messages).subspan(flush_starts_[first], d.runs[first].count);
    } else {
      flush_gather_.clear();
      for (std::size_t r = first; r != kNone; r = flush_next_[r]) {
        auto from = d.messages.begin() + static_cast<std::ptrdiff_t>(flush_starts_[r]);
        flush_gather_.insert(flush_gather_.end(), std::make_move_iterator(from),
                             std::make_move_iterator(from + static_cast<std::ptrdiff_t>(d.runs[r].count)));
      }
      msgs = flush_gather_;
    }
    send_to_sink(sink, msgs);
  }
  flush_order_.clear();
  flush_gather_.clear();
  d.clear();
}

void Endpoint::Impl::send_to_sink(Sink& sink, std::span<const channels::MessagePtr> msgs) {
  std::size_t bytes = 0;
  for (const auto& m : msgs) bytes += m->data.size();
  sink.pending.fetch_sub(msgs.size(), std::memory_order_relaxed);
  sink.pending_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  if (sink.closed.load()) return;
  auto it = sessions.find(sink.identity);
  if (it == sessions.end() || it->second.serial != sink.serial) return;
  Session& s = it->second;
  for (std::size_t at = 0; at < msgs.size();) {
    // An event: up to kMaxEventMessages messages and kMaxEventBytes (at least one message).
    std::size_t n = 0, event_bytes = 0;
    while (at + n < msgs.size() && n < kMaxEventMessages &&
           (n == 0 || event_bytes + msgs[at + n]->data.size() <= kMaxEventBytes)) {
      event_bytes += msgs[at + n]->data.size();
      ++n;
    }
    auto part = msgs.subspan(at, n);
    at += n;
    if (auto lost = sink.dropped.exchange(0)) {
      if (!lagged(s, sink, lost)) {
        sink.drop(part.size());
        if (sink.closed.load()) break;
        continue;
      }
    }
    if (!send_channel_messages(s, sink, part)) {
      sink.drop(part.size());
      if (sink.policy == channels::SlowPolicy::kDisconnect) close_slow(s, sink);
    }
    if (sink.closed.load()) break;
  }
}

bool Endpoint::Impl::send_channel_messages(Session& s, const Sink& sink,
                                           std::span<const channels::MessagePtr> msgs) {
  const std::size_t n = msgs.size();
  capnp::MallocMessageBuilder b(64 + n * 24);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(sink.stream);
  auto event = env.initMessage();
  auto list = event.initMessages(static_cast<unsigned>(n));
  // Small payloads travel packed in one frame (sizes say where each ends); large ones each in
  // their own frame.
  std::size_t total = 0;
  bool pack = true;
  for (std::size_t i = 0; i < n; ++i) {
    total += msgs[i]->data.size();
    pack = pack && msgs[i]->data.size() <= kPackLimit;
  }
  std::vector<zmq::message_t> frames;
  frames.reserve(pack ? 2 : n + 1);
  frames.emplace_back();
  zmq::message_t packed;
  char* out = nullptr;
  capnp::List<std::uint32_t>::Builder sizes;
  if (pack) {
    packed.rebuild(total);
    out = static_cast<char*>(packed.data());
    sizes = event.initSizes(static_cast<unsigned>(n));
  }
  for (std::size_t i = 0; i < n; ++i) {
    const auto& m = *msgs[i];
    auto l = list[static_cast<unsigned>(i)];
    l.setChannel(text(m.channel));
    l.setOffset(m.offset);
    l.setEpoch(text(m.epoch));
    l.setContentType(wire::to_wire(m.content_type));
    l.setTimestampMs(m.timestamp_ms);
    if (m.kind != channels::MessageKind::kData) {
      l.setKind(static_cast<proto::MessageKind>(m.kind));
      l.setSubscribers(m.subscribers);
      if (!m.origin.empty()) {
        l.setOrigin(text(m.origin));
        l.setOriginSubscription(m.origin_subscription);
      }
    }
    if (pack) {
      std::memcpy(out, m.data.data(), m.data.size());
      out += m.data.size();
      sizes.set(static_cast<unsigned>(i), static_cast<std::uint32_t>(m.data.size()));
    } else {
      frames.push_back(payload_frame(m.data));
    }
  }
  if (pack) frames.push_back(std::move(packed));
  frames[0] = to_frame(b);
  return send(s, frames, true);
}

bool Endpoint::Impl::lagged(Session& s, Sink& sink, std::uint64_t lost) {
  if (sink.policy == channels::SlowPolicy::kDisconnect) {
    close_slow(s, sink);
    return false;
  }
  capnp::MallocMessageBuilder b(32);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(sink.stream);
  env.initLagged().setDropped(lost);
  std::vector<zmq::message_t> frames;
  frames.push_back(to_frame(b));
  if (!send(s, frames, true)) {
    sink.dropped.fetch_add(lost);  // already counted in the total; told later
    return false;
  }
  return true;
}

void Endpoint::Impl::close_slow(Session& s, Sink& sink) {
  if (sink.closed.exchange(true)) return;
  router.unsubscribe(sink.hub_id);
  std::uint64_t stream = sink.stream;
  s.subscriptions.erase(stream);
  send_error(s.identity, stream, ErrorCode::TOO_MANY_REQUESTS,
             "subscriber too slow: its buffer filled up (policy disconnect)");
}

std::optional<Error> Endpoint::Impl::publish_check(Session& s, const std::string& channel, ContentType type,
                                                   std::string_view data) {
  if (!s.who.may_publish(channel)) {
    return Error{ErrorCode::FORBIDDEN, "the token does not grant publishing to " + channel};
  }
  if (data.size() > options.max_message_bytes) {
    return Error{ErrorCode::MESSAGE_TOO_LARGE, "the message has " + std::to_string(data.size()) +
                                                   " bytes; the limit is " +
                                                   std::to_string(options.max_message_bytes)};
  }
  if (type == ContentType::kJson && !valid_json(data)) {
    return Error{ErrorCode::MALFORMED, "the message is not valid JSON (content type json)"};
  }
  if (type == ContentType::kText && !valid_utf8(data)) {
    return Error{ErrorCode::MALFORMED, "the message is not valid UTF-8 (content type text)"};
  }
  return std::nullopt;
}

void Endpoint::Impl::on_publish(Session& s, std::uint64_t id, proto::Publish::Reader req,
                                std::span<zmq::message_t> payloads) {
  if (payloads.size() != 1) {
    return reply_error(s.identity, id, ErrorCode::MALFORMED, "publish carries exactly one payload frame");
  }
  std::string channel(view(req.getChannel()));
  const auto type = wire::from_wire(req.getContentType());
  const auto data = frame_view(payloads[0]);
  if (auto e = publish_check(s, channel, type, data)) return reply_error(s.identity, id, *e);
  ++round_messages;
  if (id == 0) {
    (void)router.publish(channel, std::string(data), type);
    return;
  }
  // Answered with its place in the channel (in a mesh, once the channel's home assigned it).
  router.publish_async(std::move(channel), std::string(data), type,
                       answer<channels::PublishResult>(
                           s, id, [](proto::Envelope::Builder out, const channels::PublishResult& r) {
                             auto p = out.initPublished();
                             p.setOffset(r.offset);
                             p.setEpoch(text(r.epoch));
                             p.setSubscribers(r.subscribers);
                           }));
}

void Endpoint::Impl::on_publish_batch(Session& s, std::uint64_t id, proto::PublishBatch::Reader req,
                                      std::span<zmq::message_t> payloads) {
  auto items = req.getItems();
  auto sizes = req.getSizes();
  std::uint64_t total = 0;
  for (auto n : sizes) total += n;
  if (payloads.size() != 1 || items.size() != sizes.size() || total != payloads[0].size()) {
    return reply_error(s.identity, id, ErrorCode::MALFORMED,
                       "publishBatch carries one payload frame of sum(sizes) bytes, one size per item");
  }
  std::string_view all = frame_view(payloads[0]);
  std::uint64_t accepted = 0;
  std::size_t at = 0;
  // Runs of items on one channel go to the hub together (one lock, one subscriber lookup).
  std::vector<channels::Payload> run;
  run.reserve(items.size());
  for (unsigned i = 0; i < items.size();) {
    std::string_view channel = view(items[i].getChannel());
    bool allowed = s.who.may_publish(channel);
    run.clear();
    for (; i < items.size() && view(items[i].getChannel()) == channel; ++i) {
      std::string_view data = all.substr(at, sizes[i]);
      at += sizes[i];
      auto type = wire::from_wire(items[i].getContentType());
      if (!allowed || data.size() > options.max_message_bytes) continue;
      if (type == ContentType::kJson && !valid_json(data)) continue;
      if (type == ContentType::kText && !valid_utf8(data)) continue;
      run.emplace_back(std::string(data), type);
    }
    round_messages += static_cast<int>(run.size());
    if (auto r = router.publish_many(std::string(channel), run)) accepted += *r;
  }
  if (id == 0) return;
  capnp::MallocMessageBuilder b(32);
  auto out = b.initRoot<proto::Envelope>();
  out.setId(id);
  out.setCount(accepted);
  reply(s.identity, b);
}

void Endpoint::Impl::on_subscribe(Session& s, std::uint64_t id, proto::Subscribe::Reader req) {
  std::string pattern(view(req.getPattern()));
  if (id == 0) return;
  if (s.consumers.contains(id) || s.subscriptions.contains(id)) {
    return reply_error(s.identity, id, ErrorCode::CONFLICT, "stream id already in use");
  }
  if (!stream_room(s, id)) return;
  if (auto e = channels::validate_pattern(pattern)) return reply_error(s.identity, id, *e);
  if (!s.who.may_subscribe(pattern)) {
    return reply_error(s.identity, id, ErrorCode::FORBIDDEN,
                       "the token does not grant subscribing to " + pattern);
  }
  std::optional<channels::Since> since;
  switch (req.which()) {
    case proto::Subscribe::SINCE: {
      auto p = req.getSince();
      since = channels::Since{std::string(view(p.getEpoch())), p.getOffset(), 0};
      break;
    }
    case proto::Subscribe::RECENT:
      if (req.getRecent() > 0) since = channels::Since{"", 0, req.getRecent()};
      break;
    default: break;
  }
  auto sink = std::make_shared<Sink>();
  sink->outbox = outbox;
  sink->identity = s.identity;
  sink->serial = s.serial;
  sink->stream = id;
  const auto& ns = router.channel_namespace(pattern);
  sink->limit = ns.buffer_messages;
  sink->limit_bytes = ns.buffer_bytes;
  sink->policy = ns.policy;
  if (options.mesh != nullptr) {
    // A peer node's interest: it never sees relayed copies, is not presence, and a slow peer
    // loses messages (told as `lagged`) rather than its link.
    sink->peer = true;
    sink->policy = channels::SlowPolicy::kDrop;
    // One peer subscription carries a whole node's subscribers: a bigger buffer than a client's.
    sink->limit = ns.buffer_messages * kPeerBufferFactor;
    sink->limit_bytes = ns.buffer_bytes * kPeerBufferFactor;
  }
  auto r = router.subscribe(pattern, sink, since);
  if (!r) return reply_error(s.identity, id, r.error());
  sink->hub_id = r->id;
  s.subscriptions.emplace(id, sink);
  capnp::MallocMessageBuilder b(64);
  auto out = b.initRoot<proto::Envelope>();
  out.setId(id);
  auto sub = out.initSubscribed();
  sub.setEpoch(text(r->epoch));
  sub.setOffset(r->offset);
  sub.setRecovered(r->recovered);
  sub.setReset(r->reset);
  reply(s.identity, b);
}

}  // namespace roost::broker
