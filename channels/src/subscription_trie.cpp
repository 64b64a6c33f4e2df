#include "roost/channels/subscription_trie.h"

#include <algorithm>
#include <unordered_set>

#include "roost/core/subject.h"

namespace roost::channels {

struct SubscriptionTrie::Node {
  std::unordered_map<std::string, std::unique_ptr<Node>> children;  // tokens, "*" and ">"
  std::vector<std::pair<Id, std::shared_ptr<Subscriber>>> subs;     // patterns ending here
  bool empty() const { return children.empty() && subs.empty(); }
};

SubscriptionTrie::SubscriptionTrie() : root_(std::make_unique<Node>()) {}
SubscriptionTrie::~SubscriptionTrie() = default;

void SubscriptionTrie::insert(std::string_view pattern, Id id, std::shared_ptr<Subscriber> sub) {
  Node* n = root_.get();
  for (auto t : split_tokens(pattern)) {
    auto& child = n->children[std::string(t)];
    if (!child) child = std::make_unique<Node>();
    n = child.get();
  }
  n->subs.emplace_back(id, std::move(sub));
  ++size_;
}

bool SubscriptionTrie::remove(std::string_view pattern, Id id) {
  auto tokens = split_tokens(pattern);
  std::vector<std::pair<Node*, std::string>> path;
  Node* n = root_.get();
  for (auto t : tokens) {
    auto it = n->children.find(std::string(t));
    if (it == n->children.end()) return false;
    path.emplace_back(n, std::string(t));
    n = it->second.get();
  }
  auto it = std::find_if(n->subs.begin(), n->subs.end(), [id](const auto& e) { return e.first == id; });
  if (it == n->subs.end()) return false;
  n->subs.erase(it);
  --size_;
  // Prune nodes left empty, deepest first.
  for (auto p = path.rbegin(); p != path.rend(); ++p) {
    auto child = p->first->children.find(p->second);
    if (!child->second->empty()) break;
    p->first->children.erase(child);
  }
  return true;
}

std::size_t SubscriptionTrie::count_exact(std::string_view subject) const {
  const Node* n = root_.get();
  for (auto t : split_tokens(subject)) {
    auto it = n->children.find(std::string(t));
    if (it == n->children.end()) return 0;
    n = it->second.get();
  }
  return n->subs.size();
}

namespace {
void collect(const auto* node, const std::vector<std::string_view>& tokens, std::size_t i,
             std::vector<std::shared_ptr<Subscriber>>& out) {
  if (i == tokens.size()) {
    for (const auto& e : node->subs) out.push_back(e.second);
    return;
  }
  const auto& ch = node->children;
  if (auto gt = ch.find(">"); gt != ch.end()) {
    for (const auto& e : gt->second->subs) out.push_back(e.second);
  }
  if (auto star = ch.find("*"); star != ch.end()) collect(star->second.get(), tokens, i + 1, out);
  if (auto exact = ch.find(std::string(tokens[i])); exact != ch.end()) {
    collect(exact->second.get(), tokens, i + 1, out);
  }
}
}  // namespace

std::vector<std::shared_ptr<Subscriber>> SubscriptionTrie::match(std::string_view subject) const {
  std::vector<std::shared_ptr<Subscriber>> out;
  collect(root_.get(), split_tokens(subject), 0, out);
  if (out.size() > 1) {
    // A subscriber with two matching patterns gets the message once.
    std::unordered_set<Subscriber*> seen;
    std::erase_if(out, [&](const auto& s) { return !seen.insert(s.get()).second; });
  }
  return out;
}

}  // namespace roost::channels
