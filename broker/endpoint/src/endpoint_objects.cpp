#include "endpoint_impl.h"

namespace roost::broker {

bool Endpoint::Impl::allowed_object(Session& s, std::uint64_t id, const std::string& cls,
                                    const std::string& name, ContentType type,
                                    std::span<zmq::message_t> payloads) {
  if (payloads.size() != 1) {
    reply_error(s.identity, id, ErrorCode::MALFORMED, "an object request carries exactly one payload frame");
    return false;
  }
  if (payloads[0].size() > options.max_message_bytes) {
    reply_error(s.identity, id, ErrorCode::MESSAGE_TOO_LARGE,
                "message of " + std::to_string(payloads[0].size()) + " bytes exceeds max_message_bytes");
    return false;
  }
  if (type == ContentType::kText && !valid_utf8(frame_view(payloads[0]))) {
    reply_error(s.identity, id, ErrorCode::MALFORMED, "the message is not valid UTF-8 (content type text)");
    return false;
  }
  if (type == ContentType::kJson && payloads[0].size() > 0 && !valid_json(frame_view(payloads[0]))) {
    reply_error(s.identity, id, ErrorCode::MALFORMED, "the message is not valid JSON (content type json)");
    return false;
  }
  if (auto e = router.object_check(cls, name)) {
    reply_error(s.identity, id, *e);
    return false;
  }
  if (!s.who.may_use_object(cls, name)) {
    reply_error(s.identity, id, ErrorCode::FORBIDDEN, "not allowed to use object " + cls + "/" + name);
    return false;
  }
  return true;
}

void Endpoint::Impl::on_object_send(Session& s, std::uint64_t id, proto::ObjectSend::Reader req,
                                    std::span<zmq::message_t> payloads) {
  std::string cls(view(req.getClass())), name(view(req.getName()));
  if (!allowed_object(s, id, cls, name, wire::from_wire(req.getContentType()), payloads)) return;
  router.object_tell(std::move(cls), std::move(name), std::string(frame_view(payloads[0])),
                     wire::from_wire(req.getContentType()),
                     answer<std::uint64_t>(
                         s, id, [](proto::Envelope::Builder out, std::uint64_t seq) { out.setCount(seq); }));
}

Callback<ObjectReply> Endpoint::Impl::object_answer(const Session& s, std::uint64_t id) {
  return [this, identity = s.identity, serial = s.serial, id](Result<ObjectReply> r) mutable {
    later(identity, serial, [this, identity, id, r = std::move(r)](Session* cur) mutable {
      if (cur == nullptr || id == 0) return;
      if (!r) return reply_error(identity, id, r.error());
      capnp::MallocMessageBuilder b(256);
      auto out = b.initRoot<proto::Envelope>();
      out.setId(id);
      auto rep = out.initObjectReply();
      rep.setContentType(wire::to_wire(r->content_type));
      rep.setStatus(r->status);
      auto hs = rep.initHeaders(static_cast<unsigned>(r->headers.size()));
      for (unsigned i = 0; i < r->headers.size(); ++i) {
        hs[i].setName(text(r->headers[i].first));
        hs[i].setValue(text(r->headers[i].second));
      }
      std::vector<zmq::message_t> payload;
      payload.emplace_back(r->data.data(), r->data.size());
      reply(identity, b, std::move(payload));
    });
  };
}

void Endpoint::Impl::on_object_call(Session& s, std::uint64_t id, proto::ObjectCall::Reader req,
                                    std::span<zmq::message_t> payloads) {
  std::string cls(view(req.getClass())), name(view(req.getName()));
  if (!allowed_object(s, id, cls, name, wire::from_wire(req.getContentType()), payloads)) return;
  router.object_call(std::move(cls), std::move(name), std::string(frame_view(payloads[0])),
                     wire::from_wire(req.getContentType()), req.getTimeoutMs(), object_answer(s, id));
}

void Endpoint::Impl::on_object_fetch(Session& s, std::uint64_t id, proto::ObjectFetch::Reader f,
                                     std::span<zmq::message_t> payloads) {
  if (options.mesh == nullptr || payloads.size() != 1) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT,
                       "objectFetch goes to a node's mesh socket, with its body");
  }
  ObjectHttpRequest req;
  req.method = view(f.getMethod());
  req.path = view(f.getPath());
  req.query = view(f.getQuery());
  for (auto h : f.getHeaders()) req.headers.emplace_back(view(h.getName()), view(h.getValue()));
  req.body = frame_view(payloads[0]);
  req.client_address = view(f.getClientAddress());
  req.claims = view(f.getClaims());
  router.object_fetch(std::string(view(f.getClass())), std::string(view(f.getName())), std::move(req),
                      f.getTimeoutMs(), object_answer(s, id));
}

void Endpoint::Impl::on_object_connect(Session& s, std::uint64_t id, proto::ObjectConnect::Reader c) {
  if (options.mesh == nullptr || id == 0) {
    return reply_error(s.identity, id, ErrorCode::INVALID_ARGUMENT,
                       "objectConnect goes to a node's mesh socket, with an id");
  }
  if (s.sockets.contains(id) || s.subscriptions.contains(id) || s.consumers.contains(id)) {
    return reply_error(s.identity, id, ErrorCode::CONFLICT, "stream id already in use");
  }
  ObjectConnectRequest req;
  req.path = view(c.getPath());
  req.query = view(c.getQuery());
  req.origin = view(c.getOrigin());
  req.protocol = view(c.getProtocol());
  for (auto h : c.getHeaders()) req.headers.emplace_back(view(h.getName()), view(h.getValue()));
  req.client_address = view(c.getClientAddress());
  req.claims = view(c.getClaims());
  auto sock = std::make_shared<PeerSocket>();
  sock->outbox = outbox;
  sock->identity = s.identity;
  sock->serial = s.serial;
  sock->stream = id;
  // The runtime's threads hand frames to this thread; they leave in the order they were sent.
  // (They may outlive this endpoint: its outbox runs nothing once it is closed.)
  sock->on_send = [this](PeerSocket& ps, std::string text) {
    ps.outbox->post([this, weak = ps.weak_from_this(), text = std::move(text)] {
      auto p = weak.lock();
      if (!p) return;
      p->pending_bytes.fetch_sub(text.size());
      auto it = sessions.find(p->identity);
      if (it == sessions.end() || it->second.serial != p->serial) return;
      Session* cur = &it->second;
      if (!cur->sockets.contains(p->stream)) return;
      capnp::MallocMessageBuilder b(64);
      auto out = b.initRoot<proto::Envelope>();
      out.setId(p->stream);
      out.initSocketFrame().setStream(p->stream);
      std::vector<zmq::message_t> frames;
      frames.push_back(to_frame(b));
      frames.emplace_back(text.data(), text.size());
      send(*cur, frames, false);
    });
  };
  sock->on_close = [this](PeerSocket& p, std::uint16_t code, std::string reason) {
    p.outbox->post([this, identity = p.identity, serial = p.serial, stream = p.stream, code,
                    reason = std::move(reason)] {
      auto it = sessions.find(identity);
      if (it == sessions.end() || it->second.serial != serial) return;
      Session* cur = &it->second;
      if (!cur->sockets.contains(stream)) return;
      // The peer closes the browser's socket and answers with its socketClose: then the object
      // hears the end (its code and reason), as for a socket on this node.
      capnp::MallocMessageBuilder b(64);
      auto out = b.initRoot<proto::Envelope>();
      out.setId(stream);
      auto sc = out.initSocketClose();
      sc.setStream(stream);
      sc.setCode(code);
      sc.setReason(text(reason));
      std::vector<zmq::message_t> frames;
      frames.push_back(to_frame(b));
      send(*cur, frames, false);
    });
  };
  s.sockets.emplace(id, sock);
  router.object_connect(
      std::string(view(c.getClass())), std::string(view(c.getName())), sock, std::move(req),
      [this, identity = s.identity, serial = s.serial, id, sock](Result<std::uint64_t> r) mutable {
        later(identity, serial, [this, identity, id, sock, r = std::move(r)](Session* cur) {
          auto it = cur != nullptr ? cur->sockets.find(id) : decltype(cur->sockets.end()){};
          if (cur == nullptr || it == cur->sockets.end() || it->second != sock) {
            // The peer went away, or the browser left, while on_connect ran.
            if (r) router.object_socket_closed(*r, 1006, "the socket ended while it was attached");
            return;
          }
          if (!r) {
            cur->sockets.erase(it);
            return reply_error(identity, id, r.error());
          }
          sock->local = *r;
          peer_sockets.fetch_add(1, std::memory_order_relaxed);
          capnp::MallocMessageBuilder b(64);
          auto out = b.initRoot<proto::Envelope>();
          out.setId(id);
          out.setCount(*r);
          reply(identity, b);
        });
      });
}

void Endpoint::Impl::on_socket_frame(Session& s, proto::SocketFrame::Reader req,
                                     std::span<zmq::message_t> payloads) {
  auto it = s.sockets.find(req.getStream());
  // A frame after the object closed the socket (or before it was attached) goes nowhere.
  if (it == s.sockets.end() || it->second->local == 0 || payloads.size() != 1) return;
  router.object_socket_message(it->second->local, std::string(frame_view(payloads[0])));
}

void Endpoint::Impl::on_socket_close(Session& s, proto::SocketClose::Reader req) {
  auto it = s.sockets.find(req.getStream());
  if (it == s.sockets.end()) return;
  auto sock = std::move(it->second);
  s.sockets.erase(it);
  sock->closing = true;
  if (sock->local == 0) return;  // on_connect still runs: its answer finds no session entry
  peer_sockets.fetch_sub(1, std::memory_order_relaxed);
  router.object_socket_closed(sock->local, req.getCode(), std::string(view(req.getReason())));
}

void Endpoint::Impl::close_sockets(Session& s) {
  for (auto& [stream, sock] : s.sockets) {
    sock->closing = true;
    if (sock->local == 0) continue;
    peer_sockets.fetch_sub(1, std::memory_order_relaxed);
    router.object_socket_closed(sock->local, 1006, "the node the socket is on went away");
  }
  s.sockets.clear();
}

}  // namespace roost::broker
