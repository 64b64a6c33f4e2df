// A hand-driven native client (ZeroMQ DEALER) for integration tests: builds envelopes itself,
// for what the SDK would never send.
#pragma once

#include <roost/wire/codec.h>

#include <catch2/catch.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <string>
#include <vector>

namespace roost::test {

using roost::ErrorCode;

// A hand-driven DEALER: builds envelopes itself, for what the SDK would never send.
class RawClient {
 public:
  // `routing_id` empty: ZeroMQ picks one. `rcvhwm` bounds what ZeroMQ reads ahead for us.
  explicit RawClient(const std::string& endpoint, std::string routing_id = "", int rcvhwm = 1000)
      : sock_(ctx_, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::rcvtimeo, 3000);
    sock_.set(zmq::sockopt::rcvhwm, rcvhwm);
    if (!routing_id.empty()) sock_.set(zmq::sockopt::routing_id, routing_id);
    sock_.connect(endpoint);
  }
  void set_recv_timeout(int ms) { sock_.set(zmq::sockopt::rcvtimeo, ms); }
  void close() { sock_.close(); }
  void send_frames(std::vector<zmq::message_t> frames) { zmq::send_multipart(sock_, frames); }
  void send(capnp::MallocMessageBuilder& b, std::vector<std::string> payloads = {}) {
    auto words = roost::wire::encode(b);
    auto bytes = words.asBytes();
    std::vector<zmq::message_t> frames;
    frames.emplace_back(bytes.begin(), bytes.size());
    for (auto& p : payloads) frames.emplace_back(p.data(), p.size());
    send_frames(std::move(frames));
  }
  // The next message; empty on timeout.
  std::vector<zmq::message_t> recv() {
    std::vector<zmq::message_t> parts;
    (void)zmq::recv_multipart(sock_, std::back_inserter(parts));
    return parts;
  }
  // Says hello; returns the heartbeat the node granted.
  std::uint32_t hello(std::uint32_t heartbeat_ms = 0, std::string token = "") {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(1);
    auto h = env.initHello();
    h.setProtocolVersion(roost::proto::PROTOCOL_VERSION);
    h.setHeartbeatMs(heartbeat_ms);
    h.setToken(roost::wire::text(token));
    send(b);
    auto r = recv();
    REQUIRE(r.size() == 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    REQUIRE(rd.get().isHelloOk());
    return rd.get().getHelloOk().getHeartbeatMs();
  }
  // Sends a listQueues with `id` and returns the answer's envelope which().
  roost::proto::Envelope::Which list_queues(std::uint64_t id, ErrorCode* code = nullptr) {
    capnp::MallocMessageBuilder b;
    auto env = b.initRoot<roost::proto::Envelope>();
    env.setId(id);
    env.setListQueues();
    send(b);
    auto r = recv();
    REQUIRE(r.size() >= 1);
    roost::wire::EnvelopeReader rd(r[0].data(), r[0].size());
    CHECK(rd.get().getId() == id);
    if (code != nullptr && rd.get().isError()) *code = rd.get().getError().getCode();
    return rd.get().which();
  }

 private:
  zmq::context_t ctx_{1};
  zmq::socket_t sock_;
};

}  // namespace roost::test
