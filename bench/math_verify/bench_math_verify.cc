// Throughput of the math verifier on GSM8K- and MATH-500-style inputs (one
// thread), and a JSONL scoring mode used by bench/math_verify/run.py and
// tools/math_verify_compare.py.
//
//   bench_math_verify [--data-dir DIR] [--min-seconds S]
//       Scores every GSM8K test reference solution against its "####" answer
//       and every MATH-500 reference solution against its gold answer,
//       repeating each set for at least S seconds, and prints "RESULT <style>
//       <verifications per second> <correct> <total>". The *_short styles score
//       only "The answer is $\boxed{gold}$." against the gold answer.
//   bench_math_verify --verify IN.jsonl OUT.jsonl
//       Reads {"completion", "answer"} records and writes them back with
//       "status", "extracted" and "correct".
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "verifiers/math/math_verifier.h"

namespace {

using rlvr::verifiers::math::MathStatusName;
using rlvr::verifiers::math::MathVerdict;
using rlvr::verifiers::math::VerifyMath;

struct Pair {
  std::string completion;
  std::string gold;
};

bool ReadJsonl(const std::string &path, std::vector<nlohmann::json> *out) {
  std::ifstream in(path);
  if (!in.good()) {
    std::fprintf(stderr, "%s: cannot open\n", path.c_str());
    return false;
  }
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      std::fprintf(stderr, "%s:%lld: not valid JSON\n", path.c_str(), static_cast<long long>(n));
      return false;
    }
    out->push_back(std::move(j));
  }
  return true;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.erase(s.begin());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

// CPU seconds of this process: the machines are shared, so CPU time (not wall
// time) is the per-core measure; the peer is timed the same way
// (time.process_time()).
double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void Bench(const char *style, const std::vector<Pair> &pairs, double min_seconds) {
  int correct = 0;
  for (const Pair &p : pairs) correct += VerifyMath(p.completion, p.gold).correct ? 1 : 0;
  int64_t done = 0;
  double start = CpuSeconds();
  double elapsed = 0;
  int sink = 0;
  do {
    for (const Pair &p : pairs) sink += VerifyMath(p.completion, p.gold).correct ? 1 : 0;
    done += static_cast<int64_t>(pairs.size());
    elapsed = CpuSeconds() - start;
  } while (elapsed < min_seconds);
  std::printf(
      "rlvr %s: %lld verifications in %.2f CPU s (%d/%zu correct, "
      "checksum %d)\n",
      style, static_cast<long long>(done), elapsed, correct, pairs.size(), sink);
  std::printf("RESULT %s %.1f %d %zu\n", style, done / elapsed, correct, pairs.size());
}

int VerifyFile(const std::string &in_path, const std::string &out_path) {
  std::vector<nlohmann::json> rows;
  if (!ReadJsonl(in_path, &rows)) return 1;
  std::ofstream out(out_path);
  if (!out.good()) {
    std::fprintf(stderr, "%s: cannot write\n", out_path.c_str());
    return 1;
  }
  for (nlohmann::json &r : rows) {
    if (!r.contains("completion") || !r["completion"].is_string() || !r.contains("answer")) {
      std::fprintf(stderr, "%s: record without string \"completion\" and \"answer\"\n",
                   in_path.c_str());
      return 1;
    }
    std::string answer =
        r["answer"].is_string() ? r["answer"].get<std::string>() : r["answer"].dump();
    MathVerdict v = VerifyMath(r["completion"].get<std::string>(), answer);
    r["status"] = std::string(MathStatusName(v.status));
    r["correct"] = v.correct;
    r["extracted"] = v.extracted;
    out << r.dump() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  std::string data_dir;
  if (const char *src = std::getenv("RLVR_SOURCE_DIR"))
    data_dir = std::string(src) + "/../shared/data";
  else
    data_dir = "../shared/data";
  double min_seconds = 2.0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--verify" && i + 2 < argc) return VerifyFile(argv[i + 1], argv[i + 2]);
    if (a == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (a == "--min-seconds" && i + 1 < argc) {
      min_seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--data-dir DIR] [--min-seconds S] | --verify "
                   "IN.jsonl OUT.jsonl\n",
                   argv[0]);
      return 2;
    }
  }
  std::vector<nlohmann::json> gsm, math;
  if (!ReadJsonl(data_dir + "/gsm8k_test.jsonl", &gsm) ||
      !ReadJsonl(data_dir + "/math500_test.jsonl", &math)) {
    return 1;
  }
  std::vector<Pair> gsm_pairs, math_pairs;
  for (const auto &r : gsm) {
    std::string a = r["answer"];
    gsm_pairs.push_back({a, Trim(a.substr(a.rfind("####") + 4))});
  }
  for (const auto &r : math) math_pairs.push_back({r["solution"], r["answer"]});
  // Short completions: only the final sentence with the boxed answer.
  std::vector<Pair> gsm_short, math_short;
  for (const Pair &p : gsm_pairs)
    gsm_short.push_back({"The answer is $\\boxed{" + p.gold + "}$.", p.gold});
  for (const Pair &p : math_pairs)
    math_short.push_back({"The answer is $\\boxed{" + p.gold + "}$.", p.gold});
  Bench("gsm8k_short", gsm_short, min_seconds);
  Bench("math500_short", math_short, min_seconds);
  Bench("gsm8k", gsm_pairs, min_seconds);
  Bench("math500", math_pairs, min_seconds);
  return 0;
}
