// The shard mover's writes, shared by its two sides (shard_mover.cpp: the source;
// shard_receiver.cpp: the target): a moved shard's outbox marks, its move mark, its objects' rows.
#pragma once

#include <roost/core/error.h>
#include <roost/durable/committer.h>
#include <roost/durable/mailbox_store.h>
#include <roost/durable/outbox_store.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace roost::broker::shard_moves {

// (target) The outbox marks of a moved shard: each origin's last applied effect, never lowered.
class MarksOp final : public durable::Op {
 public:
  MarksOp(durable::OutboxStore& outbox, std::uint32_t shard,
          std::vector<std::pair<std::string, std::uint64_t>> marks, durable::OutboxStore::MoveMark move,
          Callback<std::uint64_t> done)
      : outbox_(outbox),
        shard_(shard),
        marks_(std::move(marks)),
        move_(std::move(move)),
        done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    for (const auto& [origin, seq] : marks_) {
      if (outbox_.applied_in(ctx.txn, origin, shard_) < seq)
        outbox_.set_applied_in(ctx.txn, origin, shard_, seq);
    }
    // From here until the switch is settled, a restart keeps the shard closed (see settle()).
    outbox_.set_move_mark_in(ctx.txn, move_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    done_(marks_.size());
  }

 private:
  durable::OutboxStore& outbox_;
  std::uint32_t shard_;
  std::vector<std::pair<std::string, std::uint64_t>> marks_;
  durable::OutboxStore::MoveMark move_;
  Callback<std::uint64_t> done_;
};

// A shard move's mark (OutboxStore::MoveMark) written, or (nullopt) removed.
class MoveMarkOp final : public durable::Op {
 public:
  MoveMarkOp(durable::OutboxStore& outbox, std::uint32_t shard,
             std::optional<durable::OutboxStore::MoveMark> mark, Callback<std::uint64_t> done)
      : outbox_(outbox), shard_(shard), mark_(std::move(mark)), done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    if (mark_)
      outbox_.set_move_mark_in(ctx.txn, *mark_);
    else
      outbox_.clear_move_mark_in(ctx.txn, shard_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    done_(1);
  }

 private:
  durable::OutboxStore& outbox_;
  std::uint32_t shard_;
  std::optional<durable::OutboxStore::MoveMark> mark_;
  Callback<std::uint64_t> done_;
};

// Test-only crash points: with ROOST_FAILPOINT=NAME the process exits at NAME at once, as a kill -9
// there would (tests/integration/mesh_test.cpp).
inline bool failpoint(std::string_view name) {
  static const char* const chosen = std::getenv("ROOST_FAILPOINT");
  return chosen != nullptr && name == chosen;
}

// (target) Rows of a moved shard's objects, written; or (either side) those objects' rows deleted.
class ObjectsOp final : public durable::Op {
 public:
  ObjectsOp(durable::MailboxStore& store, std::vector<std::string> chunks, std::vector<std::string> drop,
            Callback<std::set<std::string>> done)
      : store_(store), chunks_(std::move(chunks)), drop_(std::move(drop)), done_(std::move(done)) {}
  void apply(durable::WriteContext& ctx) override {
    okeys_.clear();
    bad_ = false;
    for (const auto& c : chunks_) {  // all checked before anything is written
      if (!durable::MailboxStore::chunk_objects(c)) {
        bad_ = true;
        return;
      }
    }
    for (const auto& c : chunks_) store_.import_in(ctx.txn, c, &okeys_);
    if (!drop_.empty()) store_.drop_in(ctx.txn, drop_);
  }
  void complete(const Error* error) override {
    if (error != nullptr) return done_(std::unexpected(*error));
    if (bad_) return done_(std::unexpected(Error{ErrorCode::MALFORMED, "an objects step is malformed"}));
    done_(std::move(okeys_));
  }

 private:
  durable::MailboxStore& store_;
  std::vector<std::string> chunks_, drop_;
  Callback<std::set<std::string>> done_;
  std::set<std::string> okeys_;
  bool bad_ = false;
};

}  // namespace roost::broker::shard_moves
