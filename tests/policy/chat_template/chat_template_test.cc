// Checks policy/text/chat_template against Python jinja2 renderings (set up as transformers'
// apply_chat_template) of the real Qwen2.5, Qwen3, DeepSeek-R1 and Llama-3 templates and of a
// feature-coverage template, made by tools/make_tokenizer_fixtures.py; plus error locations.
#include "policy/text/chat_template.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy {
namespace {

using OJson = nlohmann::ordered_json;
using ::testing::HasSubstr;

const std::string kDir = "tests/fixtures/chat_templates/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Shows where two renderings first differ.
std::string FirstDifference(const std::string& got, const std::string& want) {
  size_t k = 0;
  while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
  const size_t from = k > 40 ? k - 40 : 0;
  return "first difference at byte " + std::to_string(k) + "\n  got:  ..." + got.substr(from, 100) +
         "\n  want: ..." + want.substr(from, 100);
}

TEST(ChatTemplateTest, MatchesJinja2Renderings) {
  const OJson expected = OJson::parse(ReadFile(kDir + "expected_renderings.json"));
  std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
  int compared = 0, errors = 0;
  std::map<std::string, int> per_template;
  for (const OJson& c : expected["cases"]) {
    // A case names a template file, or carries a small template inline ("source").
    const bool inline_source = c.contains("source");
    const std::string name =
        inline_source ? c["name"].get<std::string>() : c["template"].get<std::string>();
    if (!templates.count(name)) {
      auto t = ChatTemplate::Parse(
          inline_source ? c["source"].get<std::string>() : ReadFile(kDir + name), name);
      ASSERT_TRUE(t.ok()) << t.status();
      templates[name] = *std::move(t);
    }
    const std::string label = name + " / " + c["name"].get<std::string>();
    absl::StatusOr<std::string> out = templates[name]->Render(c["variables"]);
    if (c.contains("error")) {
      ASSERT_FALSE(out.ok()) << label << " rendered but jinja2 raised";
      EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(out.status().message(), HasSubstr(c["error"].get<std::string>())) << label;
      EXPECT_THAT(out.status().message(), HasSubstr(name + ":")) << label;
      ++errors;
    } else {
      ASSERT_TRUE(out.ok()) << label << ": " << out.status();
      const std::string want = c["output"].get<std::string>();
      EXPECT_TRUE(*out == want) << label << "\n" << FirstDifference(*out, want);
    }
    if (!inline_source) {
      EXPECT_TRUE(c.contains("error") || !c["output"].get<std::string>().empty()) << label;
    }
    ++compared;
    ++per_template[name];
  }
  EXPECT_GE(compared, 150);
  EXPECT_GE(errors, 6);
  for (const char* t : {"qwen2.5.jinja", "qwen3.jinja", "deepseek_r1_distill_qwen.jinja",
                        "llama3.jinja", "llama3.2.jinja", "features.jinja"}) {
    EXPECT_GE(per_template[t], 8) << t;
  }
}

TEST(ChatTemplateTest, RenderChatMatchesQwen3Thinking) {
  auto t = ChatTemplate::Parse(ReadFile(kDir + "qwen3.jinja"), "qwen3.jinja");
  ASSERT_TRUE(t.ok()) << t.status();
  ChatRenderOptions options;
  options.enable_thinking = false;
  auto out = RenderChat(**t, {{"user", "What is 2+2?", std::nullopt}}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n\n</think>\n\n");
  options.enable_thinking = std::nullopt;
  out = RenderChat(**t, {{"user", "What is 2+2?", std::nullopt}}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  // reasoning_content of the last assistant turn is rendered inside <think>.
  options.add_generation_prompt = false;
  out = RenderChat(**t, {{"user", "q", std::nullopt}, {"assistant", "a", "r"}}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\na"
            "<|im_end|>\n");
}

TEST(ChatTemplateTest, R1ZeroPrompt) {
  EXPECT_EQ(R1ZeroPrompt("What is 1+1?"),
            "A conversation between User and Assistant. The user asks a question, and the "
            "Assistant solves it. The assistant first thinks about the reasoning process in the "
            "mind and then provides the user with the answer. The reasoning process and answer "
            "are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
            "i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
            "User: What is 1+1?. Assistant:");
}

TEST(ChatTemplateTest, LoadsFromModelDirectory) {
  const std::string dir = ::testing::TempDir() + "/rlvr_chat_template_model";
  std::filesystem::create_directories(dir);
  OJson config = {{"bos_token", {{"content", "<s>"}, {"lstrip", false}}},
                  {"eos_token", "</s>"},
                  {"chat_template",
                   "{{ bos_token }}{% for m in messages %}{{ m.content }}"
                   "{% endfor %}{{ eos_token }}"}};
  std::ofstream(dir + "/tokenizer_config.json") << config.dump();
  std::filesystem::remove(dir + "/chat_template.jinja");
  auto loaded = LoadModelChatTemplate(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->bos_token, "<s>");
  EXPECT_EQ(loaded->eos_token, "</s>");
  ChatRenderOptions options;
  options.bos_token = loaded->bos_token;
  options.eos_token = loaded->eos_token;
  auto out = RenderChat(*loaded->chat_template, {{"user", "hi", std::nullopt}}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s>hi</s>");
  // chat_template.jinja takes precedence over tokenizer_config.json.
  std::ofstream(dir + "/chat_template.jinja") << "J{{ messages | length }}\n";
  loaded = LoadModelChatTemplate(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  out = RenderChat(*loaded->chat_template, {{"user", "hi", std::nullopt}}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "J1");
  auto missing = LoadModelChatTemplate(dir + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// ---- Errors name the template line and column.

absl::Status ParseError(const std::string& source) {
  return ChatTemplate::Parse(source, "t.jinja").status();
}

absl::Status RenderError(const std::string& source, const OJson& vars = OJson::object()) {
  auto t = ChatTemplate::Parse(source, "t.jinja");
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return t.status();
  return (*t)->Render(vars).status();
}

TEST(ChatTemplateErrorTest, UnclosedTagNamesLineAndColumn) {
  auto s = ParseError("line one\n  {{ messages ");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:2:3: unterminated '{{' tag"));
}

TEST(ChatTemplateErrorTest, BadExpression) {
  auto s = ParseError("{% if x %}\nok\n{{ foo( }}{% endif %}");
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:3:"));
}

TEST(ChatTemplateErrorTest, MissingEndif) {
  auto s = ParseError("{% if x %}\nno end");
  EXPECT_THAT(s.message(), HasSubstr("expected '{% endif %}'"));
}

TEST(ChatTemplateErrorTest, UnknownStatement) {
  auto s = ParseError("a\n{% include 'x' %}");
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:2:1: unknown or misplaced statement 'include'"));
}

TEST(ChatTemplateErrorTest, UnterminatedString) {
  auto s = ParseError("{{ 'abc }}");
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:1:4: unterminated string"));
}

TEST(ChatTemplateErrorTest, UnknownFilterAtRender) {
  auto s = RenderError("x\n  {{ 1 | nosuchfilter }}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:2:8: unknown filter 'nosuchfilter'"));
}

TEST(ChatTemplateErrorTest, AttributeOfUndefined) {
  auto s = RenderError("{{ missing.attr }}");
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:1:"));
  EXPECT_THAT(s.message(), HasSubstr("'missing' is undefined"));
}

TEST(ChatTemplateErrorTest, RaiseExceptionInsideMacro) {
  auto s =
      RenderError("{% macro f() %}\n{{ raise_exception('bad input') }}{% endmacro %}{{ f() }}");
  EXPECT_THAT(s.message(), HasSubstr("t.jinja:2:"));
  EXPECT_THAT(s.message(), HasSubstr("raise_exception: bad input"));
}

TEST(ChatTemplateErrorTest, BadOperands) {
  auto s = RenderError("{{ 1 + 'a' }}");
  EXPECT_THAT(s.message(), HasSubstr("unsupported operand type(s) for +: 'int' and 'str'"));
}

TEST(ChatTemplateErrorTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_THAT(ParseError(deep).message(), HasSubstr("nested too deeply"));
  std::string ifs;
  for (int k = 0; k < 1000; ++k) ifs += "{% if true %}";
  EXPECT_THAT(ParseError(ifs).message(), HasSubstr("nested too deeply"));
}

TEST(ChatTemplateErrorTest, HugeRepetitionIsAnError) {
  EXPECT_THAT(RenderError("{{ 'ab' * 1000000000000 }}").message(),
              HasSubstr("t.jinja:1:9: repetition result is too large"));
}

TEST(ChatTemplateErrorTest, VariablesMustBeAnObject) {
  auto t = ChatTemplate::Parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->Render(OJson::array()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rlvr::policy
