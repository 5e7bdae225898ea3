// Checks the dependency arrows of DESIGN.md: a folder includes headers only from the folders it
// may depend on. An upward include (e.g. a verifier including policy/) fails this test.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;

// folder -> folders (of this repository) it may include from, besides itself.
const std::map<std::string, std::set<std::string>>& Allowed() {
  static const auto* allowed = new std::map<std::string, std::set<std::string>>{
      {"proto", {}},
      {"core", {"proto"}},
      {"kernels", {"core"}},
      {"policy", {"core", "kernels"}},
      {"rollout", {"core", "kernels", "policy"}},
      {"verifiers", {"core"}},
      {"reward", {"core", "verifiers", "proto"}},
      {"distill", {"core", "kernels", "policy", "rollout", "reward", "verifiers", "proto"}},
      {"cluster",
       {"core", "kernels", "policy", "rollout", "verifiers", "reward", "distill", "proto"}},
      {"cli", {"core", "kernels", "policy", "rollout", "verifiers", "reward", "distill", "proto",
               "cluster"}},
  };
  return *allowed;
}

TEST(LayeringTest, NoUpwardIncludes) {
  int files = 0, includes = 0;
  std::vector<std::string> violations;
  for (const auto& [folder, allowed] : Allowed()) {
    if (!fs::exists(folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(folder)) {
      std::string ext = entry.path().extension().string();
      if (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".proto") continue;
      ++files;
      std::ifstream in(entry.path());
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        ++n;
        std::string target;
        if (line.rfind("#include \"", 0) == 0) {
          target = line.substr(10);
        } else if (line.rfind("import \"", 0) == 0) {
          target = line.substr(8);
        } else {
          continue;
        }
        std::string top = target.substr(0, target.find('/'));
        if (!Allowed().count(top)) continue;  // a third-party header
        ++includes;
        if (top != folder && !allowed.count(top)) {
          violations.push_back(entry.path().string() + ":" + std::to_string(n) + ": " + line);
        }
      }
    }
  }
  EXPECT_GT(files, 50) << "run from the source root";
  EXPECT_GT(includes, 100);
  for (const auto& v : violations) ADD_FAILURE() << "upward include: " << v;
}

}  // namespace
