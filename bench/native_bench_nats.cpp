// native_bench's NATS driver (libnats): JetStream with file storage for queues, core NATS for
// pub/sub.
#include "native_bench_common.h"

#include <nats/nats.h>

namespace native_bench {

// ---- NATS -------------------------------------------------------------------------------------

natsConnection* nats_connect(const Args& a) {
  natsConnection* nc = nullptr;
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  natsOptions_SetURL(opts, a.nats.c_str());
  natsOptions_SetMaxPendingMsgs(opts, 10'000'000);
  if (natsConnection_Connect(&nc, opts) != NATS_OK) {
    std::fprintf(stderr, "nats: cannot connect to %s\n", a.nats.c_str());
    std::exit(1);
  }
  natsOptions_Destroy(opts);
  return nc;
}

// Async publishes the server acknowledged (counted in the ack handler, not when sent).
void on_js_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr*, void* closure) {
  if (pa != nullptr)
    static_cast<std::atomic<std::uint64_t>*>(closure)->fetch_add(1, std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

jsCtx* nats_js(natsConnection* nc, std::int64_t max_pending, std::atomic<std::uint64_t>* acked = nullptr) {
  jsCtx* js = nullptr;
  jsOptions o;
  jsOptions_Init(&o);
  o.PublishAsync.MaxPending = max_pending;
  if (acked != nullptr) {
    o.PublishAsync.AckHandler = on_js_ack;
    o.PublishAsync.AckHandlerClosure = acked;
  }
  natsConnection_JetStream(&js, nc, &o);
  return js;
}

void nats_stream(jsCtx* js, const char* name, const char* subject) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  const char* subjects[] = {subject};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  js_DeleteStream(js, name, nullptr, &jerr);
  if (js_AddStream(&si, js, &cfg, nullptr, &jerr) != NATS_OK) {
    std::fprintf(stderr, "nats: cannot add stream %s (jetstream on? -js)\n", name);
    std::exit(1);
  }
  jsStreamInfo_Destroy(si);
}

// create = false: the stream exists already (the connections of one shape share it).
double nats_enqueue(const Args& a, std::size_t window, const std::string& tag, bool create) {
  natsConnection* nc = nats_connect(a);
  std::atomic<std::uint64_t> acked{0};
  jsCtx* js = nats_js(nc, static_cast<std::int64_t>(window), &acked);
  std::string id = tag.empty() ? std::to_string(window) : tag;
  std::string name = "ENQ" + id, subject = "enq." + id;
  if (create) nats_stream(js, name.c_str(), subject.c_str());
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(a.seconds);
  std::uint64_t sent = 0;
  while (Clock::now() < end) {
    if (js_PublishAsync(js, subject.c_str(), kBody.data(), static_cast<int>(kBody.size()), nullptr) !=
        NATS_OK)
      break;
    ++sent;
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 30'000;
  // Only what the server acknowledged counts, by the time the last ack came.
  if (js_PublishAsyncComplete(js, &po) != NATS_OK) {
    std::printf("FAILED nats_js_nofsync_enqueue_w%zu: not every publish was acknowledged in 30 s\n", window);
    ++g_failures;
  }
  double rate = static_cast<double>(acked.load()) / since(t0);
  if (acked.load() != sent) {
    std::printf("# nats_js enqueue w%zu: %llu sent, %llu acknowledged\n", window,
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(acked.load()));
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rate;
}

std::vector<double> nats_latency(const Args& a, int n) {
  natsConnection* nc = nats_connect(a);
  jsCtx* js = nats_js(nc, 1);
  nats_stream(js, "LAT", "lat");
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_Publish(&pa, js, "lat", kBody.data(), static_cast<int>(kBody.size()), nullptr, &jerr) != NATS_OK)
      break;
    jsPubAck_Destroy(pa);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return us;
}

double nats_consume(const Args& a, std::size_t prefill) {
  natsConnection* nc = nats_connect(a);
  jsCtx* js = nats_js(nc, 1000);
  nats_stream(js, "CONSUME", "consume");
  for (std::size_t i = 0; i < prefill; ++i) {
    js_PublishAsync(js, "consume", kBody.data(), static_cast<int>(kBody.size()), nullptr);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 30'000;
  js_PublishAsyncComplete(js, &po);
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Config.AckPolicy = js_AckAll;  // one ack per batch of 100 (its last message), as Roost's and Redis's
  if (js_PullSubscribe(&sub, js, "consume", "bench", nullptr, &so, &jerr) != NATS_OK) {
    std::fprintf(stderr, "nats: pull subscribe failed\n");
    std::exit(1);
  }
  auto t0 = Clock::now();
  std::uint64_t n = 0;
  while (n < prefill && since(t0) < a.seconds * 3) {
    natsMsgList list{};
    if (natsSubscription_Fetch(&list, sub, 100, 5000, &jerr) != NATS_OK) break;
    if (list.Count > 0) natsMsg_Ack(list.Msgs[list.Count - 1], nullptr);
    n += static_cast<std::uint64_t>(list.Count);
    natsMsgList_Destroy(&list);
  }
  natsConnection_Flush(nc);
  double rate = static_cast<double>(n) / since(t0);
  natsSubscription_Destroy(sub);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return rate;
}

struct NatsCounter {
  std::atomic<std::uint64_t>* got;
  std::atomic<std::int64_t>* last_ns;
  SeqCheck* check;  // this subscription's (its callbacks run one at a time)
};

void on_nats_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* c = static_cast<NatsCounter*>(closure);
  c->check->see(std::string_view(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
  c->got->fetch_add(1, std::memory_order_relaxed);
  c->last_ns->store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  natsMsg_Destroy(msg);
}

void nats_pubsub(const Args& a, int subs, std::uint64_t count, const std::string& name) {
  std::atomic<std::uint64_t> got{0};
  std::atomic<std::int64_t> last_ns{0};
  std::vector<SeqCheck> checks(static_cast<std::size_t>(subs));
  std::vector<NatsCounter> counters;
  for (auto& c : checks) counters.push_back(NatsCounter{&got, &last_ns, &c});
  std::vector<natsConnection*> conns;
  std::vector<natsSubscription*> subscriptions;
  std::string subject = "ps." + std::to_string(subs);
  for (int i = 0; i < subs; ++i) {
    conns.push_back(nats_connect(a));
    natsSubscription* s = nullptr;
    natsConnection_Subscribe(&s, conns.back(), subject.c_str(), on_nats_msg,
                             &counters[static_cast<std::size_t>(i)]);
    natsSubscription_SetPendingLimits(s, -1, -1);
    natsConnection_Flush(conns.back());
    subscriptions.push_back(s);
  }
  natsConnection* pub = nats_connect(a);
  auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    auto body = seq_body(i);
    natsConnection_Publish(pub, subject.c_str(), body.data(), static_cast<int>(body.size()));
    if (i % 5000 == 4999) natsConnection_Flush(pub);
  }
  natsConnection_Flush(pub);
  std::uint64_t want = count * static_cast<std::uint64_t>(subs);
  auto deadline = Clock::now() + 20s;
  while (got < want && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  double secs =
      std::chrono::duration<double>(Clock::time_point(Clock::duration(last_ns.load())) - t0).count();
  for (auto* s : subscriptions) natsSubscription_Unsubscribe(s);
  for (auto* c : conns) natsConnection_Close(c);  // no callback runs past here
  report_pubsub(name, PubSubRun{static_cast<double>(got.load()) / secs, want}, checks);
  for (auto* s : subscriptions) natsSubscription_Destroy(s);
  for (auto* c : conns) natsConnection_Destroy(c);
  natsConnection_Destroy(pub);
}

void nats_enqueue_stream(const Args& a, const std::string& tag) {
  natsConnection* nc = nats_connect(a);
  jsCtx* js = nats_js(nc, 1);
  nats_stream(js, ("ENQ" + tag).c_str(), ("enq." + tag).c_str());
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

void nats_shutdown() { nats_Close(); }

}  // namespace native_bench
