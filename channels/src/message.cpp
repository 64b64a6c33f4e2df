#include "roost/channels/message.h"

#include <roost/wire/base64.h>

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

// Appends `s` as a JSON string literal.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

MessagePtr make_message(std::string channel, std::string data, std::uint64_t offset,
                        std::string epoch, std::int64_t timestamp_ms, ContentType content_type,
                        std::size_t audience) {
  auto m = std::allocate_shared<Message>(PooledAllocator<Message>());
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
                         std::int64_t timestamp_ms, std::size_t audience) {
  auto m = std::allocate_shared<Message>(PooledAllocator<Message>());
  m->kind = kind;
  m->subscribers = subscribers;
  m->channel = std::move(channel);
  m->timestamp_ms = timestamp_ms;
  m->audience = audience;
  return m;
}

std::shared_ptr<const std::string> Message::frame() const {
  std::call_once(frame_once_, [this] {
    if (kind != MessageKind::kData) {
      frame_ = std::make_shared<const std::string>(
          std::string(R"({"op":")") + (kind == MessageKind::kJoin ? "join" : "leave") +
          R"(","channel":")" + channel + R"(","subscribers":)" + std::to_string(subscribers) + "}");
      return;
    }
    // Channel names and epochs hold no character that JSON needs escaped (see subject.h).
    std::string f;
    f.reserve(data.size() + channel.size() + epoch.size() + 80);
    f += R"({"op":"message","channel":")";
    f += channel;
    f += R"(","data":)";
    switch (content_type) {
      case ContentType::kJson: f += data; break;
      case ContentType::kText: append_json_string(f, data); break;
      case ContentType::kBytes:
        f += '"';
        f += base64_encode(data);
        f += R"(","encoding":"base64)";
        f += '"';
        break;
    }
    f += R"(,"offset":)";
    f += std::to_string(offset);
    f += R"(,"epoch":")";
    f += epoch;
    f += "\"}";
    frame_ = std::make_shared<const std::string>(std::move(f));
  });
  return frame_;
}

std::shared_ptr<const std::string> Message::sse_frame() const {
  std::call_once(sse_once_, [this] {
    if (kind != MessageKind::kData) {
      sse_frame_ = std::make_shared<const std::string>(
          std::string("event: ") + (kind == MessageKind::kJoin ? "join" : "leave") + "\ndata: " + *frame() + "\n\n");
      return;
    }
    sse_frame_ = std::make_shared<const std::string>("id: " + epoch + ":" + std::to_string(offset) +
                                                     "\ndata: " + *frame() + "\n\n");
  });
  return sse_frame_;
}

}  // namespace roost::channels
