// Checks policy/text/tokenizer against the `tokenizers` package: fixtures made by
// tools/make_tokenizer_fixtures.py (ids and decodings for every text of ../shared/data and for
// Unicode edge cases), plus one test per malformed tokenizer.json.
#include "policy/text/tokenizer.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

const std::string kFixtures = "tests/fixtures/tokenizers/";
const std::string kData = "../shared/data/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Json ReadJson(const std::string& path) { return Json::parse(ReadFile(path)); }

std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  auto tok = Tokenizer::FromFile(kFixtures + name + "/tokenizer.json");
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

// FNV-1a 64 over bytes, continuing from `h` (matches the fixture script).
uint64_t Fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001B3ULL;
  }
  return h;
}

// Texts of a record: keys in sorted order, strings and the strings of lists.
void AppendRecordTexts(const Json& record, std::vector<std::string>* texts) {
  for (auto it = record.begin(); it != record.end(); ++it) {  // nlohmann sorts keys
    if (it->is_string()) {
      texts->push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const Json& v : *it) {
        if (v.is_string()) texts->push_back(v.get<std::string>());
      }
    }
  }
}

std::vector<std::string> FileTexts(const std::string& file) {
  std::ifstream in(kData + file);
  EXPECT_TRUE(in.good()) << "cannot open " << kData << file;
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    AppendRecordTexts(Json::parse(line), &texts);
  }
  return texts;
}

class FixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTest, EdgeCasesEncodeAndDecodeLikeTokenizers) {
  auto tok = Load(GetParam());
  ASSERT_NE(tok, nullptr);
  const Json expected = ReadJson(kFixtures + GetParam() + "/expected_edge.json");
  int compared = 0;
  for (const Json& c : expected["encode"]) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> ids = tok->Encode(text);
    EXPECT_EQ(ids, Ids(c["ids"])) << "text: " << absl::CHexEscape(text);
    EXPECT_EQ(tok->Encode(text, /*add_special_tokens=*/true), Ids(c["ids_with_special"]))
        << "text: " << absl::CHexEscape(text);
    EXPECT_EQ(tok->Decode(Ids(c["ids"])), c["decoded"].get<std::string>())
        << "text: " << absl::CHexEscape(text);
    EXPECT_EQ(tok->Decode(Ids(c["ids"]), /*skip_special_tokens=*/true),
              c["decoded_skip_special"].get<std::string>())
        << "text: " << absl::CHexEscape(text);
    ++compared;
  }
  EXPECT_GE(compared, 30);
  compared = 0;
  for (const Json& c : expected["invalid_input"]) {
    const std::string raw = absl::HexStringToBytes(c["hex"].get<std::string>());
    EXPECT_EQ(tok->Encode(raw), Ids(c["ids"])) << "bytes: " << absl::CHexEscape(raw);
    ++compared;
  }
  EXPECT_GE(compared, 5);
  compared = 0;
  for (const Json& c : expected["decode"]) {
    const std::vector<int32_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tok->Decode(ids), c["text"].get<std::string>()) << ::testing::PrintToString(ids);
    EXPECT_EQ(tok->Decode(ids, true), c["text_skip_special"].get<std::string>())
        << ::testing::PrintToString(ids);
    ++compared;
  }
  EXPECT_GE(compared, 10);
}

TEST_P(FixtureTest, EveryDataFileEncodesAndDecodesLikeTokenizers) {
  auto tok = Load(GetParam());
  ASSERT_NE(tok, nullptr);
  const Json expected = ReadJson(kFixtures + GetParam() + "/expected_data.json");
  ASSERT_GE(expected["files"].size(), 8u);
  int64_t total_ids = 0;
  for (const Json& f : expected["files"]) {
    const std::string file = f["file"].get<std::string>();
    const std::vector<std::string> texts = FileTexts(file);
    ASSERT_EQ(texts.size(), f["texts"].get<size_t>()) << file;
    uint64_t id_hash = 0xCBF29CE484222325ULL, text_hash = 0xCBF29CE484222325ULL;
    int64_t num_ids = 0;
    size_t sample = 0;
    const Json& samples = f["samples"];
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int32_t> ids = tok->Encode(texts[i]);
      num_ids += static_cast<int64_t>(ids.size());
      for (int32_t id : ids) {
        const uint32_t le = static_cast<uint32_t>(id);  // x86-64 is little-endian
        id_hash = Fnv1a(&le, 4, id_hash);
      }
      const uint32_t sep = 0xFFFFFFFFu;
      id_hash = Fnv1a(&sep, 4, id_hash);
      const std::string decoded = tok->Decode(ids);
      text_hash = Fnv1a(decoded.data(), decoded.size(), text_hash);
      const uint8_t ff = 0xFF;
      text_hash = Fnv1a(&ff, 1, text_hash);
      if (sample < samples.size() && samples[sample]["index"].get<size_t>() == i) {
        EXPECT_EQ(ids, Ids(samples[sample]["ids"])) << file << " text " << i << ": " << texts[i];
        EXPECT_EQ(decoded, samples[sample]["decoded"].get<std::string>()) << file << " " << i;
        ++sample;
      }
    }
    EXPECT_EQ(sample, samples.size()) << file;
    EXPECT_EQ(num_ids, f["ids"].get<int64_t>()) << file;
    EXPECT_EQ(absl::StrCat(absl::Hex(id_hash, absl::kZeroPad16)),
              f["ids_fnv1a64"].get<std::string>())
        << file << ": id sequences differ from tokenizers";
    EXPECT_EQ(absl::StrCat(absl::Hex(text_hash, absl::kZeroPad16)),
              f["decoded_fnv1a64"].get<std::string>())
        << file << ": decoded strings differ from tokenizers";
    total_ids += num_ids;
  }
  EXPECT_GT(total_ids, 1000000);
  EXPECT_GT(tok->cache_size(), 100u);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, FixtureTest, ::testing::Values("qwen2", "llama3", "gpt2"));

TEST(TokenizerTest, RoundTripsArbitraryValidText) {
  auto tok = Load("qwen2");
  ASSERT_NE(tok, nullptr);
  // NFC-stable text decodes back to itself.
  const std::string text = "Solve 12*34 = ? Then, print(f\"{x!r}\") — 你好 🙂\n\n  done";
  EXPECT_EQ(tok->Decode(tok->Encode(text)), text);
}

TEST(TokenizerTest, SpecialTokensAndLookups) {
  auto tok = Load("qwen2");
  ASSERT_NE(tok, nullptr);
  const auto im_start = tok->TokenToId("<|im_start|>");
  const auto think = tok->TokenToId("<think>");
  ASSERT_TRUE(im_start.has_value());
  ASSERT_TRUE(think.has_value());
  EXPECT_TRUE(tok->IsSpecial(*im_start));
  EXPECT_FALSE(tok->IsSpecial(*think));
  EXPECT_EQ(tok->IdToToken(*im_start), "<|im_start|>");
  EXPECT_EQ(tok->TokenBytes(*think), "<think>");
  EXPECT_EQ(tok->vocab_size(), 3005);
  const auto space_t = tok->TokenToId("Ġt");
  ASSERT_TRUE(space_t.has_value());
  EXPECT_EQ(tok->TokenBytes(*space_t), " t");
  EXPECT_EQ(tok->TokenBytes(-1), "");
  EXPECT_EQ(tok->TokenBytes(1 << 20), "");
  // Unknown ids are skipped in decode, as in `tokenizers`.
  EXPECT_EQ(tok->Decode({*think, 999999, -5}), "<think>");
}

TEST(TokenizerTest, ConcurrentEncodeMatchesSequential) {
  auto tok = Load("llama3");
  ASSERT_NE(tok, nullptr);
  std::vector<std::string> texts = FileTexts("gsm8k_test.jsonl");
  texts.resize(400);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(tok->Encode(t));
  std::vector<int> mismatches(2, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (size_t i = 0; i < texts.size(); ++i) {
        if (tok->Encode(texts[(i + w * 37) % texts.size()]) !=
            expected[(i + w * 37) % texts.size()]) {
          ++mismatches[w];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches[0] + mismatches[1], 0);
}

// ---- Malformed tokenizer.json: one test each, checking the code and the key in the message.

Json Fixture() { return ReadJson(kFixtures + "qwen2/tokenizer.json"); }

absl::Status LoadStatus(const Json& j) {
  return Tokenizer::FromJson(j.dump(), "bad/tokenizer.json").status();
}

TEST(TokenizerErrorTest, MissingFile) {
  auto s = Tokenizer::FromFile("tests/fixtures/tokenizers/nope/tokenizer.json").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("nope/tokenizer.json"));
}

TEST(TokenizerErrorTest, InvalidJson) {
  auto s = Tokenizer::FromJson("{\"model\": {", "bad/tokenizer.json").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bad/tokenizer.json: invalid JSON at byte"));
}

TEST(TokenizerErrorTest, MissingModel) {
  Json j = Fixture();
  j.erase("model");
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bad/tokenizer.json: model: missing"));
}

TEST(TokenizerErrorTest, UnknownModelType) {
  Json j = Fixture();
  j["model"]["type"] = "WordPiece";
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("model.type: 'WordPiece' is not supported"));
}

TEST(TokenizerErrorTest, MissingMerges) {
  Json j = Fixture();
  j["model"].erase("merges");
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.merges: missing"));
}

TEST(TokenizerErrorTest, MergeWithUnknownToken) {
  Json j = Fixture();
  j["model"]["merges"][5] = "Ġ zzzz";
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.merges[5]: 'zzzz' is not in the vocab"));
}

TEST(TokenizerErrorTest, MalformedMerge) {
  Json j = Fixture();
  j["model"]["merges"][7] = "abc";
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.merges[7]: expected \"a b\""));
  j["model"]["merges"][7] = Json::array({"a"});
  EXPECT_THAT(LoadStatus(j).message(), HasSubstr("model.merges[7]"));
}

TEST(TokenizerErrorTest, NonIntegerVocabId) {
  Json j = Fixture();
  j["model"]["vocab"]["hello"] = "7";
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.vocab[\"hello\"]"));
}

TEST(TokenizerErrorTest, UnsupportedModelOptions) {
  Json j = Fixture();
  j["model"]["byte_fallback"] = true;
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("model.byte_fallback"));
  j = Fixture();
  j["model"]["unk_token"] = "<unk>";
  EXPECT_THAT(LoadStatus(j).message(), HasSubstr("model.unk_token"));
}

TEST(TokenizerErrorTest, UnsupportedNormalizer) {
  Json j = Fixture();
  j["normalizer"] = {{"type", "Lowercase"}};
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("normalizer.type: 'Lowercase'"));
}

TEST(TokenizerErrorTest, BadRegex) {
  Json j = Fixture();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("pre_tokenizer.pretokenizers[0].pattern.Regex: bad regex"));
}

TEST(TokenizerErrorTest, UnsupportedPreTokenizer) {
  Json j = Fixture();
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Whitespace"}};
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("pre_tokenizer.pretokenizers[0].type: 'Whitespace'"));
}

TEST(TokenizerErrorTest, ByteLevelNotLast) {
  Json j = Fixture();
  auto& list = j["pre_tokenizer"]["pretokenizers"];
  std::swap(list[0], list[1]);
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("pre_tokenizer.pretokenizers[0]"));
}

TEST(TokenizerErrorTest, AddedTokenWithoutContent) {
  Json j = Fixture();
  j["added_tokens"][1].erase("content");
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("added_tokens[1].content: missing"));
}

TEST(TokenizerErrorTest, UnsupportedDecoder) {
  Json j = Fixture();
  j["decoder"] = {{"type", "WordPiece"}};
  auto s = LoadStatus(j);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("decoder.type: 'WordPiece'"));
}

}  // namespace
}  // namespace rlvr::policy
