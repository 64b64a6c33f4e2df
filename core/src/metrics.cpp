#include <roost/core/metrics.h>

#include <cstdio>

namespace roost {

namespace {

// Doubles as C's %g (six significant digits), the way the expositions have always printed them.
void append_number(std::string& out, double v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%g", v);
  out.append(buf, static_cast<std::size_t>(n));
}

void append_number(std::string& out, std::uint64_t v) { out += std::to_string(v); }
void append_number(std::string& out, std::int64_t v) { out += std::to_string(v); }

}  // namespace

void MetricsWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void MetricsWriter::labels(std::initializer_list<Label> labels) {
  if (labels.size() == 0) return;
  out_ += '{';
  bool first = true;
  for (const auto& [key, value] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += key;
    out_ += "=\"";
    for (char c : value) {
      switch (c) {
        case '\\': out_ += "\\\\"; break;
        case '"': out_ += "\\\""; break;
        case '\n': out_ += "\\n"; break;
        default: out_ += c;
      }
    }
    out_ += '"';
  }
  out_ += '}';
}

template <class Number>
void MetricsWriter::line(std::string_view name, std::initializer_list<Label> l, Number value) {
  out_ += name;
  labels(l);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l, double value) {
  line(name, l, value);
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l, std::uint64_t value) {
  line(name, l, value);
}

void MetricsWriter::sample(std::string_view name, std::initializer_list<Label> l, std::int64_t value) {
  line(name, l, value);
}

void MetricsWriter::counter(std::string_view name, std::string_view help, std::uint64_t value) {
  family(name, "counter", help);
  sample(name, value);
}

void MetricsWriter::gauge(std::string_view name, std::string_view help, double value) {
  family(name, "gauge", help);
  sample(name, value);
}

void MetricsWriter::gauge(std::string_view name, std::string_view help, std::uint64_t value) {
  family(name, "gauge", help);
  sample(name, value);
}

void MetricsWriter::histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                              std::span<const std::uint64_t> buckets, double sum, std::uint64_t count,
                              double scale) {
  family(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  char le[32];
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += buckets[i];
    std::snprintf(le, sizeof le, "%g", bounds[i] * scale);
    sample(bucket, {{"le", le}}, cumulative);
  }
  if (buckets.size() > bounds.size()) cumulative += buckets[bounds.size()];
  sample(bucket, {{"le", "+Inf"}}, cumulative);
  sample(std::string(name) + "_sum", sum * scale);
  sample(std::string(name) + "_count", count);
}

}  // namespace roost
