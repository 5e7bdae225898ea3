// Encode/decode throughput of rlvr's tokenizer on every text of ../shared/data, single thread.
// Run through bench/tokenizer/run.py, which runs the `tokenizers` package on the same texts.
//
//   bench_tokenizer TOKENIZER_JSON DATA_DIR [REPEATS]
//
// Prints one line per phase and last a machine-readable line:
//   RESULT bytes=... ids=... ids_fnv1a64=... encode_s=... decode_s=...
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "policy/text/tokenizer.h"

namespace {

// Same text extraction as tools/make_tokenizer_fixtures.py: sorted keys, strings and string lists.
std::vector<std::string> LoadTexts(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> texts;
  for (const std::string& f : files) {
    std::ifstream in(f);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      const nlohmann::json record = nlohmann::json::parse(line);
      for (auto it = record.begin(); it != record.end(); ++it) {
        if (it->is_string()) {
          texts.push_back(it->get<std::string>());
        } else if (it->is_array()) {
          for (const auto& v : *it) {
            if (v.is_string()) texts.push_back(v.get<std::string>());
          }
        }
      }
    }
  }
  return texts;
}

// Process CPU seconds: the machines running this are shared, and CPU time is far less sensitive
// to other load than wall time. The work is single-threaded, so the two agree on an idle machine.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON DATA_DIR [REPEATS]\n", argv[0]);
    return 2;
  }
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3;
  auto tok = rlvr::policy::Tokenizer::FromFile(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::string> texts = LoadTexts(argv[2]);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();

  std::vector<std::vector<int32_t>> ids(texts.size());
  double best_encode = 1e30, best_decode = 1e30;
  size_t decoded_bytes = 0;
  for (int r = 0; r < repeats; ++r) {
    double start = CpuNow();
    for (size_t i = 0; i < texts.size(); ++i) ids[i] = (*tok)->Encode(texts[i]);
    best_encode = std::min(best_encode, CpuNow() - start);
    start = CpuNow();
    decoded_bytes = 0;
    for (const auto& seq : ids) decoded_bytes += (*tok)->Decode(seq).size();
    best_decode = std::min(best_decode, CpuNow() - start);
  }
  uint64_t hash = 0xCBF29CE484222325ULL;
  size_t num_ids = 0;
  for (const auto& seq : ids) {
    for (int32_t id : seq) {
      const auto le = static_cast<uint32_t>(id);
      const auto* p = reinterpret_cast<const uint8_t*>(&le);
      for (int k = 0; k < 4; ++k) hash = (hash ^ p[k]) * 0x100000001B3ULL;
    }
    for (int k = 0; k < 4; ++k) hash = (hash ^ 0xFF) * 0x100000001B3ULL;
    num_ids += seq.size();
  }
  std::printf("rlvr encode: %zu texts, %.2f MB, %zu ids, best of %d: %.3f CPU s = %.2f MB/s\n",
              texts.size(), bytes / 1e6, num_ids, repeats, best_encode, bytes / 1e6 / best_encode);
  std::printf("rlvr decode: %.3f CPU s = %.2f MB/s\n", best_decode, decoded_bytes / 1e6 / best_decode);
  std::printf("RESULT bytes=%zu ids=%zu ids_fnv1a64=%016llx encode_s=%.6f decode_s=%.6f\n", bytes,
              num_ids, static_cast<unsigned long long>(hash), best_encode, best_decode);
  return 0;
}
