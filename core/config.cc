#include "core/config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "yaml-cpp/yaml.h"

namespace rlvr {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// yaml-cpp recurses once per nesting level; deeper documents than this are refused before
// parsing so that a hostile file cannot overflow the stack.
constexpr int kMaxNesting = 64;
// Bounds the work of walking a document (anchors and aliases can make a small file large).
constexpr int kMaxNodes = 200000;
constexpr size_t kMaxConfigBytes = 16 << 20;

struct Walker {
  std::string source;  // file name or "override 'k=v'"
  int nodes = 0;

  std::string Where(const YAML::Node& node) const {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null() || mark.line < 0) return source;
    return absl::StrCat(source, ":", mark.line + 1);
  }
};

std::string Join(absl::string_view prefix, absl::string_view name) {
  return prefix.empty() ? std::string(name) : absl::StrCat(prefix, ".", name);
}

// All dotted field paths under `desc` (used to suggest a key given at the wrong level).
void CollectPaths(const Descriptor* desc, const std::string& prefix, int depth,
                  std::vector<std::string>* out) {
  if (depth > 8) return;
  for (int i = 0; i < desc->field_count(); ++i) {
    const FieldDescriptor* f = desc->field(i);
    std::string path = Join(prefix, f->name());
    out->push_back(path);
    if (f->type() == FieldDescriptor::TYPE_MESSAGE && !f->is_map()) {
      CollectPaths(f->message_type(), path, depth + 1, out);
    }
  }
}

std::string Suggest(const Descriptor* desc, absl::string_view parent, absl::string_view key,
                    const Descriptor* root) {
  std::vector<std::pair<int, std::string>> scored;
  for (int i = 0; i < desc->field_count(); ++i) {
    const std::string& name = desc->field(i)->name();
    scored.emplace_back(EditDistance(absl::AsciiStrToLower(key), name), name);
  }
  std::sort(scored.begin(), scored.end());
  int limit = std::max<int>(2, static_cast<int>(key.size()) / 3);
  std::vector<std::string> close;
  for (const auto& [d, name] : scored) {
    if (d <= limit && close.size() < 3) close.push_back(absl::StrCat("'", Join(parent, name), "'"));
  }
  // A key that exists elsewhere in the schema (e.g. `group_size` at the top level).
  std::vector<std::string> all;
  CollectPaths(root, "", 0, &all);
  for (const std::string& path : all) {
    absl::string_view leaf = path;
    if (size_t dot = leaf.rfind('.'); dot != absl::string_view::npos) leaf.remove_prefix(dot + 1);
    if (leaf == key && close.size() < 4) close.push_back(absl::StrCat("'", path, "'"));
  }
  std::string msg;
  if (!close.empty()) msg = absl::StrCat("; did you mean ", absl::StrJoin(close, " or "), "?");
  std::vector<std::string> valid;
  for (int i = 0; i < desc->field_count(); ++i) valid.push_back(desc->field(i)->name());
  absl::StrAppend(&msg, " (valid keys here: ", absl::StrJoin(valid, ", "), ")");
  return msg;
}

const char* TypeName(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return "a number";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "a boolean (true or false)";
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_ENUM:
      return "an enum name";
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return "a mapping of keys";
  }
  return "a value";
}

absl::Status TypeError(const Walker& w, const YAML::Node& node, const std::string& path,
                       const FieldDescriptor* f, bool repeated_element) {
  std::string got;
  if (node.IsScalar()) {
    got = absl::StrCat("'", node.Scalar().substr(0, 40), "'");
  } else if (node.IsSequence()) {
    got = "a list";
  } else if (node.IsMap()) {
    got = "a mapping";
  } else {
    got = "nothing";
  }
  std::string expected = TypeName(f);
  if (f->is_repeated() && !f->is_map() && !repeated_element) {
    expected = absl::StrCat("a list of ", f->type() == FieldDescriptor::TYPE_MESSAGE
                                              ? std::string("mappings")
                                              : absl::StrCat(std::string(TypeName(f)).substr(
                                                                 TypeName(f)[1] == 'n' ? 3 : 2),
                                                             "s"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(w.Where(node), ": ", path, ": expected ", expected, ", got ", got));
}

bool ParseBool(const std::string& s, bool* out) {
  std::string l = absl::AsciiStrToLower(s);
  if (l == "true" || l == "yes" || l == "on") {
    *out = true;
    return true;
  }
  if (l == "false" || l == "no" || l == "off") {
    *out = false;
    return true;
  }
  return false;
}

bool ParseDouble(const std::string& s, double* out) {
  std::string l = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s));
  if (l == ".inf" || l == "inf" || l == "+.inf") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (l == "-.inf" || l == "-inf") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (l == ".nan" || l == "nan") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return absl::SimpleAtod(l, out);
}

absl::Status MergeMessage(Walker& w, const YAML::Node& node, const std::string& path,
                          Message* msg, const Descriptor* root, int depth);

// Sets (or, for repeated fields, adds) one scalar or message value.
absl::Status SetValue(Walker& w, const YAML::Node& node, const std::string& path,
                      const FieldDescriptor* f, Message* msg, const Descriptor* root, int depth) {
  const Reflection* r = msg->GetReflection();
  bool rep = f->is_repeated();
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!node.IsMap() && !node.IsNull()) return TypeError(w, node, path, f, true);
    Message* sub = rep ? r->AddMessage(msg, f) : r->MutableMessage(msg, f);
    if (node.IsNull()) return absl::OkStatus();
    return MergeMessage(w, node, path, sub, root, depth + 1);
  }
  if (!node.IsScalar()) return TypeError(w, node, path, f, true);
  const std::string& s = node.Scalar();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(s, &v)) return TypeError(w, node, path, f, true);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
          return absl::InvalidArgumentError(
              absl::StrCat(w.Where(node), ": ", path, ": ", s, " is out of range for int32"));
        }
        rep ? r->AddInt32(msg, f, static_cast<int32_t>(v))
            : r->SetInt32(msg, f, static_cast<int32_t>(v));
      } else {
        rep ? r->AddInt64(msg, f, v) : r->SetInt64(msg, f, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(s, &v)) return TypeError(w, node, path, f, true);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32) {
        if (v > std::numeric_limits<uint32_t>::max()) {
          return absl::InvalidArgumentError(
              absl::StrCat(w.Where(node), ": ", path, ": ", s, " is out of range for uint32"));
        }
        rep ? r->AddUInt32(msg, f, static_cast<uint32_t>(v))
            : r->SetUInt32(msg, f, static_cast<uint32_t>(v));
      } else {
        rep ? r->AddUInt64(msg, f, v) : r->SetUInt64(msg, f, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!ParseDouble(s, &v)) return TypeError(w, node, path, f, true);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        rep ? r->AddFloat(msg, f, static_cast<float>(v)) : r->SetFloat(msg, f, static_cast<float>(v));
      } else {
        rep ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!ParseBool(s, &v)) return TypeError(w, node, path, f, true);
      rep ? r->AddBool(msg, f, v) : r->SetBool(msg, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      rep ? r->AddString(msg, f, s) : r->SetString(msg, f, s);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* value = f->enum_type()->FindValueByName(s);
      if (value == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < f->enum_type()->value_count(); ++i) {
          names.push_back(f->enum_type()->value(i)->name());
        }
        return absl::InvalidArgumentError(absl::StrCat(w.Where(node), ": ", path, ": '", s,
                                                       "' is not one of ",
                                                       absl::StrJoin(names, ", ")));
      }
      rep ? r->AddEnum(msg, f, value) : r->SetEnum(msg, f, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return absl::InternalError(absl::StrCat(path, ": unhandled field type"));
}

absl::Status SetField(Walker& w, const YAML::Node& node, const std::string& path,
                      const FieldDescriptor* f, Message* msg, const Descriptor* root, int depth) {
  if (++w.nodes > kMaxNodes) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.source, ": document too large (more than ", kMaxNodes, " values)"));
  }
  const Reflection* r = msg->GetReflection();
  if (f->is_map()) {
    // map<string, string>-style fields: a YAML mapping replaces the whole map.
    if (!node.IsMap() && !node.IsNull()) return TypeError(w, node, path, f, false);
    r->ClearField(msg, f);
    if (node.IsNull()) return absl::OkStatus();
    const Descriptor* entry = f->message_type();
    const FieldDescriptor* key_f = entry->FindFieldByName("key");
    const FieldDescriptor* val_f = entry->FindFieldByName("value");
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return TypeError(w, kv.first, path, key_f, true);
      Message* e = r->AddMessage(msg, f);
      RLVR_RETURN_IF_ERROR(SetValue(w, kv.first, path, key_f, e, root, depth));
      RLVR_RETURN_IF_ERROR(SetValue(w, kv.second, Join(path, kv.first.Scalar()), val_f, e, root,
                                    depth));
    }
    return absl::OkStatus();
  }
  if (f->is_repeated()) {
    if (node.IsNull()) {
      r->ClearField(msg, f);
      return absl::OkStatus();
    }
    if (!node.IsSequence()) return TypeError(w, node, path, f, false);
    r->ClearField(msg, f);
    int i = 0;
    for (const auto& item : node) {
      RLVR_RETURN_IF_ERROR(
          SetValue(w, item, absl::StrCat(path, ".", i++), f, msg, root, depth));
    }
    return absl::OkStatus();
  }
  if (node.IsNull() && f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
    return TypeError(w, node, path, f, false);
  }
  return SetValue(w, node, path, f, msg, root, depth);
}

absl::Status MergeMessage(Walker& w, const YAML::Node& node, const std::string& path,
                          Message* msg, const Descriptor* root, int depth) {
  if (depth > kMaxNesting) {
    return absl::InvalidArgumentError(absl::StrCat(w.Where(node), ": nesting too deep"));
  }
  const Descriptor* desc = msg->GetDescriptor();
  if (!node.IsMap()) {
    std::string what = path.empty() ? std::string("the document") : path;
    return absl::InvalidArgumentError(
        absl::StrCat(w.Where(node), ": ", what, ": expected a mapping of keys (",
                     desc->name(), ")"));
  }
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.Where(kv.first), ": ", path.empty() ? "" : path + ": ",
                       "keys must be plain strings"));
    }
    const std::string& key = kv.first.Scalar();
    std::string key_path = Join(path, key);
    const FieldDescriptor* f = desc->FindFieldByName(key);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(w.Where(kv.first), ": unknown key '", key_path,
                                                     "'", Suggest(desc, path, key, root)));
    }
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.Where(kv.first), ": duplicate key '", key_path, "'"));
    }
    RLVR_RETURN_IF_ERROR(SetField(w, kv.second, key_path, f, msg, root, depth));
  }
  return absl::OkStatus();
}

// Refuses documents nested deeper than kMaxNesting before yaml-cpp sees them. Counts flow
// brackets and block indentation; quoted text is skipped.
absl::Status CheckNesting(absl::string_view text, absl::string_view source) {
  int depth = 0;
  char quote = 0;
  int line = 1;
  bool line_start = true;
  int indent = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = true;
      indent = 0;
      continue;
    }
    if (line_start) {
      if (c == ' ' || c == '-') {
        // "- - - x" nests sequences as deeply as indentation does.
        if (++indent > 2 * kMaxNesting) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ":", line, ": nesting too deep (more than ", kMaxNesting,
                           " levels)"));
        }
        continue;
      }
      line_start = false;
    }
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxNesting) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ":", line, ": nesting too deep (more than ", kMaxNesting, " levels)"));
      }
    } else if (c == ']' || c == '}') {
      depth = std::max(0, depth - 1);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<YAML::Node> ParseYaml(absl::string_view text, absl::string_view source) {
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": larger than ", kMaxConfigBytes, " bytes"));
  }
  RLVR_RETURN_IF_ERROR(CheckNesting(text, source));
  // YAML::LoadAll loops forever on some malformed input (found by fuzz_config), so the first
  // document is parsed with YAML::Load and further documents are detected by their marker.
  bool content = false;
  int line = 0;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    ++line;
    absl::string_view t = absl::StripAsciiWhitespace(l);
    if (t.empty() || t[0] == '#' || t[0] == '%') continue;
    if (absl::StartsWith(l, "---") && content) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line, ": a second YAML document starts here; expected one"));
    }
    if (!absl::StartsWith(l, "---")) content = true;
  }
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    if (doc.IsNull() && content) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not a YAML or JSON mapping of keys"));
    }
    return doc;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

std::string FormatFloat(double v, bool is_float) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  // Shortest representation that reads back to the same value.
  for (int prec = 1; prec <= 17; ++prec) {
    std::string s = absl::StrFormat("%.*g", prec, v);
    double back = std::strtod(s.c_str(), nullptr);
    if (is_float ? static_cast<float>(back) == static_cast<float>(v) : back == v) {
      if (s.find_first_of(".en") == std::string::npos) s += ".0";
      return s;
    }
  }
  return absl::StrFormat("%.17g", v);
}

void EmitMessage(YAML::Emitter& out, const Message& msg);

void EmitScalar(YAML::Emitter& out, const Message& msg, const FieldDescriptor* f, int index) {
  const Reflection* r = msg.GetReflection();
  bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      out << (rep ? r->GetRepeatedInt32(msg, f, index) : r->GetInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      out << (rep ? r->GetRepeatedInt64(msg, f, index) : r->GetInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      out << (rep ? r->GetRepeatedUInt32(msg, f, index) : r->GetUInt32(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      out << (rep ? r->GetRepeatedUInt64(msg, f, index) : r->GetUInt64(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      out << FormatFloat(rep ? r->GetRepeatedFloat(msg, f, index) : r->GetFloat(msg, f), true);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      out << FormatFloat(rep ? r->GetRepeatedDouble(msg, f, index) : r->GetDouble(msg, f), false);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out << YAML::TrueFalseBool << (rep ? r->GetRepeatedBool(msg, f, index) : r->GetBool(msg, f));
      break;
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(msg, f, index) : r->GetString(msg, f);
      out << YAML::DoubleQuoted << s;
      break;
    }
    case FieldDescriptor::CPPTYPE_ENUM:
      out << (rep ? r->GetRepeatedEnum(msg, f, index) : r->GetEnum(msg, f))->name();
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      EmitMessage(out, rep ? r->GetRepeatedMessage(msg, f, index) : r->GetMessage(msg, f));
      break;
  }
}

void EmitMessage(YAML::Emitter& out, const Message& msg) {
  const Descriptor* desc = msg.GetDescriptor();
  const Reflection* r = msg.GetReflection();
  out << YAML::BeginMap;
  for (int i = 0; i < desc->field_count(); ++i) {
    const FieldDescriptor* f = desc->field(i);
    out << YAML::Key << f->name() << YAML::Value;
    if (f->is_map()) {
      // Sort map entries so the output is deterministic.
      std::vector<std::pair<std::string, std::string>> entries;
      for (int j = 0; j < r->FieldSize(msg, f); ++j) {
        const Message& e = r->GetRepeatedMessage(msg, f, j);
        const Reflection* er = e.GetReflection();
        entries.emplace_back(er->GetString(e, e.GetDescriptor()->FindFieldByName("key")),
                             er->GetString(e, e.GetDescriptor()->FindFieldByName("value")));
      }
      std::sort(entries.begin(), entries.end());
      out << YAML::BeginMap;
      for (const auto& [k, v] : entries) {
        out << YAML::Key << YAML::DoubleQuoted << k << YAML::Value << YAML::DoubleQuoted << v;
      }
      out << YAML::EndMap;
    } else if (f->is_repeated()) {
      bool flow = f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE;
      out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
      for (int j = 0; j < r->FieldSize(msg, f); ++j) EmitScalar(out, msg, f, j);
      out << YAML::EndSeq;
    } else {
      EmitScalar(out, msg, f, -1);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

int EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

absl::Status MergeConfigText(absl::string_view text, absl::string_view source_name,
                             google::protobuf::Message* msg) {
  RLVR_ASSIGN_OR_RETURN(YAML::Node root, ParseYaml(text, source_name));
  if (root.IsNull()) return absl::OkStatus();  // an empty file changes nothing
  Walker w{std::string(source_name)};
  try {
    return MergeMessage(w, root, "", msg, msg->GetDescriptor(), 0);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::Status MergeConfigFile(const std::string& path, google::protobuf::Message* msg) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return MergeConfigText(ss.str(), path, msg);
}

absl::Status ApplyOverride(absl::string_view override_text, google::protobuf::Message* msg) {
  std::string source = absl::StrCat("override '", override_text, "'");
  size_t eq = override_text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected dotted.key=value (for example grpo.group_size=16)"));
  }
  absl::string_view key = absl::StripAsciiWhitespace(override_text.substr(0, eq));
  absl::string_view value = override_text.substr(eq + 1);
  RLVR_ASSIGN_OR_RETURN(YAML::Node node, ParseYaml(value, source));
  Walker w{source};
  const Descriptor* root = msg->GetDescriptor();
  Message* cur = msg;
  std::string path;
  std::vector<std::string> parts = absl::StrSplit(key, '.');
  try {
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string& part = parts[i];
      const Descriptor* desc = cur->GetDescriptor();
      const FieldDescriptor* f = desc->FindFieldByName(part);
      if (f == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": unknown key '", Join(path, part),
                                                       "'", Suggest(desc, path, part, root)));
      }
      path = Join(path, part);
      bool last = i + 1 == parts.size();
      const Reflection* r = cur->GetReflection();
      if (last) return SetField(w, node, path, f, cur, root, 0);
      if (f->is_map()) {
        // `reward.verifiers.0.options.k=v`: set one map entry.
        if (i + 2 != parts.size()) {
          return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, " is a map of strings"));
        }
        const Descriptor* entry = f->message_type();
        const FieldDescriptor* key_f = entry->FindFieldByName("key");
        const FieldDescriptor* val_f = entry->FindFieldByName("value");
        Message* e = nullptr;
        for (int j = 0; j < r->FieldSize(*cur, f); ++j) {
          Message* m = r->MutableRepeatedMessage(cur, f, j);
          if (m->GetReflection()->GetString(*m, key_f) == parts[i + 1]) e = m;
        }
        if (e == nullptr) {
          e = r->AddMessage(cur, f);
          e->GetReflection()->SetString(e, key_f, parts[i + 1]);
        }
        return SetValue(w, node, Join(path, parts[i + 1]), val_f, e, root, 0);
      }
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": '", path, "' is ", TypeName(f), ", it has no field '", parts[i + 1], "'"));
      }
      if (f->is_repeated()) {
        // `reward.verifiers.0.weight=2`: index into a list of messages.
        ++i;
        int index;
        if (i >= parts.size() || !absl::SimpleAtoi(parts[i], &index) || index < 0 ||
            index > r->FieldSize(*cur, f)) {
          return absl::InvalidArgumentError(absl::StrCat(
              source, ": '", path, "' is a list with ", r->FieldSize(*cur, f),
              " elements; index it with a number from 0 to ", r->FieldSize(*cur, f)));
        }
        path = absl::StrCat(path, ".", index);
        if (index == r->FieldSize(*cur, f)) {
          cur = r->AddMessage(cur, f);
        } else {
          cur = r->MutableRepeatedMessage(cur, f, index);
        }
        if (i + 1 == parts.size()) return MergeMessage(w, node, path, cur, root, 0);
        continue;
      }
      cur = r->MutableMessage(cur, f);
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  return absl::OkStatus();
}

std::string ToYaml(const google::protobuf::Message& msg) {
  YAML::Emitter out;
  out.SetIndent(2);
  EmitMessage(out, msg);
  return std::string(out.c_str()) + "\n";
}

proto::RunConfig DefaultRunConfig() {
  proto::RunConfig c;
  c.set_run_dir("runs/default");
  c.set_seed(1);
  c.set_device("cpu");
  auto* m = c.mutable_model();
  m->set_arch("qwen3_moe");
  m->set_preset("tiny");
  m->set_dtype("float32");
  m->set_chat_template("r1_zero");
  auto* d = c.mutable_data();
  d->set_prompt_key("prompt");
  d->set_answer_key("answer");
  d->set_data_source_key("data_source");
  d->set_max_prompt_tokens(512);
  d->set_eval_every(10);
  d->set_eval_samples(200);
  d->set_shuffle(true);
  auto* r = c.mutable_rollout();
  r->set_max_new_tokens(256);
  r->set_temperature(1.0f);
  r->set_top_p(1.0f);
  r->set_top_k(0);
  r->set_min_p(0.0f);
  r->set_repetition_penalty(1.0f);
  r->set_max_batch_sequences(256);
  r->set_max_tokens_in_flight(1 << 20);
  r->set_kv_block_size(16);
  auto* g = c.mutable_grpo();
  g->set_group_size(8);
  g->set_prompts_per_step(32);
  g->set_advantage_estimator("grpo");
  g->set_advantage_eps(1e-6f);
  g->set_clip_eps_low(0.2f);
  g->set_clip_eps_high(0.28f);
  g->set_loss_agg_mode("token_mean");
  g->set_kl_coef(0.0f);
  g->set_kl_estimator("k3");
  g->set_mini_batches(1);
  g->set_ppo_epochs(1);
  g->set_ratio_level("token");
  g->set_max_sampling_rounds(4);
  g->set_router_aux_loss_coef(0.001f);
  auto* rw = c.mutable_reward();
  auto* v = rw->add_verifiers();
  v->set_name("math");
  v->set_weight(1.0f);
  rw->set_timeout_seconds(10.0f);
  rw->set_overlong_penalty(1.0f);
  auto* o = c.mutable_optimizer();
  o->set_lr(1e-6f);
  o->set_weight_decay(0.0f);
  o->set_beta1(0.9f);
  o->set_beta2(0.999f);
  o->set_eps(1e-8f);
  o->set_grad_clip(1.0f);
  o->set_schedule("constant");
  auto* t = c.mutable_trainer();
  t->set_total_steps(100);
  t->set_save_every(50);
  t->set_keep_checkpoints(2);
  t->set_log_every(1);
  t->set_mode("sync");
  t->set_max_staleness(1);
  t->set_max_bad_steps(5);
  t->set_sample_log_count(4);
  t->set_threads(0);
  auto* s = c.mutable_sft();
  s->set_prompt_key("prompt");
  s->set_completion_key("completion");
  s->set_steps(100);
  s->set_batch_tokens(4096);
  s->set_packing(true);
  s->set_max_seq_len(0);
  s->set_epochs(1);
  s->set_save_every(0);
  s->set_add_eos(true);
  auto* ds = c.mutable_distill();
  ds->set_student_arch("qwen3");
  ds->set_student_preset("tiny");
  ds->set_mode("sft");
  ds->set_traces_per_prompt(4);
  ds->set_kd_temperature(1.0f);
  return c;
}

namespace {
absl::Status OneOf(absl::string_view key, const std::string& value,
                   std::initializer_list<absl::string_view> allowed) {
  for (absl::string_view a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(key, ": '", value, "' is not one of ",
                                                 absl::StrJoin(allowed, ", ")));
}

absl::Status Positive(absl::string_view key, double value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(key, ": must be positive, got ", value));
}
}  // namespace

absl::Status ValidateRunConfig(const proto::RunConfig& c) {
  RLVR_RETURN_IF_ERROR(OneOf("device", c.device(), {"cpu", "cuda"}));
  RLVR_RETURN_IF_ERROR(OneOf("model.dtype", c.model().dtype(), {"float32", "bfloat16"}));
  RLVR_RETURN_IF_ERROR(
      OneOf("model.chat_template", c.model().chat_template(), {"model", "r1_zero", "none"}));
  RLVR_RETURN_IF_ERROR(Positive("grpo.group_size", c.grpo().group_size()));
  RLVR_RETURN_IF_ERROR(Positive("grpo.prompts_per_step", c.grpo().prompts_per_step()));
  RLVR_RETURN_IF_ERROR(Positive("grpo.mini_batches", c.grpo().mini_batches()));
  RLVR_RETURN_IF_ERROR(Positive("grpo.ppo_epochs", c.grpo().ppo_epochs()));
  if (c.grpo().prompts_per_step() % c.grpo().mini_batches() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grpo.mini_batches: ", c.grpo().mini_batches(), " does not divide grpo.prompts_per_step (",
        c.grpo().prompts_per_step(), "); each mini-batch must hold whole groups"));
  }
  RLVR_RETURN_IF_ERROR(OneOf("grpo.advantage_estimator", c.grpo().advantage_estimator(),
                             {"grpo", "dr_grpo", "rloo", "reinforce_pp"}));
  RLVR_RETURN_IF_ERROR(OneOf("grpo.loss_agg_mode", c.grpo().loss_agg_mode(),
                             {"token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"}));
  RLVR_RETURN_IF_ERROR(OneOf("grpo.kl_estimator", c.grpo().kl_estimator(), {"k1", "k2", "k3"}));
  RLVR_RETURN_IF_ERROR(OneOf("grpo.ratio_level", c.grpo().ratio_level(), {"token", "sequence"}));
  if (c.grpo().clip_eps_low() < 0 || c.grpo().clip_eps_low() >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpo.clip_eps_low: must be in [0, 1), got ", c.grpo().clip_eps_low()));
  }
  if (c.grpo().clip_eps_high() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpo.clip_eps_high: must be >= 0, got ", c.grpo().clip_eps_high()));
  }
  RLVR_RETURN_IF_ERROR(Positive("rollout.max_new_tokens", c.rollout().max_new_tokens()));
  if (c.rollout().temperature() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rollout.temperature: must be >= 0, got ", c.rollout().temperature()));
  }
  if (c.rollout().top_p() <= 0 || c.rollout().top_p() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rollout.top_p: must be in (0, 1], got ", c.rollout().top_p()));
  }
  RLVR_RETURN_IF_ERROR(Positive("rollout.kv_block_size", c.rollout().kv_block_size()));
  RLVR_RETURN_IF_ERROR(Positive("optimizer.lr", c.optimizer().lr()));
  RLVR_RETURN_IF_ERROR(OneOf("optimizer.schedule", c.optimizer().schedule(), {"constant", "cosine"}));
  RLVR_RETURN_IF_ERROR(OneOf("trainer.mode", c.trainer().mode(), {"sync", "overlapped"}));
  if (c.trainer().max_staleness() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trainer.max_staleness: must be >= 0, got ", c.trainer().max_staleness()));
  }
  RLVR_RETURN_IF_ERROR(OneOf("distill.mode", c.distill().mode(), {"sft", "kd"}));
  RLVR_RETURN_IF_ERROR(Positive("sft.batch_tokens", c.sft().batch_tokens()));
  for (const auto& [key, value] : {std::pair<const char*, int32_t>{"sft.steps", c.sft().steps()},
                                   {"sft.epochs", c.sft().epochs()},
                                   {"sft.max_seq_len", c.sft().max_seq_len()},
                                   {"sft.save_every", c.sft().save_every()}}) {
    if (value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": must be >= 0, got ", value));
    }
  }
  if (c.sft().steps() == 0 && c.sft().epochs() == 0) {
    return absl::InvalidArgumentError("sft.steps: 0 needs sft.epochs > 0 (passes over the data)");
  }
  if (c.sft().max_seq_len() > c.sft().batch_tokens()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sft.max_seq_len: ", c.sft().max_seq_len(), " is more than sft.batch_tokens (",
                     c.sft().batch_tokens(), "); a step must hold at least one row"));
  }
  for (int i = 0; i < c.reward().verifiers_size(); ++i) {
    if (c.reward().verifiers(i).name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("reward.verifiers.", i, ".name: must name a verifier"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<proto::RunConfig> LoadRunConfig(const std::string& path,
                                               const std::vector<std::string>& overrides) {
  proto::RunConfig config = DefaultRunConfig();
  if (!path.empty()) RLVR_RETURN_IF_ERROR(MergeConfigFile(path, &config));
  for (const std::string& o : overrides) RLVR_RETURN_IF_ERROR(ApplyOverride(o, &config));
  RLVR_RETURN_IF_ERROR(ValidateRunConfig(config), path.empty() ? "config" : path);
  return config;
}

}  // namespace rlvr
