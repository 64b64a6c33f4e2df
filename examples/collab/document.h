// The `Document` object of the collaborative editor: one per document name. It orders edits by
// revision, transforms each against the edits the sender had not seen (ot.h), applies and stores
// it, acknowledges it to the sender and broadcasts it to every other attached socket. The text,
// the revision and the last `kHistory` operations live in the object's storage, so a document
// survives restarts and a reconnecting client catches up from the history.
//
// Socket protocol (JSON text frames):
//   → {"op":"hello","client":id,"name":"alice","rev":r}   r = last revision seen, -1 = none
//   ← {"type":"doc","rev":n,"text":…}                       when r is unknown or too old
//   ← {"type":"op","rev":k,"ops":[…]} / {"type":"ack","rev":k,"seq":s} for k in (r, n], then
//   ← {"type":"ready","rev":n}
//   → {"op":"edit","rev":r,"seq":s,"ops":[…]}              s increases per client; resends are
//   ← {"type":"ack","rev":n,"seq":s}  to the sender         ignored (the catch-up acked them)
//   ← {"type":"op","rev":n,"ops":[…]} to the others
//   ← {"type":"presence","users":[names]}                  on every join and leave
//   ← {"type":"error","message":…}
// "ping" is answered "pong" by the gateway without waking the object (keep-alive).
#pragma once

#include <roost/actor.h>

#include <cstdint>
#include <string>

namespace collab {

class Document : public roost::Actor {
 public:
  static constexpr std::int64_t kHistory = 500;  // operations kept for catching up

  void on_activate(roost::Context& ctx) override;
  void on_connect(roost::Context& ctx, roost::Socket s, const roost::ConnectRequest& req) override;
  void on_socket_message(roost::Context& ctx, roost::Socket s, std::string_view text) override;
  void on_disconnect(roost::Context& ctx, roost::Socket s, std::uint16_t code) override;
  // {"rev":n,"text":…}
  void on_call(roost::Context& ctx, const roost::Message& m) override;

 private:
  void presence(roost::Context& ctx);

  std::u16string text_;  // UTF-16, as the browsers count
  std::int64_t rev_ = 0;
};

}  // namespace collab
