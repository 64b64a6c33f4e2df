// The target side of shard moves (docs/mesh.md, "Moving shards"): the steps another node's
// ShardMover sends over the mesh socket — message bodies while the source still serves the shard,
// then, once it closed it, the queues' records, the outbox marks and the objects' rows — kept per
// move until `finish` builds the queues in one transaction and takes the shard over in etcd (a new
// epoch, on a thread of its own: off the endpoint's), or `abort` forgets them. A move idle for five
// minutes is forgotten when the next one starts; one holds at most 1 GiB.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <roost/broker/mesh.h>
#include <roost/core/error.h>
#include <roost/core/mesh_types.h>
#include <roost/core/thread_annotations.h>

#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace roost::durable {
class QueueStore;
class MailboxStore;
class OutboxStore;
class Committer;
}  // namespace roost::durable

namespace roost::broker {

class ActorRuntime;

class ShardReceiver {
 public:
  ShardReceiver(durable::QueueStore& queues, durable::MailboxStore& mailboxes, durable::OutboxStore& outbox,
                durable::Committer& committer, ActorRuntime& actors, const std::atomic<Mesh*>& mesh)
      : queues_(queues),
        mailboxes_(mailboxes),
        outbox_(outbox),
        committer_(committer),
        actors_(actors),
        mesh_(mesh) {}
  ShardReceiver(const ShardReceiver&) = delete;
  ShardReceiver& operator=(const ShardReceiver&) = delete;

  // One step of a move another node makes to this one.
  void on_copy(ShardCopy step, std::string payload, Callback<std::uint64_t> done);
  // Waits for a switch in etcd under way.
  void stop() { etcd_pool_.join(); }
  std::uint64_t moved_in() const { return moved_in_.load(); }
  std::uint64_t bytes_in() const { return bytes_in_.load(); }

 private:
  struct Session;
  void unmark(std::uint32_t shard);

  durable::QueueStore& queues_;
  durable::MailboxStore& mailboxes_;
  durable::OutboxStore& outbox_;
  durable::Committer& committer_;
  ActorRuntime& actors_;
  const std::atomic<Mesh*>& mesh_;
  mutable Mutex mu_;
  std::map<std::uint64_t, std::shared_ptr<Session>> sessions_ ROOST_GUARDED_BY(mu_);
  boost::asio::thread_pool etcd_pool_{1};  // the switch in etcd, off the endpoint thread
  std::atomic<std::uint64_t> moved_in_{0}, bytes_in_{0};
};

}  // namespace roost::broker
