#include <roost/core/metrics.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>

using roost::MetricsWriter;

TEST_CASE("the metrics writer writes Prometheus text: HELP and TYPE, then samples", "[core]") {
  MetricsWriter w;
  w.counter("roost_x_total", "Things done.", std::uint64_t{42});
  w.gauge("roost_depth", "How deep.", std::uint64_t{7});
  w.family("roost_queue_ready", "gauge", "Ready messages.");
  w.sample("roost_queue_ready", {{"queue", "jobs"}}, std::uint64_t{5});
  w.sample("roost_queue_ready", {{"queue", "a\"b\\c\nd"}, {"state", "x"}}, std::int64_t{-1});
  CHECK(w.text() ==
        "# HELP roost_x_total Things done.\n# TYPE roost_x_total counter\nroost_x_total 42\n"
        "# HELP roost_depth How deep.\n# TYPE roost_depth gauge\nroost_depth 7\n"
        "# HELP roost_queue_ready Ready messages.\n# TYPE roost_queue_ready gauge\n"
        "roost_queue_ready{queue=\"jobs\"} 5\n"
        "roost_queue_ready{queue=\"a\\\"b\\\\c\\nd\",state=\"x\"} -1\n");
}

TEST_CASE("the metrics writer's histograms are cumulative, scaled, and end with +Inf, _sum, _count",
          "[core]") {
  static constexpr std::array<double, 3> kBounds = {1, 10, 100};
  const std::array<std::uint64_t, 4> buckets = {2, 3, 0, 1};  // the last: over 100
  MetricsWriter w;
  w.histogram("roost_commit_seconds", "Latency.", kBounds, buckets, 250.0, 6, 1e-6);
  CHECK(std::move(w).text() ==
        "# HELP roost_commit_seconds Latency.\n# TYPE roost_commit_seconds histogram\n"
        "roost_commit_seconds_bucket{le=\"1e-06\"} 2\n"
        "roost_commit_seconds_bucket{le=\"1e-05\"} 5\n"
        "roost_commit_seconds_bucket{le=\"0.0001\"} 5\n"
        "roost_commit_seconds_bucket{le=\"+Inf\"} 6\n"
        "roost_commit_seconds_sum 0.00025\n"
        "roost_commit_seconds_count 6\n");
}
