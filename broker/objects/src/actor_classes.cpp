// ActorRuntime, its classes: names checked, classes registered (at start, or by remote hosts while
// the node runs, with what waited for them), a remote class's availability, and forgetting one.
#include "roost/broker/actor_runtime.h"

#include "actor_state.h"

#include <roost/core/log.h>
#include <roost/durable/mailbox_store.h>

#include <stdexcept>

namespace roost::broker {

using durable::MailboxStore;
using durable::PendingMail;

std::optional<Error> ActorRuntime::validate_class(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return Error{ErrorCode::INVALID_NAME, "object class names are 1 to 64 characters"};
  }
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) {
      return Error{ErrorCode::INVALID_NAME,
                   "object class '" + std::string(name) + "' may hold only A-Z a-z 0-9 - _"};
    }
  }
  return std::nullopt;
}

std::optional<Error> ActorRuntime::validate_name(std::string_view name) {
  if (name.empty() || name.size() > 256) {
    return Error{ErrorCode::INVALID_NAME, "object names are 1 to 256 bytes"};
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '/') {
      return Error{ErrorCode::INVALID_NAME, "object names hold no control characters and no '/'"};
    }
  }
  return std::nullopt;
}

std::optional<Error> ActorRuntime::check(std::string_view cls, std::string_view name) const {
  if (auto e = validate_class(cls)) return e;
  if (!has_class(cls)) {
    return Error{ErrorCode::CLASS_NOT_FOUND, "no actor class '" + std::string(cls) + "' on this node"};
  }
  return validate_name(name);
}

void ActorRuntime::register_class(std::string name, ActorFactory factory, ActorClassOptions options,
                                  AsyncTurnDriver* driver) {
  if (started_) throw std::logic_error("register actor classes before the node starts");
  if (auto e = validate_class(name)) throw std::invalid_argument(e->message);
  if (options.dead_letter_queue.empty()) options.dead_letter_queue = "dead." + name;
  WriterLock lock(classes_mu_);
  if (classes_.contains(name)) throw std::invalid_argument("actor class '" + name + "' registered twice");
  auto k = std::make_shared<Klass>(name, std::move(factory), std::move(options));
  k->driver = driver;
  classes_.emplace(std::move(name), std::move(k));
}

bool ActorRuntime::add_class(std::string name, ActorFactory factory, ActorClassOptions options,
                             AsyncTurnDriver* driver) {
  if (!started_) {
    if (has_class(name)) return false;
    register_class(std::move(name), std::move(factory), std::move(options), driver);
    return true;
  }
  if (auto e = validate_class(name)) throw std::invalid_argument(e->message);
  if (options.dead_letter_queue.empty()) options.dead_letter_queue = "dead." + name;
  {
    WriterLock lock(classes_mu_);
    if (classes_.contains(name)) return false;
    auto k = std::make_shared<Klass>(name, std::move(factory), std::move(options));
    k->driver = driver;
    classes_.emplace(name, std::move(k));
  }
  // What waited for this class: its durable subscriptions, and its mail on disk. A tell that
  // commits meanwhile may be both in the scan and delivered by its commit: deliver_mail drops the
  // second by its seq.
  for (auto& [ref, pattern] : store_.all_subscriptions()) {
    if (ref.object_class != name) continue;
    subscribe_object(MailboxStore::object_key(ref.object_class, ref.name), ref.object_class, ref.name,
                     pattern);
  }
  auto pending = store_.all_pending(options_.mail_memory_bytes);
  std::erase_if(pending, [&](const PendingMail& m) { return m.object.object_class != name; });
  module_logger("actors")->info("actor class {} added: {} messages waiting in its mailboxes", name,
                                pending.size());
  deliver_mail(std::move(pending));
  return true;
}

std::shared_ptr<ActorRuntime::Klass> ActorRuntime::find_class(std::string_view name) const {
  ReaderLock lock(classes_mu_);
  auto it = classes_.find(std::string(name));
  return it == classes_.end() ? nullptr : it->second;
}

bool ActorRuntime::forget_class(const std::string& name) {
  MutexLock lock(mu_);  // objects are made under mu_: none of the class appears meanwhile
  {
    ReaderLock classes(classes_mu_);
    auto it = classes_.find(name);
    if (it == classes_.end() || it->second->driver == nullptr || it->second->available.load()) return false;
  }
  for (const auto& [okey, obj] : objects_) {
    if (obj->cls == name) return false;
  }
  if (store_.class_has_work(name)) return false;
  WriterLock classes(classes_mu_);
  classes_.erase(name);
  module_logger("actors")->info("actor class {} forgotten: no host serves it and nothing waits for it", name);
  return true;
}

bool ActorRuntime::has_class(std::string_view name) const { return find_class(name) != nullptr; }

std::optional<Error> ActorRuntime::refuse_unserved(const std::string& cls) const {
  auto k = find_class(cls);
  if (k != nullptr && !k->available.load()) {
    return Error{ErrorCode::UNAVAILABLE, "no host serves object class '" + cls + "' now"};
  }
  return std::nullopt;
}

void ActorRuntime::set_class_available(const std::string& name, bool available) {
  auto k = find_class(name);
  if (k == nullptr) return;
  if (k->available.exchange(available) == available || !available) return;
  // Its objects' waiting items run now.
  MutexLock lock(mu_);
  for (auto& [okey, obj] : objects_) {
    if (obj->klass != k) continue;
    MutexLock olock(obj->mu);
    schedule_locked(obj);
  }
}

}  // namespace roost::broker
