// A directory under the system temp folder, removed with everything in it on destruction.
#pragma once

#include <filesystem>
#include <random>
#include <string>

namespace roost::test {

class TempDir {
 public:
  explicit TempDir(const std::string& tag = "roost") {
    std::random_device rd;
    path_ =
        std::filesystem::temp_directory_path() / (tag + "-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace roost::test
