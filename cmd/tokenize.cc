// dsv3 tokenize: text -> ids (or ids -> text with --decode) with a Hugging Face tokenizer
// directory, for one string on the command line or a JSONL file of records.
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/file.h"
#include "engine/io/tokenizer.h"

namespace dsv3::cmd {

namespace {

// Keeps the input record's key order so an output line reads like its input line.
using ojson = nlohmann::ordered_json;

struct Mode {
  bool decode = false;
  bool add_bos = false;
  bool skip_special = false;
};

// "1 2 3" or "1,2,3" (what --text takes with --decode).
StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::string s = text;
  for (char& c : s) c = (c == ',') ? ' ' : c;
  std::istringstream in(s);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
    }
    if (used != word.size() || v < 0 || v > INT32_MAX)
      return Status::Invalid("--text: \"" + word + "\" is not a token id (want ids like \"1 2 3\")");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

// Adds "ids" (encode) or "text" (decode) to one JSONL record.
Status ProcessRecord(const Tokenizer& tok, const Mode& mode, ojson* rec) {
  if (!rec->is_object()) return Status::Invalid("expected a JSON object");
  if (mode.decode) {
    const auto it = rec->find("ids");
    if (it == rec->end() || !it->is_array()) return Status::Invalid("missing \"ids\" array");
    std::vector<int32_t> ids;
    for (const ojson& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        return Status::Invalid("\"ids\" holds " + v.dump() + ", not a token id");
      ids.push_back(v.get<int32_t>());
    }
    ASSIGN_OR_RETURN(std::string text, tok.Decode(ids, mode.skip_special));
    (*rec)["text"] = std::move(text);
    return Status::Ok();
  }
  const auto it = rec->find("text");
  if (it == rec->end() || !it->is_string()) return Status::Invalid("missing \"text\" string");
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(it->get<std::string>(), mode.add_bos));
  (*rec)["ids"] = std::move(ids);
  return Status::Ok();
}

Status ProcessFile(const Tokenizer& tok, const Mode& mode, const std::string& in_path, const std::string& out_path) {
  if (RealPath(in_path) == RealPath(out_path)) return Status::Invalid("--output would overwrite --input " + in_path);
  ASSIGN_OR_RETURN(std::string input, ReadFile(in_path));
  AtomicFile out(out_path);
  RETURN_IF_ERROR(out.Open());
  std::string buf;
  size_t line_no = 0;
  for (size_t pos = 0; pos < input.size();) {
    size_t end = input.find('\n', pos);
    if (end == std::string::npos) end = input.size();
    const std::string_view line(input.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line: no record
    const std::string where = in_path + ":" + std::to_string(line_no) + ": ";
    ojson rec;
    try {
      rec = ojson::parse(line);
    } catch (const ojson::exception& e) {
      return Status::Invalid(where + "not valid JSON: " + e.what());
    }
    RETURN_IF_ERROR(ProcessRecord(tok, mode, &rec).WithPrefix(where));
    buf += rec.dump();
    buf += '\n';
    if (buf.size() < (1 << 20)) continue;
    RETURN_IF_ERROR(out.Write(buf.data(), buf.size()));
    buf.clear();
  }
  RETURN_IF_ERROR(out.Write(buf.data(), buf.size()));
  return out.Commit();
}

Status ProcessText(const Tokenizer& tok, const Mode& mode, const std::string& text) {
  if (mode.decode) {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIdList(text));
    ASSIGN_OR_RETURN(std::string decoded, tok.Decode(ids, mode.skip_special));
    std::cout << decoded << "\n";
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode(text, mode.add_bos));
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::cout << line << "\n";
  return Status::Ok();
}

// Exactly one of --text / --input, --output iff --input, flags that fit the direction.
Status CheckCombination(const OptionParser& opts, const Mode& mode) {
  if (opts.Has("text") == opts.Has("input")) return Status::Invalid("give exactly one of --text or --input");
  if (opts.Has("input") != opts.Has("output")) return Status::Invalid("--input and --output go together");
  if (opts.Has("output")) RETURN_IF_ERROR(CheckOutputPath(opts.Get<std::string>("output"), "--output"));
  if (mode.decode && mode.add_bos) return Status::Invalid("--add-bos applies to encoding, not --decode");
  if (!mode.decode && mode.skip_special) return Status::Invalid("--skip-special-tokens applies to --decode only");
  return Status::Ok();
}

}  // namespace

int RunTokenize(int argc, char** argv) {
  OptionParser opts("tokenize", "Encode text to token ids, or decode ids to text (--decode).");
  opts.Add()("tokenizer", po::value<std::string>()->required(), "directory with tokenizer.json (+ tokenizer_config.json)")(
      "text", po::value<std::string>(), "one string; prints ids space-separated (with --decode: ids \"1 2 3\")")(
      "input", po::value<std::string>(), "JSONL file of {\"text\": ...} (with --decode: {\"ids\": [...]})")(
      "output", po::value<std::string>(), "JSONL file: each input record plus \"ids\" (or \"text\")")(
      "decode", po::bool_switch(), "ids -> text")(
      "add-bos", po::bool_switch(), "add BOS/EOS as tokenizer_config.json's add_bos_token/add_eos_token say")(
      "skip-special-tokens", po::bool_switch(), "with --decode: drop special tokens such as BOS/EOS");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("tokenize", st);
  if (opts.help()) return kExitOk;
  const Mode mode{opts.Get<bool>("decode"), opts.Get<bool>("add-bos"), opts.Get<bool>("skip-special-tokens")};
  st = CheckCombination(opts, mode);
  if (!st.ok()) return ReportError("tokenize", st.WithPrefix("usage: "));
  auto tok = Tokenizer::Load(opts.Get<std::string>("tokenizer"));
  if (!tok.ok()) return ReportError("tokenize", tok.status());
  st = opts.Has("text") ? ProcessText(*tok, mode, opts.Get<std::string>("text"))
                        : ProcessFile(*tok, mode, opts.Get<std::string>("input"), opts.Get<std::string>("output"));
  return st.ok() ? kExitOk : ReportError("tokenize", st);
}

}  // namespace dsv3::cmd
