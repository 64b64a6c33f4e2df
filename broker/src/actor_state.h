// The runtime's private data: an object in memory (its FIFO, overlay, sockets), a work item, a
// turn's effects, a registered class, the runtime's counters. Private to broker/src.
#pragma once

#include <roost/broker/actor_runtime.h>
#include <roost/durable/mailbox_store.h>
#include <roost/core/queue_types.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace roost::broker {

using durable::MailKind;
using durable::MailRecord;

struct ActorRuntime::Klass {
  std::string name;
  ActorFactory factory;
  ActorClassOptions options;
};

struct ActorRuntime::Metrics {
  std::atomic<std::uint64_t> turns{0}, turns_failed{0}, activations{0}, hibernations{0},
      dead_lettered{0}, rollbacks{0}, calls_timed_out{0}, auto_responses{0}, tells{0},
      direct_turns{0}, mail_from_disk{0}, workers_added{0};
};

// An answer that is given exactly once (calls and connects: a reply, an error or a timeout race).
template <class T>
class Once {
 public:
  explicit Once(Callback<T> cb) : cb_(std::move(cb)) {}
  bool finish(Result<T> r) {
    Callback<T> cb;
    {
      std::lock_guard lock(mu_);
      if (!cb_) return false;
      cb = std::move(cb_);
      cb_ = nullptr;
    }
    cb(std::move(r));
    return true;
  }

 private:
  std::mutex mu_;
  Callback<T> cb_;  // GUARDED_BY(mu_)
};

struct ActorRuntime::CallWait : Once<ObjectReply> {
  using Once<ObjectReply>::Once;
  // Its entry in call_deadlines_, dropped as soon as the call is answered. GUARDED_BY(rt.mu_)
  std::multimap<std::int64_t, std::weak_ptr<CallWait>>::iterator deadline;
  bool has_deadline = false;
};

struct ActorRuntime::Item {
  enum class Kind { kMail, kCall, kConnect, kSocketMessage, kDisconnect };
  Kind kind = Kind::kMail;
  std::uint64_t seq = 0;  // kMail
  MailRecord mail;        // kMail
  bool data_on_disk = false;  // kMail: mail.data is read from the mailbox when the turn comes
  std::string data;       // kCall request, kSocketMessage text
  ContentType type = ContentType::kJson;
  std::uint64_t socket = 0;  // kConnect, kSocketMessage, kDisconnect
  std::uint16_t code = 0;    // kDisconnect
  std::shared_ptr<CallWait> reply;                // kCall
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
  const Klass* klass = nullptr;

  std::mutex mu;
  std::deque<Item> queue;     // GUARDED_BY(mu)
  std::deque<Item> inflight;  // turns submitted, not yet committed, in order; GUARDED_BY(mu)
  bool running = false;       // a worker owns `instance`; GUARDED_BY(mu)
  bool reset_actor = false;   // drop the instance before the next turn; GUARDED_BY(mu)
  std::int64_t blocked_until = 0;  // backoff after a failure; GUARDED_BY(mu)
  std::size_t requeued = 0;  // items put back at the front by the last rollback; GUARDED_BY(mu)
  std::atomic<std::uint64_t> generation{0};  // bumped by a rollback (written under mu)
  std::uint64_t next_turn = 1;               // GUARDED_BY(mu)
  std::uint32_t failed_commits = 0;  // rollbacks in a row (backoff grows); GUARDED_BY(mu)
  struct Pending {
    std::optional<std::string> value;
    std::uint64_t turn;
  };
  std::map<std::string, Pending, std::less<>> overlay;  // uncommitted writes; GUARDED_BY(mu)
  std::int64_t last_active = 0;                         // GUARDED_BY(mu)
  struct SocketEntry {
    std::shared_ptr<ObjectSocket> sink;
    std::vector<std::string> tags;
    std::string attachment;
  };
  std::map<std::uint64_t, SocketEntry> sockets;  // GUARDED_BY(mu)
  std::uint64_t mail_bytes = 0;  // data of waiting mail held in `queue`; GUARDED_BY(mu)
  std::string auto_request, auto_response;       // GUARDED_BY(mu)

  std::unique_ptr<Actor> instance;  // owned by the running worker (or the sweeper when idle)
};

}  // namespace roost::broker
