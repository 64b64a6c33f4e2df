// Subscriptions indexed by pattern tokens. Not thread-safe: the Hub guards it.
#pragma once

#include <roost/core/channel_types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace roost::channels {

class SubscriptionTrie {
 public:
  using Id = std::uint64_t;
  SubscriptionTrie();
  ~SubscriptionTrie();
  SubscriptionTrie(const SubscriptionTrie&) = delete;
  SubscriptionTrie& operator=(const SubscriptionTrie&) = delete;

  // REQUIRES: `pattern` is valid (validate_pattern).
  void insert(std::string_view pattern, Id id, std::shared_ptr<Subscriber> subscriber);
  bool remove(std::string_view pattern, Id id);
  // Every subscriber with a pattern matching `subject`, each once.
  std::vector<std::shared_ptr<Subscriber>> match(std::string_view subject) const;
  // Subscriptions whose pattern is exactly `subject` (no wildcard).
  std::size_t count_exact(std::string_view subject) const;
  std::size_t size() const { return size_; }

 private:
  struct Node;
  std::unique_ptr<Node> root_;
  std::size_t size_ = 0;
};

}  // namespace roost::channels
