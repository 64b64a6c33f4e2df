// The native endpoint's mesh requests (a node's mesh socket, docs/mesh.md): the route check every
// forwarded request passes, presence events for channels homed here, shard-move steps, and the
// effects of other nodes' turns on shards this node owns.
#include "endpoint_impl.h"

namespace roost::broker {

std::optional<Error> Endpoint::Impl::check_route(proto::Envelope::Reader env) {
  using W = proto::Envelope::Which;
  const auto shards = options.mesh->shards();
  std::uint32_t shard = 0;
  auto of_queue = [&](capnp::Text::Reader q) { shard = shard_of_queue(view(q), shards); };
  switch (env.which()) {
    case W::ENQUEUE: of_queue(env.getEnqueue().getQueue()); break;
    case W::PULL: of_queue(env.getPull().getQueue()); break;
    case W::ACK: of_queue(env.getAck().getQueue()); break;
    case W::EXTEND: of_queue(env.getExtend().getQueue()); break;
    case W::PUT_QUEUE: of_queue(env.getPutQueue().getName()); break;
    case W::DELETE_QUEUE: of_queue(env.getDeleteQueue().getName()); break;
    case W::GET_QUEUE: of_queue(env.getGetQueue().getName()); break;
    case W::PURGE_QUEUE: of_queue(env.getPurgeQueue().getName()); break;
    case W::PEEK: of_queue(env.getPeek().getQueue()); break;
    case W::OBJECT_SEND:
      shard =
          shard_of_object(view(env.getObjectSend().getClass()), view(env.getObjectSend().getName()), shards);
      break;
    case W::OBJECT_CALL:
      shard =
          shard_of_object(view(env.getObjectCall().getClass()), view(env.getObjectCall().getName()), shards);
      break;
    case W::MESH_EFFECTS: shard = env.getMeshEffects().getShard(); break;
    case W::OBJECT_FETCH:
      shard = shard_of_object(view(env.getObjectFetch().getClass()), view(env.getObjectFetch().getName()),
                              shards);
      break;
    case W::OBJECT_CONNECT:
      shard = shard_of_object(view(env.getObjectConnect().getClass()), view(env.getObjectConnect().getName()),
                              shards);
      break;
    case W::SOCKET_FRAME:  // of a socket attached under a route checked then
    case W::SOCKET_CLOSE:
    case W::LIST_QUEUES:     // this node's own queues (a peer gathers the mesh's)
    case W::PRESENCE_EVENT:  // a join/leave for a channel homed here
    case W::PRESENCE:        // this node's own subscribers
    case W::PUBLISH:         // to a channel homed here: sequenced here, never passed on
    case W::PUBLISH_BATCH:
    case W::SUBSCRIBE:  // a peer's interest in channels (no shard: channels are everywhere)
    case W::CANCEL:
    case W::SHARD_COPY:  // a shard moving here (the target checks the source's claim in etcd)
      return std::nullopt;
    default: return Error{ErrorCode::INVALID_ARGUMENT, "not a request a mesh socket serves"};
  }
  if (!env.hasRoute())
    return Error{ErrorCode::INVALID_ARGUMENT, "a request on a mesh socket carries its route"};
  auto route = env.getRoute();
  if (shards == 0 || route.getShard() != shard) {
    return Error{ErrorCode::OWNER_UNAVAILABLE, "the route names shard " + std::to_string(route.getShard()) +
                                                   ", the request is in shard " + std::to_string(shard)};
  }
  if (!options.mesh->serves(shard, route.getEpoch())) {
    route_refused.fetch_add(1, std::memory_order_relaxed);
    return Error{ErrorCode::OWNER_UNAVAILABLE, "this node does not own shard " + std::to_string(shard) +
                                                   " under epoch " + std::to_string(route.getEpoch())};
  }
  return std::nullopt;
}

void Endpoint::Impl::on_presence_event(Session& s, std::uint64_t id, proto::PresenceEvent::Reader e) {
  if (options.mesh == nullptr) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT, "presence events go to a mesh socket");
  }
  auto kind = e.getKind() == proto::MessageKind::LEAVE  ? channels::MessageKind::kLeave
              : e.getKind() == proto::MessageKind::JOIN ? channels::MessageKind::kJoin
                                                        : channels::MessageKind::kData;  // a report
  return router.presence_event(kind, std::string(view(e.getChannel())), std::string(view(e.getOrigin())),
                               e.getDirect(), e.getSubscription());
}

void Endpoint::Impl::on_shard_copy(Session& s, std::uint64_t id, proto::ShardCopy::Reader c,
                                   std::span<zmq::message_t> payloads) {
  if (options.mesh == nullptr) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT, "shard moves go to a node's mesh socket");
  }
  if (payloads.size() != 1) return reply_error(s.identity, id, ErrorCode::MALFORMED, "one payload frame");
  auto phase = static_cast<unsigned>(c.getPhase());
  if (phase > static_cast<unsigned>(ShardCopyPhase::kObjects)) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT, "unknown shard copy phase");
  }
  ShardCopy step{c.getMove(), c.getShard(), static_cast<ShardCopyPhase>(phase),
                 std::string(view(c.getOrigin())), c.getEpoch()};
  return router.shard_copy(
      std::move(step), std::string(frame_view(payloads[0])),
      answer<std::uint64_t>(s, id, [](proto::Envelope::Builder out, std::uint64_t n) { out.setCount(n); }));
}

void Endpoint::Impl::on_mesh_effects(Session& s, std::uint64_t id, proto::MeshEffects::Reader req,
                                     std::span<zmq::message_t> payloads) {
  if (options.mesh == nullptr) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT,
                       "mesh effects go to a node's mesh socket");
  }
  auto list = req.getEffects();
  if (list.size() != payloads.size()) {
    return reply_error(s.identity, id, ErrorCode::MALFORMED, "one payload frame per effect");
  }
  std::vector<MeshEffect> effects;
  effects.reserve(list.size());
  for (unsigned i = 0; i < list.size(); ++i) {
    auto e = list[i];
    MeshEffect m;
    m.seq = e.getSeq();
    m.queue = view(e.getQueue());
    m.object_class = view(e.getClass());
    m.name = view(e.getName());
    m.message.body = frame_view(payloads[i]);
    m.message.content_type = wire::from_wire(e.getContentType());
    m.message.delay_ms = e.getDelayMs();
    m.message.id = view(e.getId());
    m.message.key = view(e.getKey());
    effects.push_back(std::move(m));
  }
  // Effects are the authenticated peer's: a frame naming another origin is refused (it could
  // move that node's applied mark and make its next effects look applied). Without a secret
  // (mesh_insecure) the frame is all there is.
  std::string origin(view(req.getOrigin()));
  if (auth.enabled() && origin != s.who.node) {
    return reply_error(s.identity, id, ErrorCode::FORBIDDEN,
                       "effects are the sending node's own: this link is " + s.who.node);
  }
  return router.mesh_effects(
      std::move(origin), req.getShard(), std::move(effects),
      answer<std::uint64_t>(s, id,
                            [](proto::Envelope::Builder out, std::uint64_t seq) { out.setCount(seq); }));
}

}  // namespace roost::broker
