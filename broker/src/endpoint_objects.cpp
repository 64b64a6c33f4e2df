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

}  // namespace roost::broker
