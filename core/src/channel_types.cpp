#include <roost/core/channel_types.h>

namespace roost::channels {

namespace {
// Messages are made and freed at the publish rate, mostly in batches on one thread (a publish
// batch made on the endpoint thread is freed there once sent). A Message with its shared_ptr
// control block is past malloc's fast bins and its per-thread cache holds 7 of a size, so a
// batch of hundreds took malloc's slow path (and its consolidation) for each. Each thread keeps
// up to kKeep freed blocks of that one size instead; a block may be freed on another thread
// than made it, and then serves that thread.
template <class T>
struct PooledAllocator {
  using value_type = T;
  PooledAllocator() = default;
  template <class U>
  PooledAllocator(const PooledAllocator<U>&) {}  // NOLINT: rebinding converts implicitly

  static constexpr std::size_t kKeep = 4096;
  struct Node {
    Node* next;
  };
  // Trivially destructible, so still usable while the thread's other thread_locals are being
  // destroyed (a block freed then goes back to operator delete).
  struct FreeList {
    Node* head;
    std::size_t size;
    bool closed;
  };
  static inline thread_local FreeList list_{nullptr, 0, false};
  struct Drain {
    ~Drain() {
      while (list_.head != nullptr) {
        Node* n = list_.head;
        list_.head = n->next;
        ::operator delete(n);
      }
      list_.size = 0;
      list_.closed = true;
    }
  };
  static inline thread_local Drain drain_;

  T* allocate(std::size_t n) {
    static_assert(sizeof(T) >= sizeof(Node));
    if (n == 1 && list_.head != nullptr) {
      Node* node = list_.head;
      list_.head = node->next;
      --list_.size;
      return reinterpret_cast<T*>(node);
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) {
    if (n == 1 && !list_.closed && list_.size < kKeep) {
      if (list_.size == 0) (void)&drain_;  // constructs it: the list is emptied at thread exit
      auto* node = reinterpret_cast<Node*>(p);
      node->next = list_.head;
      list_.head = node;
      ++list_.size;
      return;
    }
    ::operator delete(p);
  }
  template <class U>
  bool operator==(const PooledAllocator<U>&) const {
    return true;
  }
};

}  // namespace

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset, std::string epoch,
                        std::int64_t timestamp_ms, ContentType content_type, std::size_t audience,
                        bool relayed) {
  auto m = std::allocate_shared<Message>(PooledAllocator<Message>());
  m->relayed = relayed;
  m->channel = std::move(channel);
  m->data = std::move(data);
  m->content_type = content_type;
  m->offset = offset;
  m->epoch = std::move(epoch);
  m->timestamp_ms = timestamp_ms;
  m->audience = audience;
  return m;
}

MessagePtr make_presence(MessageKind kind, std::string channel, std::uint64_t subscribers,
                         std::int64_t timestamp_ms, std::size_t audience, std::string origin,
                         std::uint64_t origin_subscription, bool relayed) {
  auto m = std::allocate_shared<Message>(PooledAllocator<Message>());
  m->kind = kind;
  m->origin = std::move(origin);
  m->origin_subscription = origin_subscription;
  m->relayed = relayed;
  m->subscribers = subscribers;
  m->channel = std::move(channel);
  m->timestamp_ms = timestamp_ms;
  m->audience = audience;
  return m;
}

}  // namespace roost::channels
