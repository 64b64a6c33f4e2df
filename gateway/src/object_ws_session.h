// A WebSocket attached to an object: GET /v1/objects/{class}/{name}/connect.
//
// The object's on_connect runs before the upgrade is answered: accepted → 101 and the socket is
// attached; refused → an HTTP error (403 connect_rejected, 404 class_not_found, …) with the JSON
// error body. Frames are the application's own (text in, text out, one WebSocket message each);
// each incoming frame is an on_socket_message turn unless the object's auto-response answers it.
// Frames from the object leave in order after their turn commits; a client that does not read
// them (more than 4096 frames or 8 MiB queued) is closed with 1008.
//
// Lives on its own strand; one write in flight; ping/pong keep-alive and idle timeout as /v1/ws.
#pragma once

#include <roost/core/router.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <deque>
#include <memory>
#include <string>

#include "state.h"

namespace roost::gateway {

class ObjectWsSession : public Closable, public std::enable_shared_from_this<ObjectWsSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  ObjectWsSession(boost::beast::tcp_stream stream, std::shared_ptr<Server::State> state,
                  std::unique_ptr<ConnectionSlot> slot);
  ~ObjectWsSession() override;

  // Asks the object, then completes the upgrade or answers the refusal.
  // Attaches to the object: its on_connect sees the request, `client_address` and the token's claims.
  void run(Request req, std::string object_class, std::string name, std::string client_address,
           std::string claims);
  void shutdown() override;

  // What the runtime calls (any thread): posted onto the session's strand.
  void post_send(std::string text);
  void post_close(std::uint16_t code, std::string reason);

 private:
  void on_attached(Result<std::uint64_t> r);
  void refuse(const Error& e);
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void enqueue(std::string text);
  void flush();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void close(std::uint16_t code, std::string reason);
  // Tells the object the socket left, with the close code and reason (none when it dropped).
  void detach(std::uint16_t code, std::string reason = {});

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  std::shared_ptr<Server::State> state_;
  std::unique_ptr<ConnectionSlot> slot_;
  Request req_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> out_;
  std::size_t out_bytes_ = 0;
  std::uint64_t socket_ = 0;  // the runtime's id once attached
  bool accepted_ = false;     // the WebSocket handshake is done
  bool writing_ = false;
  bool closed_ = false;
  bool detached_ = false;
};

}  // namespace roost::gateway
