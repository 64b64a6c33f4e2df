// MeshRouter, what the whole mesh answers: a channel's presence and the list of queues, asked of
// every live peer and merged with this node's own as the answers come.
#include "roost/broker/mesh_router.h"

#include "mesh_links.h"

#include <roost/broker/mesh.h>
#include <roost/core/log.h>
#include <roost/core/thread_annotations.h>

#include <functional>
#include <map>
#include <memory>

namespace roost::broker {

namespace {
// Asks every link (`ask`) and merges each answer into `acc` as it comes, with this node's own
// (`mine`); answers `done(acc)` once all have. A peer that does not answer adds nothing (logged).
template <class T, class Acc>
void gather(const char* what, const std::vector<std::shared_ptr<PeerLink>>& links,
            std::function<void(PeerLink&, Callback<T>)> ask, T mine, std::function<void(Acc&, T)> merge,
            Callback<Acc> done) {
  struct State {
    Mutex mu;
    Acc acc ROOST_GUARDED_BY(mu);
    std::size_t waiting ROOST_GUARDED_BY(mu) = 0;
    std::function<void(Acc&, T)> merge;
    Callback<Acc> done;
    void add(T part) {
      Acc all;
      {
        MutexLock lock(mu);
        merge(acc, std::move(part));
        if (--waiting != 0) return;
        all = std::move(acc);
      }
      done(std::move(all));
    }
  };
  auto st = std::make_shared<State>();
  st->merge = std::move(merge);
  st->done = std::move(done);
  {
    MutexLock lock(st->mu);
    st->waiting = links.size() + 1;
  }
  for (const auto& link : links) {
    ask(*link, [st, what, url = link->url()](Result<T> r) {
      if (!r) module_logger("mesh")->warn("{}: {} did not answer: {}", what, url, r.error().message);
      st->add(r ? std::move(*r) : T{});
    });
  }
  st->add(std::move(mine));
}
}  // namespace

void MeshRouter::presence_async(std::string channel, Callback<channels::Presence> done) {
  gather<channels::Presence, channels::Presence>(
      "presence", links_->live(),
      [channel](PeerLink& l, Callback<channels::Presence> d) { l.presence(channel, std::move(d)); },
      local_.presence(channel),
      [](channels::Presence& sum, channels::Presence p) {
        sum.subscribers += p.subscribers;
        sum.direct += p.direct;
      },
      std::move(done));
}

void MeshRouter::list_queues_async(Callback<std::vector<QueueInfo>> done) {
  using Queues = std::vector<QueueInfo>;
  gather<Queues, std::map<std::string, QueueInfo>>(
      "queue list", links_->live(), [](PeerLink& l, Callback<Queues> d) { l.list_queues(std::move(d)); },
      local_.list_queues(),
      [](std::map<std::string, QueueInfo>& by_name, Queues queues) {
        for (auto& q : queues) by_name.try_emplace(q.name, std::move(q));
      },
      [done = std::move(done)](Result<std::map<std::string, QueueInfo>> by_name) mutable {
        Queues all;
        for (auto& [name, q] : *by_name) all.push_back(std::move(q));
        done(std::move(all));
      });
}

}  // namespace roost::broker
