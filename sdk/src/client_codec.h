// Requests as the C++ client encodes them and answers as it decodes them: shared by the public
// Client (client.cpp) and the broker's mesh links (peer.cpp), so a request forwarded between nodes
// is byte for byte what an application's client sends, plus its route.
#pragma once

#include "client_core.h"

namespace roost::codec {

inline std::vector<zmq::message_t> payloads_of(const std::vector<NewMessage>& msgs) {
  std::vector<zmq::message_t> out;
  out.reserve(msgs.size());
  for (const auto& m : msgs) out.emplace_back(m.body.data(), m.body.size());
  return out;
}

inline std::vector<zmq::message_t> one_payload(std::string_view data) {
  std::vector<zmq::message_t> out;
  out.emplace_back(data.data(), data.size());
  return out;
}

inline void build_enqueue(proto::Envelope::Builder env, const std::string& queue,
                          const std::vector<NewMessage>& msgs) {
  auto e = env.initEnqueue();
  e.setQueue(text(queue));
  auto list = e.initMessages(static_cast<unsigned>(msgs.size()));
  for (unsigned i = 0; i < msgs.size(); ++i) {
    list[i].setContentType(wire::to_wire(msgs[i].content_type));
    list[i].setDelayMs(msgs[i].delay_ms);
    if (!msgs[i].id.empty()) list[i].setId(text(msgs[i].id));
    if (!msgs[i].key.empty()) list[i].setKey(text(msgs[i].key));
  }
}

inline void build_pull(proto::Envelope::Builder env, const std::string& queue, const PullOptions& options,
                       std::uint64_t wait_ms) {
  auto p = env.initPull();
  p.setQueue(text(queue));
  p.setBatchSize(options.batch_size);
  if (options.visibility_timeout_ms) p.setVisibilityTimeoutMs(*options.visibility_timeout_ms);
  p.setWaitMs(wait_ms);
}

inline void build_extend(proto::Envelope::Builder env, const std::string& queue,
                         const std::vector<std::string>& leases, std::uint64_t visibility_ms) {
  auto e = env.initExtend();
  e.setQueue(text(queue));
  wire::set_texts(e.initLeaseIds(static_cast<unsigned>(leases.size())), leases);
  e.setVisibilityTimeoutMs(visibility_ms);
}

inline void build_put_queue(proto::Envelope::Builder env, const std::string& name,
                            const QueueConfigPatch& patch) {
  auto p = env.initPutQueue();
  p.setName(text(name));
  wire::to_wire(p.initConfig(), patch);
}

inline void build_object_send(proto::Envelope::Builder env, const std::string& object_class,
                              const std::string& name, ContentType type) {
  auto t = env.initObjectSend();
  t.setClass(text(object_class));
  t.setName(text(name));
  t.setContentType(wire::to_wire(type));
}

inline void build_object_call(proto::Envelope::Builder env, const std::string& object_class,
                              const std::string& name, std::uint64_t timeout_ms, ContentType type) {
  auto c = env.initObjectCall();
  c.setClass(text(object_class));
  c.setName(text(name));
  c.setTimeoutMs(timeout_ms);
  c.setContentType(wire::to_wire(type));
}

inline std::vector<std::string> decode_ids(Reply& r) {
  std::vector<std::string> ids;
  for (auto id : r.env.getEnqueued().getIds()) ids.emplace_back(view(id));
  return ids;
}

inline std::vector<LeasedMessage> decode_messages(Reply& r) {
  std::vector<LeasedMessage> out;
  auto list = r.env.getMessages().getMessages();
  for (unsigned i = 0; i < list.size() && i < r.payloads.size(); ++i) {
    auto m = list[i];
    out.push_back(LeasedMessage{std::string(view(m.getId())), std::string(view(m.getLeaseId())),
                                std::string(frame_view(r.payloads[i])), wire::from_wire(m.getContentType()),
                                m.getAttempts(), m.getTimestampMs(), std::string(view(m.getKey()))});
  }
  return out;
}

inline AckResult decode_acked(Reply& r) {
  auto a = r.env.getAcked();
  AckResult out{a.getAcked(), a.getRetried(), {}};
  for (auto u : a.getUnknown()) out.unknown.emplace_back(view(u));
  return out;
}

inline ExtendResult decode_extended(Reply& r) {
  auto e = r.env.getExtended();
  ExtendResult out{e.getExtended(), {}};
  for (auto u : e.getUnknown()) out.unknown.emplace_back(view(u));
  return out;
}

inline QueueInfo decode_queue(Reply& r) { return wire::from_wire(r.env.getQueue()); }

inline std::vector<QueueInfo> decode_queue_list(Reply& r) {
  std::vector<QueueInfo> out;
  for (auto q : r.env.getQueues()) out.push_back(wire::from_wire(q));
  return out;
}

inline ClientCore::StreamState subscription(const std::string& pattern,
                                            std::function<void(const ChannelMessage&)> handler,
                                            SubscribeOptions options) {
  ClientCore::StreamState s;
  s.target = pattern;
  s.on_message = std::move(handler);
  s.sub = std::move(options);
  return s;
}

inline std::uint64_t decode_count(Reply& r) { return r.env.getCount(); }

inline void build_publish(proto::Envelope::Builder env, const std::string& channel, ContentType type) {
  auto p = env.initPublish();
  p.setChannel(text(channel));
  p.setContentType(wire::to_wire(type));
}

inline PublishAck decode_published(Reply& r) {
  auto p = r.env.getPublished();
  return PublishAck{p.getOffset(), std::string(view(p.getEpoch())), p.getSubscribers()};
}

inline ObjectReply decode_object_reply(Reply& r) {
  if (!r.env.isObjectReply() || r.payloads.size() != 1) {
    throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                        kj::str("objectReply without its payload"));
  }
  return ObjectReply{std::string(static_cast<const char*>(r.payloads[0].data()), r.payloads[0].size()),
                     wire::from_wire(r.env.getObjectReply().getContentType())};
}

// The node answers call_timeout itself; the request's own deadline is a little longer.
inline std::chrono::milliseconds call_deadline(std::chrono::milliseconds timeout,
                                               std::chrono::milliseconds floor) {
  auto wait = (timeout.count() > 0 ? timeout : std::chrono::milliseconds(10'000)) + std::chrono::seconds(2);
  return std::max(wait, floor);
}

}  // namespace roost::codec
