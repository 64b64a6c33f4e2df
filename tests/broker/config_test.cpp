#include <roost/broker/config.h>
#include <roost/broker/push_delivery.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

#include "../support/temp_dir.h"

using roost::broker::ConfigError;
using roost::broker::load_config;

namespace {
// Sets an environment variable for the life of the object.
struct EnvVar {
  EnvVar(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~EnvVar() { unsetenv(name_); }
  const char* name_;
};
}  // namespace

TEST_CASE("embedded defaults", "[broker]") {
  auto c = load_config({});
  CHECK(c.data_dir == "./roost-data");
  CHECK(c.http_listen == "127.0.0.1:8080");
  CHECK(c.durability == "sync");
  CHECK(c.wal);
  CHECK(c.inline_commits == "endpoint");
  CHECK(c.wal_writeback_ms == 2);
  CHECK(c.max_message_bytes == 1u << 20);
  CHECK(c.auto_create_queues);
  auto lmdb = load_config({"--wal", "false", "--inline-commits", "all"});
  CHECK_FALSE(lmdb.wal);
  CHECK(lmdb.inline_commits == "all");
}

TEST_CASE("file < environment < flags", "[broker]") {
  roost::test::TempDir dir;
  auto file = dir.path() / "roost.toml";
  std::ofstream(file) << "data_dir = \"/from/file\"\nhttp_listen = \"127.0.0.1:9000\"\n"
                         "max_message_bytes = 2048\nauto_create_queues = false\n"
                         "durability = \"batch\"\n";
  auto c = load_config({"--config", file.string()});
  CHECK(c.data_dir == "/from/file");
  CHECK(c.http_listen == "127.0.0.1:9000");
  CHECK(c.max_message_bytes == 2048);
  CHECK_FALSE(c.auto_create_queues);
  CHECK(c.durability == "batch");
  CHECK(c.config_file == file);

  EnvVar env("ROOST_DATA_DIR", "/from/env");
  EnvVar env2("ROOST_HTTP_LISTEN", "127.0.0.1:9100");
  c = load_config({"--config", file.string()});
  CHECK(c.data_dir == "/from/env");
  CHECK(c.http_listen == "127.0.0.1:9100");

  c = load_config({"--config", file.string(), "--data-dir", "/from/flag", "--http-listen=127.0.0.1:9200"});
  CHECK(c.data_dir == "/from/flag");
  CHECK(c.http_listen == "127.0.0.1:9200");
  CHECK(c.max_message_bytes == 2048);  // still from the file
}

TEST_CASE("configuration errors name the key", "[broker]") {
  roost::test::TempDir dir;
  auto bad = dir.path() / "bad.toml";
  std::ofstream(bad) << "no_such_key = 1\n";
  CHECK_THROWS_WITH(load_config({"--config", bad.string()}), Catch::Contains("no_such_key"));
  CHECK_THROWS_WITH(load_config({"--durability", "sometimes"}), Catch::Contains("durability"));
  CHECK_THROWS_WITH(load_config({"--inline-commits", "always"}), Catch::Contains("inline_commits"));
  CHECK_THROWS_WITH(load_config({"--wal", "maybe"}), Catch::Contains("wal"));
  CHECK_THROWS_WITH(load_config({"--wal-writeback-ms", "0"}), Catch::Contains("wal_writeback_ms"));
  CHECK_THROWS_WITH(load_config({"--max-message-bytes", "lots"}), Catch::Contains("max_message_bytes"));
  CHECK_THROWS_WITH(load_config({"--bogus", "1"}), Catch::Contains("--bogus"));
  // cf_tokens: TOKEN:queue,…; entries separated by ';'.
  CHECK_THROWS_WITH(load_config({"--cf-tokens", "just-a-token"}), Catch::Contains("cf_tokens"));
  CHECK_THROWS_WITH(load_config({"--cf-tokens", "tok:"}), Catch::Contains("grants no queue"));
  CHECK_THROWS_WITH(load_config({"--cf-tokens", "a b:q"}), Catch::Contains("character"));
  CHECK_THROWS_WITH(load_config({"--cf-tokens", "t1:q;t1:r"}), Catch::Contains("twice"));
  CHECK(load_config({"--cf-tokens", " t1:jobs, mail.> ; t2:>;"}).cf_tokens.size() > 0);
  CHECK_THROWS_WITH(load_config({"--data-dir"}), Catch::Contains("needs a value"));
  CHECK_THROWS_AS(load_config({"--config", (dir.path() / "missing.toml").string()}), ConfigError);
  auto broken = dir.path() / "broken.toml";
  std::ofstream(broken) << "data_dir = \n";
  CHECK_THROWS_AS(load_config({"--config", broken.string()}), ConfigError);
}

TEST_CASE("push targets: URLs, push_allowed_hosts, queue_push and channel_webhooks", "[broker]") {
  using namespace roost::broker;
  auto u = parse_http_url("http://LocalHost:3000/jobs?x=1");
  REQUIRE(u);
  CHECK(u->host == "localhost");
  CHECK(u->port == "3000");
  CHECK(u->target == "/jobs?x=1");
  CHECK(parse_http_url("http://[::1]/a")->host == "::1");
  CHECK(parse_http_url("http://127.0.0.1")->target == "/");
  for (const char* bad :
       {"https://127.0.0.1/", "http://", "http://u:p@127.0.0.1/", "http://127.0.0.1:0/",
        "http://127.0.0.1:99999/", "http://127.0.0.1/a b", "http://127.0.0.1/#f", "ftp://x/"}) {
    INFO(bad);
    CHECK_FALSE(parse_http_url(bad));
  }
  auto loopback = push_hosts("127.0.0.1, ::1 ,localhost");
  CHECK(loopback.size() == 3);
  CHECK_FALSE(check_push_url("http://127.0.0.1:3000/jobs", loopback));
  CHECK_FALSE(check_push_url("http://[::1]:3000/jobs", loopback));
  CHECK_FALSE(check_push_url("http://LOCALHOST/jobs", loopback));
  CHECK(check_push_url("http://10.0.0.1/jobs", loopback)->code == roost::ErrorCode::FORBIDDEN);
  CHECK(check_push_url("http://127.0.0.1.evil.com/jobs", loopback)->code == roost::ErrorCode::FORBIDDEN);
  CHECK_FALSE(check_push_url("http://10.0.0.1/jobs", {"*"}));
  // Issue 26 §1: entries with a port allow that port only; the node's own listeners and etcd are
  // never a target, whatever the list says (a loopback listener forbids its port on every loopback
  // name, a wildcard one on every host).
  auto ported = push_hosts("127.0.0.1:3000,[::1]:3001,svc");
  CHECK_FALSE(check_push_url("http://127.0.0.1:3000/jobs", ported));
  CHECK(check_push_url("http://127.0.0.1:3002/jobs", ported)->code == roost::ErrorCode::FORBIDDEN);
  CHECK_FALSE(check_push_url("http://[::1]:3001/jobs", ported));
  CHECK(check_push_url("http://[::1]:3000/jobs", ported));
  CHECK_FALSE(check_push_url("http://svc:1234/jobs", ported));
  std::vector<std::string> own{"127.0.0.1:2379", "0.0.0.0:8080", "[::1]:7400"};
  for (const char* url :
       {"http://127.0.0.1:2379/v3/kv/put", "http://localhost:2379/v3/kv/put", "http://127.0.0.5:2379/",
        "http://[::1]:2379/", "http://10.1.2.3:8080/", "http://localhost:7400/"}) {
    INFO(url);
    auto e = check_push_url(url, {"*"}, own);
    REQUIRE(e);
    CHECK(e->code == roost::ErrorCode::FORBIDDEN);
  }
  CHECK_FALSE(check_push_url("http://127.0.0.1:2380/", {"*"}, own));
  CHECK_FALSE(check_push_url("http://10.1.2.3:2379/", {"*"}, own));  // etcd on loopback only
  CHECK(forbidden_endpoint("127.0.0.1", "2379", own));
  CHECK_FALSE(forbidden_endpoint("127.0.0.1", "2378", own));
  CHECK(endpoint_of("tcp://127.0.0.1:7400") == "127.0.0.1:7400");
  CHECK(endpoint_of("http://[::1]:2379/x") == "[::1]:2379");
  CHECK(endpoint_of("127.0.0.1:8080") == "127.0.0.1:8080");
  CHECK_FALSE(endpoint_of("ipc:///tmp/roost.sock"));
  auto qp =
      parse_queue_push("jobs=http://127.0.0.1:3000/j,concurrency=4,batch_size=10; mail=http://localhost/m");
  REQUIRE(qp);
  REQUIRE(qp->size() == 2);
  CHECK((*qp)[0].second.concurrency == 4);
  CHECK((*qp)[0].second.batch_size == 10);
  CHECK((*qp)[1].first == "mail");
  CHECK_FALSE(parse_queue_push("jobs=http://127.0.0.1/j,retries=3"));
  CHECK_FALSE(parse_queue_push("jobs"));
  CHECK(parse_channel_webhooks("news.>=http://127.0.0.1/h;a.*=http://localhost/x")->size() == 2);
  CHECK_FALSE(parse_channel_webhooks("bad..subject=http://127.0.0.1/h"));
  CHECK_THROWS_WITH(load_config({"--queue-push", "jobs=http://10.1.1.1/x"}),
                    Catch::Contains("push_allowed_hosts"));
  CHECK(load_config({"--queue-push", "jobs=http://10.1.1.1/x", "--push-allowed-hosts", "10.1.1.1"})
            .queue_push.size() > 0);
  CHECK_THROWS_WITH(load_config({"--channel-webhooks", "a.b=http://10.1.1.1/x"}),
                    Catch::Contains("push_allowed_hosts"));
}
