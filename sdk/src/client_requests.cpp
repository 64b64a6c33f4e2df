#include "client_core.h"

namespace roost {

void ClientCore::submit(capnp::MallocMessageBuilder& b, std::uint64_t id,
                        std::vector<zmq::message_t> payloads, ReplyFn done,
                        std::chrono::milliseconds timeout) {
  Outgoing o;
  o.id = id;
  o.frames.reserve(payloads.size() + 1);
  o.frames.push_back(to_frame(b));
  for (auto& p : payloads) o.frames.push_back(std::move(p));
  o.done = std::move(done);
  o.deadline = Clock::now() + timeout;
  enqueue_outgoing(std::move(o));
}

void ClientCore::fail_outgoing(Outgoing& o, const Error& why) {
  if (o.build && !o.done && !o.build(o)) return;
  Reply r{why, {}, {}};
  if (o.done) o.done(r);
}

void ClientCore::enqueue_outgoing(Outgoing o) {
  {
    MutexLock lock(mu);
    if (closing.load()) {
      lock.unlock();  // the failure's callbacks may queue more
      fail_outgoing(o, unavailable("the client is closed"));
      return;
    }
    outbox.push_back(std::move(o));
    if (wake_pending) return;  // the I/O thread was told already and has not looked yet
    wake_pending = true;
  }
  wake();
}

void ClientCore::handle(std::vector<zmq::message_t>& parts) {
  if (parts.empty()) return;
  std::optional<wire::EnvelopeReader> reader;
  try {
    reader.emplace(parts[0].data(), parts[0].size());
  } catch (const kj::Exception&) {
    return;  // not from a Roost node; ignore
  }
  Reply r{std::nullopt, reader->get(), std::span<zmq::message_t>(parts.data() + 1, parts.size() - 1), &parts};
  last_heard = Clock::now();
  r.received = last_heard;
  std::uint64_t id = r.env.getId();
  try {
    if (id != 0 && id == hello_id) {
      hello_id = 0;
      if (r.env.isHelloOk()) return on_ready(r.env.getHelloOk());
      auto e = r.error().value_or(Error{ErrorCode::INTERNAL, "unexpected answer to hello"});
      if (!connected_once_set) {
        connected_once_set = true;
        connected_once.set_value(std::unexpected(e));
      }
      return lose_connection(e.message);
    }
    if (r.env.isHeartbeat()) {
      auto inst = r.env.getHeartbeat().getInstance();
      if (ready && instance != 0 && inst != instance) {
        // The node restarted and does not know us: start over.
        ready = false;
        send_hello();
      }
      return;
    }
    if (r.env.isError() && r.env.getError().getCode() == ErrorCode::HELLO_REQUIRED) {
      // The node forgot this connection (restart, or we were silent too long). The request
      // was not applied: say hello again and resend it then.
      if (auto it = pending.find(id); it != pending.end()) {
        waiting.push_back(
            Outgoing{id, std::move(it->second.frames), std::move(it->second.done), it->second.deadline});
        pending.erase(it);
      }
      if (hello_id == 0) {
        ready = false;
        send_hello();
      }
      return;
    }
    if (r.env.isSocketFrame() || r.env.isSocketClose()) return on_socket_event(id, r);
    {
      MutexLock lock(mu);
      if (streams.contains(id)) {
        lock.unlock();
        return on_stream_event(id, r);
      }
    }
    if (r.env.isDelivery()) {
      // A consumer we cancelled: hand its messages straight back.
      auto qm = r.env.getDelivery();
      std::vector<RetryRequest> back;
      for (auto m : qm.getMessages()) back.push_back(RetryRequest{std::string(view(m.getLeaseId())), 0});
      settle(std::string(view(qm.getQueue())), {}, std::move(back));
      return;
    }
    auto it = pending.find(id);
    if (it == pending.end()) return;  // timed out already, or fire-and-forget
    if (r.env.isError() && r.env.getError().getCode() == ErrorCode::OWNER_UNAVAILABLE &&
        retry_owner(id, it->second)) {
      return;
    }
    auto done = std::move(it->second.done);
    r.sent = it->second.first_sent;
    pending.erase(it);
    done(r);
  } catch (const kj::Exception&) {
    // A malformed answer: treat as unavailable for that request.
    if (auto it = pending.find(id); it != pending.end()) {
      auto done = std::move(it->second.done);
      pending.erase(it);
      Reply bad{Error{ErrorCode::MALFORMED, "malformed answer from the node"}, {}, {}};
      done(bad);
    }
  }
}

bool ClientCore::retry_owner(std::uint64_t id, Pending& p) {
  if (options.owner_retry.count() <= 0) return false;
  auto now = Clock::now();
  auto delay = p.retry_delay.count() == 0 ? std::chrono::milliseconds(100)
                                          : std::min(p.retry_delay * 2, std::chrono::milliseconds(1000));
  // Only while the retry budget and the request's own deadline leave room for another answer.
  if (now + delay >= p.first_sent + options.owner_retry || now + delay >= p.deadline) return false;
  Outgoing o{id, std::move(p.frames), std::move(p.done), p.deadline};
  o.first_sent = p.first_sent;
  o.retry_delay = delay;
  pending.erase(id);
  retries.emplace_back(now + delay, std::move(o));
  return true;
}

void ClientCore::expire(Clock::time_point now) {
  for (auto it = pending.begin(); it != pending.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto done = std::move(it->second.done);
    it = pending.erase(it);
    Reply r{Error{ErrorCode::TIMEOUT, "no answer from the node in time"}, {}, {}};
    done(r);
  }
  for (auto it = waiting.begin(); it != waiting.end();) {
    if (it->deadline > now) {
      ++it;
      continue;
    }
    auto o = std::move(*it);
    it = waiting.erase(it);
    Reply r{unavailable("not connected to " + options.url), {}, {}};
    if (o.done) o.done(r);
  }
}

void ClientCore::settle(std::string queue, std::vector<std::string> acks, std::vector<RetryRequest> retries) {
  capnp::MallocMessageBuilder b(128);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  build_ack(env, queue, acks, retries);
  submit(b, 0, {}, nullptr, options.request_timeout);
}

}  // namespace roost
