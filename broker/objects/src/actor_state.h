// The runtime's private data: an object in memory (its FIFO, overlay, sockets), a work item, a
// turn's effects, a registered class, the runtime's counters. Private to broker/src.
#pragma once

#include <roost/broker/actor_runtime.h>
#include <roost/core/queue_types.h>
#include <roost/durable/mailbox_store.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace roost::broker {

using durable::MailKind;
using durable::MailRecord;

struct ActorRuntime::Klass {
  std::string name;
  ActorFactory factory;
  ActorClassOptions options;
  // Served by remote hosts: while none is connected, its objects' items wait (calls and connects
  // are refused at once) instead of running.
  std::atomic<bool> available{true};
  AsyncTurnDriver* driver = nullptr;  // runs its turns elsewhere (remote classes)
};

struct ActorRuntime::Metrics {
  std::atomic<std::uint64_t> turns{0}, turns_failed{0}, activations{0}, hibernations{0}, dead_lettered{0},
      rollbacks{0}, calls_timed_out{0}, auto_responses{0}, tells{0}, direct_turns{0}, mail_from_disk{0},
      workers_added{0}, frames_dropped{0};
};

// An answer that is given exactly once (calls and connects: a reply, an error or a timeout race).
template <class T>
class Once {
 public:
  explicit Once(Callback<T> cb) : cb_(std::move(cb)) {}
  bool finish(Result<T> r) {
    Callback<T> cb;
    {
      MutexLock lock(mu_);
      if (!cb_) return false;
      cb = std::move(cb_);
      cb_ = nullptr;
    }
    cb(std::move(r));
    return true;
  }

 private:
  Mutex mu_;
  Callback<T> cb_ ROOST_GUARDED_BY(mu_);
};

struct ActorRuntime::CallWait : Once<ObjectReply> {
  using Once<ObjectReply>::Once;
  // Its entry in call_deadlines_, dropped as soon as the call is answered; under the
  // runtime's mu_ (which a CallWait cannot name).
  std::multimap<std::int64_t, std::weak_ptr<CallWait>>::iterator deadline;
  bool has_deadline = false;
};

struct ActorRuntime::Item {
  enum class Kind { kMail, kCall, kConnect, kSocketMessage, kDisconnect };
  Kind kind = Kind::kMail;
  std::uint64_t seq = 0;      // kMail
  MailRecord mail;            // kMail
  bool data_on_disk = false;  // kMail: mail.data is read from the mailbox when the turn comes
  std::string data;           // kCall request, kSocketMessage text, kDisconnect close reason
  ContentType type = ContentType::kJson;
  std::uint64_t socket = 0;                       // kConnect, kSocketMessage, kDisconnect
  std::uint16_t code = 0;                         // kDisconnect
  std::vector<std::string> left_tags;             // kDisconnect: the socket's tags and attachment,
  std::string left_attachment;                    // readable in on_disconnect
  std::shared_ptr<CallWait> reply;                // kCall
  std::vector<std::string> chain;                 // kCall: objects (okeys) waiting on it, outermost first
  std::optional<ObjectHttpRequest> http;          // kCall: an HTTP request for on_fetch instead
  std::shared_ptr<Once<std::uint64_t>> attached;  // kConnect
  std::shared_ptr<ObjectSocket> sink;             // kConnect
  ObjectConnectRequest request;                   // kConnect
  std::uint32_t attempt = 1;
};

struct ActorRuntime::Effects {
  std::map<std::string, std::optional<std::string>, std::less<>> writes;
  std::vector<std::pair<std::uint64_t, std::string>> sends;
  struct Close {
    std::uint64_t socket;
    std::uint16_t code;
    std::string reason;
  };
  std::vector<Close> closes;
  struct Publish {
    std::string subject, data;
    ContentType type;
  };
  std::vector<Publish> publishes;
  std::map<std::string, std::vector<NewMessage>> enqueues;
  struct Tell {
    std::string okey, cls, name;
    MailRecord mail;
    std::uint64_t seq = 0;  // set by apply
    bool remote = false;    // set by apply: another node's shard (written to the outbox)
  };
  std::vector<Tell> tells;
  struct Alarm {
    std::string name;
    bool set = false;
    std::int64_t due_ms = 0;
    std::uint64_t every_ms = 0;
  };
  std::vector<Alarm> alarms;
  std::vector<std::pair<std::string, bool>> subscriptions;
  std::optional<ObjectReply> reply;
  std::map<std::uint64_t, std::vector<std::string>> tags;
  std::map<std::uint64_t, std::string> attachments;
  std::optional<std::pair<std::string, std::string>> auto_response;
  std::uint64_t consume_seq = 0;

  bool adds_data() const {
    if (!tells.empty() || !enqueues.empty()) return true;
    for (const auto& [k, v] : writes) {
      if (v) return true;
    }
    for (const auto& a : alarms) {
      if (a.set) return true;
    }
    return false;
  }
};

struct ActorRuntime::Obj {
  std::string okey, cls, name;
  std::shared_ptr<const Klass> klass;  // kept while the object lives, also if the class is forgotten

  Mutex mu;
  std::deque<Item> queue ROOST_GUARDED_BY(mu);
  std::deque<Item> inflight ROOST_GUARDED_BY(mu);       // turns submitted, not yet committed, in order
  bool running ROOST_GUARDED_BY(mu) = false;            // a worker owns `instance`
  bool reset_actor ROOST_GUARDED_BY(mu) = false;        // drop the instance before the next turn
  std::int64_t blocked_until ROOST_GUARDED_BY(mu) = 0;  // backoff after a failure
  std::size_t requeued ROOST_GUARDED_BY(mu) = 0;        // items put back at the front by the last rollback
  std::atomic<std::uint64_t> generation{0};             // bumped by a rollback (written under mu)
  std::uint64_t next_turn ROOST_GUARDED_BY(mu) = 1;
  std::uint32_t failed_commits ROOST_GUARDED_BY(mu) = 0;  // rollbacks in a row (backoff grows)
  struct Pending {
    std::optional<std::string> value;
    std::uint64_t turn;
  };
  std::map<std::string, Pending, std::less<>> overlay ROOST_GUARDED_BY(mu);  // uncommitted writes
  std::int64_t last_active ROOST_GUARDED_BY(mu) = 0;
  struct SocketEntry {
    std::shared_ptr<ObjectSocket> sink;
    std::vector<std::string> tags;
    std::string attachment;
  };
  std::map<std::uint64_t, SocketEntry> sockets ROOST_GUARDED_BY(mu);
  std::uint64_t mail_bytes ROOST_GUARDED_BY(mu) = 0;  // data of waiting mail held in `queue`
  std::uint64_t last_seq ROOST_GUARDED_BY(mu) = 0;    // highest mailbox seq queued (dedups reloads)
  bool evicted ROOST_GUARDED_BY(mu) = false;          // its shard moved away: it never runs here again
  std::string auto_request ROOST_GUARDED_BY(mu);
  std::string auto_response ROOST_GUARDED_BY(mu);

  std::unique_ptr<Actor> instance;  // owned by the running worker (or the sweeper when idle)
};

}  // namespace roost::broker
