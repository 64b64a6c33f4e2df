// Cloudflare Queues' REST API (/client/v4/accounts/{account_id}/queues/…) on Roost's queues.
#pragma once

#include "routes.h"

namespace roost::gateway {

// Answers a request whose path is /client/v4/accounts/… (`segs`, decoded), exactly once, in
// Cloudflare's envelope and with its error codes (docs/cloudflare.md).
void cf_routes(const Request& req, const boost::asio::ip::address& remote, Server::State& state,
               const std::vector<std::string>& segs, Reply reply,
               std::shared_ptr<const std::atomic<bool>> gone);

}  // namespace roost::gateway
