#include "client_core.h"

namespace roost {

void ClientCore::open_stream(std::uint64_t id, StreamState& s) {
  capnp::MallocMessageBuilder b(128);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(id);
  if (s.consumer) {
    auto c = env.initConsume();
    c.setQueue(text(s.target));
    c.setMaxInFlight(s.cons.max_in_flight);
    if (s.cons.visibility) c.setVisibilityTimeoutMs(static_cast<std::uint64_t>(s.cons.visibility->count()));
  } else {
    auto sub = env.initSubscribe();
    sub.setPattern(text(s.target));
    if (!s.epoch.empty() && s.target.find_first_of("*>") == std::string::npos) {
      auto pos = sub.initSince();
      pos.setEpoch(text(s.epoch));
      pos.setOffset(s.offset);
    } else if (s.epoch.empty() && s.sub.since) {
      auto pos = sub.initSince();
      pos.setEpoch(text(s.sub.since->first));
      pos.setOffset(s.sub.since->second);
    } else if (s.epoch.empty() && s.sub.recent > 0) {
      sub.setRecent(static_cast<std::uint32_t>(s.sub.recent));
    } else {
      sub.setLive();
    }
  }
  auto f = to_frame(b);
  (void)sock->send(f, zmq::send_flags::none);
}

void ClientCore::on_stream_event(std::uint64_t id, Reply& r) {
  std::function<void()> now;  // handlers that run on this thread, after the lock is released
  {
    MutexLock lock(mu);
    stream_event_locked(id, r, now);
  }
  if (now) now();
}

void ClientCore::stream_event_locked(std::uint64_t id, Reply& r, std::function<void()>& now) {
  auto it = streams.find(id);
  if (it == streams.end()) return;
  StreamState& s = it->second;
  const auto& env = r.env;
  using W = proto::Envelope::Which;
  switch (env.which()) {
    case W::OK:
    case W::SUBSCRIBED: {
      if (env.isSubscribed()) {
        // Recovered messages (if any) follow and move the position on.
        auto sub = env.getSubscribed();
        s.epoch = std::string(view(sub.getEpoch()));
        s.offset = sub.getOffset();
      }
      if (s.first) {
        s.first->set_value({});
        s.first = nullptr;
      }
      s.reopen_delay = std::chrono::milliseconds(0);  // (re)opened: a later loss gets the whole budget
      return;
    }
    case W::MESSAGE: {
      auto event = env.getMessage();
      auto list = event.getMessages();
      // Here: presence events, the resume position and the backlog count. The data messages
      // are read from the frames where the handler runs, into one reused ChannelMessage, so
      // that a message costs no allocation once the batch's first has sized its strings.
      std::size_t count = 0;
      std::size_t bytes = 0;
      bool inline_presence = false;  // presence events for a handler on this thread: in order with data
      std::optional<proto::ChannelMessage::Reader> last;
      PayloadCursor cursor(event, r.payloads);
      for (unsigned i = 0; i < list.size(); ++i) {
        auto m = list[i];
        auto data = cursor.next(i);
        if (!data) break;
        if (m.getKind() != proto::MessageKind::DATA) {
          inline_presence = inline_presence || (s.sub.on_presence && s.sub.on_io_thread);
          if (s.sub.on_presence && !s.sub.on_io_thread) {
            ChannelMessage cm;
            fill(cm, m, *data);
            to_dispatch([g = s.gate, f = s.sub.on_presence, cm = std::move(cm)] { g->run([&] { f(cm); }); });
          }
          continue;
        }
        last = m;
        ++count;
        bytes += data->size();
      }
      if (last) {  // the resume position: the last data message's
        s.epoch.assign(view(last->getEpoch()));
        s.offset = last->getOffset();
      }
      if ((count == 0 && !inline_presence) || r.frames == nullptr) return;
      if (queued_messages.load() + count > options.max_queued_messages ||
          queued_bytes.load() + bytes > options.max_queued_bytes) {
        // The handler is behind: drop, and say so once it catches up.
        if (s.sub.on_lag) to_dispatch([g = s.gate, f = s.sub.on_lag, count] { g->run([&] { f(count); }); });
        return;
      }
      queued_messages += count;
      queued_bytes += bytes;
      auto frames = std::make_shared<std::vector<zmq::message_t>>(std::move(*r.frames));
      auto presence = s.sub.on_io_thread ? s.sub.on_presence : nullptr;
      auto run = [this, gate = s.gate, handler = s.on_message, batch_end = s.sub.on_batch_end, presence,
                  frames, count, bytes] {
        gate->run([&] {
          try {
            wire::EnvelopeReader reader((*frames)[0].data(), (*frames)[0].size());
            auto ev = reader.get().getMessage();
            auto msgs = ev.getMessages();
            PayloadCursor payloads(ev, std::span<zmq::message_t>(frames->data() + 1, frames->size() - 1));
            ChannelMessage cm;
            for (unsigned i = 0; i < msgs.size(); ++i) {
              auto data = payloads.next(i);
              if (!data) break;
              if (msgs[i].getKind() != proto::MessageKind::DATA) {
                if (presence) {
                  ChannelMessage pm;
                  fill(pm, msgs[i], *data);
                  presence(pm);
                }
                continue;
              }
              fill(cm, msgs[i], *data);
              handler(cm);
            }
            if (batch_end) batch_end();
          } catch (const kj::Exception&) {
            // Read once already on the I/O thread: cannot fail here.
          }
        });
        queued_messages -= count;
        queued_bytes -= bytes;
      };
      if (s.sub.on_io_thread) {
        now = std::move(run);
      } else {
        to_dispatch(std::move(run));
      }
      return;
    }
    case W::LAGGED: {
      if (s.sub.on_lag) {
        to_dispatch(
            [g = s.gate, f = s.sub.on_lag, n = env.getLagged().getDropped()] { g->run([&] { f(n); }); });
      }
      return;
    }
    case W::RESET:
      s.epoch = std::string(view(env.getReset().getEpoch()));
      s.offset = env.getReset().getOffset();
      return;
    case W::DELIVERY: {
      auto qm = env.getDelivery();
      std::string queue(view(qm.getQueue()));
      auto list = qm.getMessages();
      auto batch = std::make_shared<std::vector<Delivery>>();
      batch->reserve(list.size());
      for (unsigned i = 0; i < list.size() && i < r.payloads.size(); ++i) {
        auto m = list[i];
        Delivery d;
        d.queue = queue;
        d.message = LeasedMessage{std::string(view(m.getId())),
                                  std::string(view(m.getLeaseId())),
                                  std::string(frame_view(r.payloads[i])),
                                  wire::from_wire(m.getContentType()),
                                  m.getAttempts(),
                                  m.getTimestampMs(),
                                  std::string(view(m.getKey()))};
        d.core_ = weak_from_this();
        batch->push_back(std::move(d));
      }
      auto handler = s.on_delivery;
      to_dispatch([g = s.gate, handler, batch] {
        g->run([&] {
          for (const auto& d : *batch) handler(d);
        });
      });
      return;
    }
    case W::ERROR: {
      Error e{env.getError().getCode(), std::string(view(env.getError().getMessage()))};
      if (e.code == ErrorCode::HELLO_REQUIRED) return;  // handled by the reconnect path
      if (s.first) {
        s.first->set_value(std::unexpected(e));
        s.first = nullptr;
        streams.erase(it);
        return;
      }
      if (e.code == ErrorCode::OWNER_UNAVAILABLE && s.consumer && options.owner_retry.count() > 0) {
        // The queue's shard is closed for a move, or its owner is gone: consume again (routed
        // afresh) after a backoff, as a request answered owner_unavailable is sent again.
        auto t = Clock::now();
        if (s.reopen_delay.count() == 0) s.reopen_since = t;
        s.reopen_delay = s.reopen_delay.count() == 0
                             ? std::chrono::milliseconds(100)
                             : std::min(s.reopen_delay * 2, std::chrono::milliseconds(1000));
        if (t + s.reopen_delay < s.reopen_since + options.owner_retry) {
          reopen.emplace_back(t + s.reopen_delay, id);
          return;
        }
      }
      auto on_error = s.consumer ? s.cons.on_error : s.sub.on_error;
      auto gate = s.gate;
      streams.erase(it);
      if (on_error) to_dispatch([gate, on_error, e] { gate->run([&] { on_error(e); }); });
      return;
    }
    default: return;
  }
}

void ClientCore::on_socket_event(std::uint64_t id, Reply& r) {
  std::function<void(std::string_view)> on_frame;
  std::function<void(std::uint16_t, std::string)> on_close;
  {
    MutexLock lock(mu);
    auto it = sockets.find(id);
    if (it == sockets.end()) return;
    if (!it->second.on_close) return;  // closed by the owner already: waits for socket_close
    if (r.env.isSocketFrame()) {
      on_frame = it->second.on_frame;
    } else {
      // Kept (without handlers) until socket_close sends the browser's side of the close.
      on_close = std::move(it->second.on_close);
      it->second.on_close = nullptr;
      it->second.on_frame = nullptr;
    }
  }
  if (on_frame) {
    if (r.payloads.size() == 1) on_frame(frame_view(r.payloads[0]));
    return;
  }
  if (on_close) {
    auto c = r.env.getSocketClose();
    on_close(c.getCode(), std::string(view(c.getReason())));
  }
}

void ClientCore::end_sockets(const std::string& why) {
  std::vector<std::function<void(std::uint16_t, std::string)>> ended;
  {
    MutexLock lock(mu);
    for (auto it = sockets.begin(); it != sockets.end();) {
      if (!it->second.attached) {  // its objectConnect is answered (or failed) on its own
        ++it;
        continue;
      }
      ended.push_back(std::move(it->second.on_close));
      it = sockets.erase(it);
    }
  }
  for (auto& f : ended) {
    if (f) f(1012, why);
  }
}

void ClientCore::cancel(std::uint64_t id) {
  {
    MutexLock lock(mu);
    if (streams.erase(id) == 0) return;
    cancels.push_back(id);
  }
  wake();
}

}  // namespace roost
