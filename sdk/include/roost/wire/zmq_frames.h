// ZeroMQ frames for the native protocol, shared by the broker's endpoint and the C++ client: an
// encoded envelope in one frame, payload bytes in their own. Needs cppzmq (not installed with the
// SDK's public headers).
#pragma once

#include <roost/wire/codec.h>

#include <string>
#include <string_view>

#include <zmq.hpp>

namespace roost::wire {

// The envelope built in `b`, encoded into one frame.
inline zmq::message_t to_frame(capnp::MessageBuilder& b) {
  zmq::message_t frame(encoded_size(b));
  encode_to(b, frame.data(), frame.size());
  return frame;
}

inline zmq::message_t payload_frame(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

// A frame's bytes, valid while the frame lives.
inline std::string_view frame_view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

}  // namespace roost::wire
