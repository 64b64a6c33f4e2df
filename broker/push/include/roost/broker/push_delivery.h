// Push delivery to HTTP services (docs/sidecar.md): the sidecar role. A queue with a push target
// is leased by the node itself and each message POSTed to the target; a 2xx answer acks it,
// anything else (429, 5xx, other statuses, a redirect, a timeout, a refused connection) retries it
// with the queue's retry delay — or the answer's Retry-After — so attempts, dead letters,
// per-key order and leases hold as for pull consumers. Channel webhooks forward a subject
// pattern's messages to a URL, at most once, through a bounded queue.
//
// Everything runs on one thread of its own ("roost-push") with asynchronous I/O: a slow or dead
// target only uses its own queue's `concurrency` requests, never another queue's.
//
// Thread-safety: start() / stop() from the controlling thread; kick(), metrics_text() and
// check_target() from any thread.
#pragma once

#include <roost/broker/push_targets.h>
#include <roost/core/error.h>
#include <roost/core/queue_types.h>
#include <roost/core/router.h>

#include <memory>
#include <string>
#include <vector>

namespace roost::broker {

struct PushOptions {
  // Hosts a push or webhook URL may name (push_allowed_hosts): names (compared case-insensitively,
  // as written in the URL) and addresses, or "*" for any. Default: loopback only.
  std::vector<std::string> allowed_hosts{"127.0.0.1", "::1", "localhost"};
  std::size_t max_response_bytes = 64 * 1024;  // more of an answer's body is not read
  std::uint64_t reconcile_ms = 500;            // how often queues are checked for push targets
  std::uint64_t poll_wait_ms = 2000;           // a slot's long poll on an idle queue
  // Channel webhooks: "PATTERN=URL;…" (channel_webhooks).
  std::string channel_webhooks;
  std::size_t webhook_queue = 1024;    // messages waiting per webhook; more are dropped (counted)
  std::uint64_t stop_grace_ms = 2000;  // how long stop() lets requests in flight finish
};

class PushDelivery {
 public:
  PushDelivery(Router& router, PushOptions options);
  ~PushDelivery();
  PushDelivery(const PushDelivery&) = delete;
  PushDelivery& operator=(const PushDelivery&) = delete;

  // Starts the thread: queues with a push target that this node owns are delivered, webhooks
  // subscribed.
  void start();
  // Stops taking new messages; requests in flight finish (their messages are acked or retried)
  // within stop_grace_ms, later ones are abandoned (their leases run out); the thread ends.
  void stop();
  // Looks at the queues now (a push target was set or removed).
  void kick();

  // The node's own listeners and etcd's endpoints ("host:port"): never a target, whatever
  // push_allowed_hosts says (checked where a target is set and again at each connect).
  void forbid(std::vector<std::string> endpoints);
  std::optional<Error> check_target(const PushTarget& target) const;
  std::string metrics_text() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace roost::broker
