// Prometheus text exposition (format 0.0.4), written by hand so that every module writes it the
// same way: one HELP and TYPE line per family, then its samples.
//
//   MetricsWriter w;
//   w.counter("roost_native_requests_total", "Requests handled.", requests);
//   w.family("roost_queue_depth", "gauge", "Messages per queue and state.");
//   w.sample("roost_queue_depth", {{"queue", name}, {"state", "ready"}}, ready);
//   std::string body = std::move(w).text();
//
// Not thread-safe: one writer per exposition.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace roost {

class MetricsWriter {
 public:
  using Label = std::pair<std::string_view, std::string_view>;

  // The HELP and TYPE lines of a family ("counter", "gauge", "histogram", "summary").
  void family(std::string_view name, std::string_view type, std::string_view help);
  // One sample of the family last declared (or of a family's _bucket/_sum/_count series). Label
  // values are escaped as the format requires.
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::initializer_list<Label> labels, std::uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, std::int64_t value);
  void sample(std::string_view name, double value) { sample(name, {}, value); }
  void sample(std::string_view name, std::uint64_t value) { sample(name, {}, value); }

  // A family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, std::uint64_t value);
  void gauge(std::string_view name, std::string_view help, double value);
  void gauge(std::string_view name, std::string_view help, std::uint64_t value);

  // A histogram family: cumulative buckets at `bounds` (each multiplied by `scale`, e.g. µs → s)
  // plus +Inf, then _sum (× scale) and _count. `buckets` has one more entry than `bounds` (the
  // overflow bucket), each counting its own range.
  void histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                 std::span<const std::uint64_t> buckets, double sum, std::uint64_t count, double scale);

  // Text written elsewhere (another module's exposition), appended as is.
  void append(std::string_view text) { out_ += text; }

  const std::string& text() const& { return out_; }
  std::string text() && { return std::move(out_); }

 private:
  void labels(std::initializer_list<Label> labels);
  template <class Number>
  void line(std::string_view name, std::initializer_list<Label> labels, Number value);
  std::string out_;
};

}  // namespace roost
