#include "client_core.h"

namespace roost {

void ClientCore::enqueue_publish(std::string_view channel, std::string_view data, ContentType type) {
  auto deadline = coarse_now() + options.request_timeout;
  {
    MutexLock lock(mu);
    if (closing.load()) return;  // fire and forget: nothing to tell
    if (outbox.empty() || !outbox.back().run || !outbox.back().run->has_room(data.size())) {
      Outgoing o;
      o.run = std::make_unique<PublishRun>();
      outbox.push_back(std::move(o));
    }
    auto& back = outbox.back();
    back.deadline = deadline;
    back.run->add(channel, data, type);
    if (wake_pending) return;
    wake_pending = true;
  }
  wake();
}

void ClientCore::send_publish_batch(const PublishRun& run) {
  auto n = static_cast<unsigned>(run.items.size());
  capnp::MallocMessageBuilder b(64 + n * 8);
  auto env = b.initRoot<proto::Envelope>();
  env.setId(0);
  auto pb = env.initPublishBatch();
  auto list = pb.initItems(n);
  auto sizes = pb.initSizes(n);
  for (unsigned k = 0; k < n; ++k) {
    const auto& it = run.items[k];
    list[k].setChannel(text(run.name(it)));
    list[k].setContentType(wire::to_wire(it.type));
    sizes.set(k, it.size);
  }
  auto f = to_frame(b);
  zmq::message_t payload(run.data.data(), run.data.size());
  (void)sock->send(f, zmq::send_flags::sndmore);
  (void)sock->send(payload, zmq::send_flags::none);
}

}  // namespace roost
