// Byte-level BPE tokenizer loaded from Hugging Face tokenizer.json; see tokenizer.h.
#include "engine/io/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "engine/base/file.h"
#include "engine/base/utf8.h"

namespace dsv3 {

using json = nlohmann::json;

namespace {

// ---- UTF-8 -------------------------------------------------------------------------------

enum class Utf8 { kValid, kInvalid, kTruncated };

// Classifies the sequence at p[0..n): a valid character of *len bytes, a maximal invalid
// subpart of *len bytes (the unit from_utf8_lossy replaces), or a valid prefix cut off by n.
Utf8 NextChar(const uint8_t* p, size_t n, size_t* len) {
  const uint8_t c = p[0];
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c < 0x80) {
    *len = 1;
    return Utf8::kValid;
  } else if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 2;
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    *len = 1;
    return Utf8::kInvalid;
  }
  for (size_t i = 1; i <= need; ++i) {
    *len = i;
    if (i >= n) return Utf8::kTruncated;
    if (p[i] < lo || p[i] > hi) return Utf8::kInvalid;
    lo = 0x80, hi = 0xBF;
  }
  *len = need + 1;
  return Utf8::kValid;
}

uint32_t CodepointOf(const uint8_t* p, size_t len) {
  if (len == 1) return p[0];
  uint32_t cp = p[0] & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) cp = (cp << 6) | (p[i] & 0x3F);
  return cp;
}


// ---- GPT-2 byte <-> unicode map (the ByteLevel pre-tokenizer and decoder) ----------------

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> to_byte{};  // codepoint -> byte, -1 when unmapped

  ByteMap() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      to_cp[b] = printable ? b : 256 + extra++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }

  // Raw bytes of a byte-level token string, or nullopt when a character is not in the map
  // (then the ByteLevel decoder emits the token's own UTF-8, which Decode mirrors).
  std::optional<std::string> ToBytes(std::string_view token) const {
    std::string bytes;
    const auto* p = reinterpret_cast<const uint8_t*>(token.data());
    for (size_t i = 0, len = 0; i < token.size(); i += len) {
      if (NextChar(p + i, token.size() - i, &len) != Utf8::kValid) return std::nullopt;
      const uint32_t cp = CodepointOf(p + i, len);
      if (cp >= to_byte.size() || to_byte[cp] < 0) return std::nullopt;
      bytes.push_back(static_cast<char>(to_byte[cp]));
    }
    return bytes;
  }
};

const ByteMap& Bytes() {
  static const ByteMap map;
  return map;
}

// ---- merge table: (left id, right id) -> (rank, merged id), open addressing -------------

class MergeTable {
 public:
  struct Merge {
    uint32_t rank;
    int32_t id;
  };
  void Reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, Slot{kEmpty, {0, 0}});
    mask_ = cap - 1;
  }
  // A later duplicate overwrites an earlier one, as the HF HashMap built from merges does.
  void Insert(int32_t a, int32_t b, Merge m) {
    const uint64_t key = Key(a, b);
    size_t i = Hash(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = Slot{key, m};
  }
  const Merge* Find(int32_t a, int32_t b) const {
    const uint64_t key = Key(a, b);
    for (size_t i = Hash(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t Hash(uint64_t key) const { return ((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// ---- added tokens: byte trie, leftmost-longest like the HF Aho-Corasick matcher ----------

class AddedMatcher {
 public:
  void Add(std::string_view s, int32_t id) {
    int32_t node = 0;
    for (unsigned char c : s) {
      int32_t next = Child(node, c);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].next.emplace_back(c, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    nodes_[node].id = id;
    first_.set(static_cast<unsigned char>(s[0]));
  }
  bool empty() const { return nodes_.size() == 1; }

  // Length of the longest token starting at text[pos] (0 when none); its id in *id.
  size_t LongestAt(std::string_view text, size_t pos, int32_t* id) const {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (nodes_[node].id >= 0) best = i + 1 - pos, *id = nodes_[node].id;
    }
    return best;
  }
  bool MayStartWith(unsigned char c) const { return first_.test(c); }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t id = -1;
  };
  int32_t Child(int32_t node, unsigned char c) const {
    for (const auto& [byte, child] : nodes_[node].next)
      if (byte == c) return child;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::bitset<256> first_;
};

// Calls on_piece(text, -1) for plain stretches and on_piece(token, id) for added tokens.
template <typename F>
Status SplitAdded(const AddedMatcher& m, std::string_view text, F&& on_piece) {
  if (m.empty()) return text.empty() ? Status::Ok() : on_piece(text, -1);
  size_t prev = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t id = -1;
    const size_t len = m.MayStartWith(text[pos]) ? m.LongestAt(text, pos, &id) : 0;
    if (len == 0) {
      ++pos;
      continue;
    }
    if (pos > prev) RETURN_IF_ERROR(on_piece(text.substr(prev, pos - prev), -1));
    RETURN_IF_ERROR(on_piece(text.substr(pos, len), id));
    prev = pos += len;
  }
  return prev < text.size() ? on_piece(text.substr(prev), -1) : Status::Ok();
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// BPE results per pre-token word. Open addressing over one arena holding each word's bytes
// followed by its ids, so a hit costs about two cache misses (the node-based
// unordered_map it replaced spent most of Encode's time chasing pointers).
class WordCache {
 public:
  static constexpr size_t kMaxWord = 256;  // bytes; longer words are rare and big

  bool Find(std::string_view word, uint64_t hash, std::vector<int32_t>* out) const {
    if (slots_.empty()) return false;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return false;
      if (s.hash != hash || s.word_len != word.size()) continue;
      const char* entry = arena_.data() + s.offset;
      if (std::memcmp(entry, word.data(), word.size()) != 0) continue;
      const int32_t* ids = reinterpret_cast<const int32_t*>(entry + Padded(word.size()));
      out->insert(out->end(), ids, ids + s.n_ids);
      return true;
    }
  }

  void Insert(std::string_view word, uint64_t hash, const int32_t* ids, size_t n) {
    if (2 * (used_ + 1) > slots_.size()) Grow();
    size_t i = hash & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    const size_t offset = arena_.size();
    arena_.resize(offset + Padded(word.size()) + n * sizeof(int32_t));
    std::memcpy(arena_.data() + offset, word.data(), word.size());
    std::memcpy(arena_.data() + offset + Padded(word.size()), ids, n * sizeof(int32_t));
    slots_[i] = {hash, static_cast<uint32_t>(offset), static_cast<uint16_t>(word.size()), static_cast<uint16_t>(n)};
    ++used_;
  }

  // Never 0, which marks an empty slot.
  static uint64_t Hash(std::string_view word) { return std::hash<std::string_view>()(word) | 1; }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t offset;  // into arena_: word bytes, padding to 4, ids
    uint16_t word_len, n_ids;
  };
  static constexpr size_t kMaxSlots = 1 << 20;  // about 16 MB of slots, then start over
  static size_t Padded(size_t n) { return (n + 3) & ~size_t{3}; }

  void Grow() {
    if (slots_.size() >= kMaxSlots || arena_.size() > (1u << 31)) {
      slots_.assign(slots_.size(), Slot{});
      arena_.clear();
      used_ = 0;
      return;
    }
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1 << 12 : 2 * old.size(), Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.hash == 0) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].hash != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0, used_ = 0;
};

enum class Kind : uint8_t { kNone, kVocab, kAdded, kSpecial };


// The GPT-2 split a ByteLevel pre-tokenizer with use_regex=true applies.
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

// ---- the loaded tokenizer -----------------------------------------------------------------

struct Tokenizer::Impl {
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    for (pcre2_code* c : splits) pcre2_code_free(c);
  }

  TokenizerOptions options;
  std::vector<std::string> id_bytes;  // what each id decodes to
  std::vector<Kind> id_kind;
  StringMap<int32_t> token_to_id;  // tokens as written in the JSON
  // model.vocab only (merges may not name added tokens); views into the parsed JSON's keys,
  // so valid only while loading.
  std::unordered_map<std::string_view, int32_t> vocab_ids;
  StringMap<int32_t> bytes_to_id;  // vocab by raw bytes, for ignore_merges
  std::array<int32_t, 256> byte_id{};
  MergeTable merges;
  bool ignore_merges = false;
  AddedMatcher added[2];             // HF matches normalized=false tokens first, then the rest
  std::vector<pcre2_code*> splits;   // pre-tokenizer Split regexes, in order
  std::vector<std::string> split_patterns;
  std::string name;  // the tokenizer.json's path (or FromJson's name), for errors at encode time
  std::vector<int32_t> prefix, suffix;  // added by add_special_tokens
  std::string bos_token, eos_token;
  std::optional<int32_t> bos_id, eos_id;

  mutable std::mutex cache_mu;
  mutable WordCache cache;
};

namespace {

using Impl = Tokenizer::Impl;

std::string TypeOf(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"].get<std::string>();
  return j.is_null() ? "null" : "(no type)";
}

// ---- loading: one function per tokenizer.json section -------------------------------------

Status SetToken(Impl* impl, int32_t id, std::string_view written, std::string bytes, Kind kind) {
  if (id < 0 || id > (1 << 24)) return Status::Invalid("token id " + std::to_string(id) + " is out of range");
  if (static_cast<size_t>(id) >= impl->id_bytes.size()) {
    impl->id_bytes.resize(id + 1);
    impl->id_kind.resize(id + 1, Kind::kNone);
  }
  impl->id_bytes[id] = std::move(bytes);
  impl->id_kind[id] = kind;
  impl->token_to_id[std::string(written)] = id;
  return Status::Ok();
}

Status LoadVocab(const json& vocab, Impl* impl) {
  if (!vocab.is_object()) return Status::Invalid("model.vocab must be an object of token -> id");
  impl->byte_id.fill(-1);
  impl->vocab_ids.reserve(vocab.size());
  impl->token_to_id.reserve(vocab.size() + 1024);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer())
      return Status::Invalid("model.vocab[\"" + it.key() + "\"] is not an integer id");
    const int32_t id = it.value().get<int32_t>();
    std::optional<std::string> bytes = Bytes().ToBytes(it.key());
    // A token outside the byte alphabet can never come out of BPE; it still decodes.
    RETURN_IF_ERROR(SetToken(impl, id, it.key(), bytes ? *bytes : it.key(), Kind::kVocab));
    impl->vocab_ids[std::string_view(it.key())] = id;
    if (!bytes) continue;
    if (bytes->size() == 1) impl->byte_id[static_cast<unsigned char>((*bytes)[0])] = id;
    if (impl->ignore_merges) impl->bytes_to_id[*bytes] = id;
  }
  for (int b = 0; b < 256; ++b) {
    if (impl->byte_id[b] < 0)
      return Status::Invalid("model.vocab has no token for byte " + std::to_string(b) +
                             " (byte-level BPE needs all 256)");
  }
  return Status::Ok();
}

Status LoadMerges(const json& merges, Impl* impl) {
  if (!merges.is_array()) return Status::Invalid("model.merges must be an array");
  impl->merges.Reserve(merges.size());
  std::string a, b;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    const std::string where = "model.merges[" + std::to_string(rank) + "]: ";
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return Status::Invalid(where + "\"" + s + "\" is not \"A B\"");
      a.assign(s, 0, sp), b.assign(s, sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    } else {
      return Status::Invalid(where + "is neither \"A B\" nor [A, B]");
    }
    int32_t ids[3];
    const std::string ab = a + b;
    for (int k = 0; k < 3; ++k) {
      const std::string& tok = k == 0 ? a : k == 1 ? b : ab;
      auto it = impl->vocab_ids.find(tok);
      if (it == impl->vocab_ids.end()) return Status::Invalid(where + "token \"" + tok + "\" is not in model.vocab");
      ids[k] = it->second;
    }
    impl->merges.Insert(ids[0], ids[1], {static_cast<uint32_t>(rank), ids[2]});
  }
  return Status::Ok();
}

Status LoadModel(const json& root, Impl* impl) {
  if (!root.contains("model") || !root["model"].is_object()) return Status::Invalid("missing \"model\"");
  const json& model = root["model"];
  if (TypeOf(model) != "BPE") return Status::Invalid("unsupported model type \"" + TypeOf(model) + "\" (only BPE)");
  auto set = [&](const char* key) { return model.contains(key) && !model[key].is_null(); };
  if (set("dropout") && model["dropout"] != 0.0) return Status::Invalid("model.dropout is not supported");
  if (set("continuing_subword_prefix") && model["continuing_subword_prefix"] != "")
    return Status::Invalid("model.continuing_subword_prefix is not supported");
  if (set("end_of_word_suffix") && model["end_of_word_suffix"] != "")
    return Status::Invalid("model.end_of_word_suffix is not supported");
  if (set("byte_fallback") && model["byte_fallback"] != false)
    return Status::Invalid("model.byte_fallback is not supported (byte-level BPE needs none)");
  impl->ignore_merges = set("ignore_merges") && model["ignore_merges"] == true;
  if (!model.contains("vocab")) return Status::Invalid("missing model.vocab");
  if (!model.contains("merges")) return Status::Invalid("missing model.merges");
  RETURN_IF_ERROR(LoadVocab(model["vocab"], impl));
  RETURN_IF_ERROR(LoadMerges(model["merges"], impl));
  impl->vocab_ids = {};  // only needed to resolve merges
  return Status::Ok();
}

Status LoadAddedTokens(const json& root, Impl* impl) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return Status::Ok();
  const json& list = root["added_tokens"];
  if (!list.is_array()) return Status::Invalid("added_tokens must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]: ";
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string() || t["content"].get<std::string>().empty())
      return Status::Invalid(where + "needs an integer \"id\" and a non-empty \"content\"");
    for (const char* flag : {"single_word", "lstrip", "rstrip"})
      if (t.value(flag, false)) return Status::Invalid(where + "\"" + flag + ": true\" is not supported");
    const std::string content = t["content"].get<std::string>();
    const int32_t id = t["id"].get<int32_t>();
    const bool special = t.value("special", false);
    // The ByteLevel decoder maps a token through the byte table only when every character
    // is in it; otherwise it emits the token's UTF-8 as is.
    std::optional<std::string> bytes = Bytes().ToBytes(content);
    RETURN_IF_ERROR(SetToken(impl, id, content, bytes ? *bytes : content, special ? Kind::kSpecial : Kind::kAdded)
                        .WithPrefix(where));
    impl->added[t.value("normalized", !special) ? 1 : 0].Add(content, id);
  }
  return Status::Ok();
}

Status LoadNormalizer(const json& root) {
  if (!root.contains("normalizer") || root["normalizer"].is_null()) return Status::Ok();
  const json& n = root["normalizer"];
  if (TypeOf(n) == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    if (n["normalizers"].empty()) return Status::Ok();
    return Status::Invalid("unsupported normalizer type \"" + TypeOf(n["normalizers"][0]) +
                           "\" in normalizer.Sequence");
  }
  return Status::Invalid("unsupported normalizer type \"" + TypeOf(n) + "\"");
}

StatusOr<pcre2_code*> CompileRegex(const std::string& pattern, bool literal) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  uint32_t flags = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags, &err,
                                   &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return Status::Invalid("invalid regex \"" + pattern + "\" at offset " + std::to_string(offset) + ": " +
                           reinterpret_cast<const char*>(msg));
  }
  // Without JIT (some platforms) pcre2_match interprets the same pattern: slower, same result.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return code;
}

Status AddSplit(const json& step, Impl* impl) {
  if (step.value("behavior", "") != "Isolated")
    return Status::Invalid("Split behavior \"" + step.value("behavior", "") + "\" is not supported (only Isolated)");
  if (step.value("invert", false)) return Status::Invalid("Split with invert=true is not supported");
  const json* pat = step.contains("pattern") ? &step["pattern"] : nullptr;
  bool literal = false;
  std::string pattern;
  if (pat && pat->contains("Regex") && (*pat)["Regex"].is_string()) {
    pattern = (*pat)["Regex"].get<std::string>();
  } else if (pat && pat->contains("String") && (*pat)["String"].is_string()) {
    pattern = (*pat)["String"].get<std::string>(), literal = true;
  } else {
    return Status::Invalid("Split needs pattern {\"Regex\": ...} or {\"String\": ...}");
  }
  ASSIGN_OR_RETURN(pcre2_code * code, CompileRegex(pattern, literal));
  impl->splits.push_back(code);
  impl->split_patterns.push_back(pattern);
  return Status::Ok();
}

Status LoadPreTokenizer(const json& root, Impl* impl) {
  if (!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null())
    return Status::Invalid("missing pre_tokenizer (byte-level BPE needs a ByteLevel step)");
  const json& pre = root["pre_tokenizer"];
  std::vector<const json*> steps;
  if (TypeOf(pre) == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const json& s : pre["pretokenizers"]) steps.push_back(&s);
  } else {
    steps.push_back(&pre);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& s = *steps[i];
    const std::string type = TypeOf(s);
    const std::string where = "pre_tokenizer step " + std::to_string(i) + " (" + type + "): ";
    if (type == "Split") {
      RETURN_IF_ERROR(AddSplit(s, impl).WithPrefix(where));
    } else if (type == "ByteLevel") {
      // Splits after the byte mapping would see mapped characters: not what we implement.
      if (i + 1 != steps.size()) return Status::Invalid(where + "ByteLevel must be the last step");
      if (s.value("add_prefix_space", false)) return Status::Invalid(where + "add_prefix_space=true is not supported");
      if (!s.value("use_regex", true)) return Status::Ok();
      const json gpt2 = {{"behavior", "Isolated"}, {"pattern", {{"Regex", kGpt2Regex}}}};
      return AddSplit(gpt2, impl);
    } else {
      return Status::Invalid("unsupported pre_tokenizer type \"" + type + "\"");
    }
  }
  return Status::Invalid("pre_tokenizer has no ByteLevel step (byte-level BPE needs one)");
}

Status LoadDecoder(const json& root) {
  const json& d = root.contains("decoder") ? root["decoder"] : json();
  if (TypeOf(d) != "ByteLevel") return Status::Invalid("unsupported decoder type \"" + TypeOf(d) + "\" (only ByteLevel)");
  return Status::Ok();
}

// TemplateProcessing's `single` gives the ids add_special_tokens adds around the text.
Status LoadPostProcessor(const json& root, Impl* impl) {
  const json& p = root.contains("post_processor") ? root["post_processor"] : json();
  const std::string type = TypeOf(p);
  if (type == "null" || type == "ByteLevel") return Status::Ok();
  if (type != "TemplateProcessing") return Status::Invalid("unsupported post_processor type \"" + type + "\"");
  if (!p.contains("single") || !p["single"].is_array()) return Status::Invalid("post_processor.single missing");
  bool seen_a = false;
  for (const json& piece : p["single"]) {
    if (piece.contains("Sequence") && piece["Sequence"].value("id", "") == "A") {
      seen_a = true;
      continue;
    }
    const std::string name = piece.contains("SpecialToken") ? piece["SpecialToken"].value("id", "") : "";
    const json& specials = p.contains("special_tokens") ? p["special_tokens"] : json::object();
    if (name.empty() || !specials.contains(name) || !specials[name].contains("ids"))
      return Status::Invalid("post_processor.single: unsupported piece " + piece.dump());
    for (const json& id : specials[name]["ids"]) (seen_a ? impl->suffix : impl->prefix).push_back(id.get<int32_t>());
  }
  return Status::Ok();
}

StatusOr<std::string> ConfigToken(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::string();
  const json& t = config[key];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
  return Status::Invalid(std::string(key) + " must be a string or an AddedToken object");
}

// tokenizer_config.json: transformers' LlamaTokenizerFast rebuilds the post-processor from
// add_bos_token/add_eos_token, so when the config says, it overrides tokenizer.json.
Status ApplyConfig(const json& config, Impl* impl) {
  if (!config.is_object()) return Status::Invalid("not a JSON object");
  if (config.value("clean_up_tokenization_spaces", false))
    return Status::Invalid("clean_up_tokenization_spaces=true is not supported");
  ASSIGN_OR_RETURN(impl->bos_token, ConfigToken(config, "bos_token"));
  ASSIGN_OR_RETURN(impl->eos_token, ConfigToken(config, "eos_token"));
  for (auto [text, id] : {std::pair{&impl->bos_token, &impl->bos_id}, std::pair{&impl->eos_token, &impl->eos_id}}) {
    if (text->empty()) continue;
    auto it = impl->token_to_id.find(*text);
    if (it == impl->token_to_id.end()) return Status::Invalid("token \"" + *text + "\" is not in tokenizer.json");
    *id = it->second;
  }
  if (config.contains("add_bos_token") || config.contains("add_eos_token")) {
    impl->prefix.clear(), impl->suffix.clear();
    if (config.value("add_bos_token", false)) {
      if (!impl->bos_id) return Status::Invalid("add_bos_token is true but bos_token is not set");
      impl->prefix.push_back(*impl->bos_id);
    }
    if (config.value("add_eos_token", false)) {
      if (!impl->eos_id) return Status::Invalid("add_eos_token is true but eos_token is not set");
      impl->suffix.push_back(*impl->eos_id);
    }
  }
  return Status::Ok();
}

StatusOr<json> ParseJson(std::string_view text) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("not valid JSON: ") + e.what());
  }
}

// ---- encoding -----------------------------------------------------------------------------

// Per-thread scratch so Encode allocates nothing per word once warm.
struct Scratch {
  struct Symbol {
    int32_t id, prev, next, len;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos, id;
    // std heaps are max-heaps: "less" means a later merge (higher rank, then further right).
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  Scratch() : mctx(pcre2_match_context_create(nullptr)), stack(pcre2_jit_stack_create(32 << 10, 8 << 20, nullptr)) {
    pcre2_jit_stack_assign(mctx, nullptr, stack);
  }
  ~Scratch() {
    for (pcre2_match_data* md : match_data) pcre2_match_data_free(md);
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(mctx);
  }
  // One match block per pre-tokenizer step: recursion into step k+1 must not clobber k's.
  pcre2_match_data* MatchData(size_t step) {
    while (match_data.size() <= step) match_data.push_back(pcre2_match_data_create(1, nullptr));
    return match_data[step];
  }
  pcre2_match_context* mctx;
  pcre2_jit_stack* stack;
  std::vector<pcre2_match_data*> match_data;
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

// Byte-level BPE of one word as HF's Word::merge_all does: repeatedly apply the lowest-rank
// merge, leftmost first, re-checking each queued pair is still current when popped.
void Bpe(const Impl& impl, std::string_view word, Scratch* s, std::vector<int32_t>* out) {
  auto& sym = s->symbols;
  auto& heap = s->heap;
  const int32_t n = static_cast<int32_t>(word.size());
  sym.resize(n);
  for (int32_t i = 0; i < n; ++i)
    sym[i] = {impl.byte_id[static_cast<unsigned char>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, 1};
  heap.clear();
  auto queue = [&](int32_t pos) {
    if (sym[pos].next < 0) return;
    if (const MergeTable::Merge* m = impl.merges.Find(sym[pos].id, sym[sym[pos].next].id)) {
      heap.push_back({m->rank, pos, m->id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) queue(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Scratch::Candidate top = heap.back();
    heap.pop_back();
    Scratch::Symbol& left = sym[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Scratch::Symbol& right = sym[left.next];
    const MergeTable::Merge* m = impl.merges.Find(left.id, right.id);
    if (!m || m->id != top.id) continue;
    left.id = top.id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) queue(left.prev);
    queue(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

void EncodeWord(const Impl& impl, std::string_view word, Scratch* s, std::vector<int32_t>* out) {
  if (word.size() == 1) return out->push_back(impl.byte_id[static_cast<unsigned char>(word[0])]);
  if (impl.ignore_merges) {
    if (auto it = impl.bytes_to_id.find(word); it != impl.bytes_to_id.end()) return out->push_back(it->second);
  }
  const bool cacheable = impl.options.word_cache && word.size() <= WordCache::kMaxWord;
  const uint64_t hash = cacheable ? WordCache::Hash(word) : 0;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(impl.cache_mu);
    if (impl.cache.Find(word, hash, out)) return;
  }
  const size_t start = out->size();
  Bpe(impl, word, s, out);
  if (!cacheable) return;
  std::lock_guard<std::mutex> lock(impl.cache_mu);
  impl.cache.Insert(word, hash, out->data() + start, out->size() - start);
}

// Applies pre-tokenizer Split `step` to `piece` (Isolated: matches and the gaps between them
// are both pieces), recursing into the next step; after the last step each piece is a word.
Status PreTokenize(const Impl& impl, std::string_view piece, size_t step, Scratch* s, std::vector<int32_t>* out) {
  if (step == impl.splits.size()) {
    EncodeWord(impl, piece, s, out);
    return Status::Ok();
  }
  pcre2_match_data* md = s->MatchData(step);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t prev = 0;
  for (size_t pos = 0; pos < piece.size();) {
    const int rc = pcre2_match(impl.splits[step], subject, piece.size(), pos, 0, md, s->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return Status::Runtime(impl.name + ": pre-tokenizer regex \"" + impl.split_patterns[step] +
                             "\" failed: " + reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (end == begin) {  // empty matches split nothing; step over one character
      size_t len = 1;
      NextChar(subject + begin, piece.size() - begin, &len);
      pos = begin + len;
      continue;
    }
    if (begin > prev) RETURN_IF_ERROR(PreTokenize(impl, piece.substr(prev, begin - prev), step + 1, s, out));
    RETURN_IF_ERROR(PreTokenize(impl, piece.substr(begin, end - begin), step + 1, s, out));
    prev = pos = end;
  }
  if (prev < piece.size()) RETURN_IF_ERROR(PreTokenize(impl, piece.substr(prev), step + 1, s, out));
  return Status::Ok();
}

}  // namespace

// ---- public API ---------------------------------------------------------------------------

StatusOr<Tokenizer> Tokenizer::Build(std::string_view tokenizer_json, const std::string& name,
                                     std::string_view config_json, const std::string& config_name,
                                     TokenizerOptions options) {
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->name = name;
  auto parsed = ParseJson(tokenizer_json);
  RETURN_IF_ERROR(parsed.status().WithPrefix(name + ": "));
  const json root = std::move(parsed).value();
  Status st = [&]() -> Status {
    if (!root.is_object()) return Status::Invalid("not a JSON object");
    RETURN_IF_ERROR(LoadModel(root, impl.get()));
    RETURN_IF_ERROR(LoadAddedTokens(root, impl.get()));
    RETURN_IF_ERROR(LoadNormalizer(root));
    RETURN_IF_ERROR(LoadPreTokenizer(root, impl.get()));
    RETURN_IF_ERROR(LoadDecoder(root));
    return LoadPostProcessor(root, impl.get());
  }();
  RETURN_IF_ERROR(st.WithPrefix(name + ": "));
  if (!config_json.empty()) {
    auto config = ParseJson(config_json);
    RETURN_IF_ERROR(config.status().WithPrefix(config_name + ": "));
    RETURN_IF_ERROR(ApplyConfig(*config, impl.get()).WithPrefix(config_name + ": "));
  }
  return Tokenizer(std::move(impl));
}

StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view tokenizer_json, std::string_view config_json,
                                        const std::string& name, TokenizerOptions options) {
  return Build(tokenizer_json, name, config_json, "tokenizer_config.json", options);
}

StatusOr<Tokenizer> Tokenizer::Load(const std::string& dir, TokenizerOptions options) {
  const std::string path = JoinPath(dir, "tokenizer.json");
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string config;
  const std::string config_path = JoinPath(dir, "tokenizer_config.json");
  if (FileExists(config_path)) {
    ASSIGN_OR_RETURN(config, ReadFile(config_path));
    if (config.empty()) return Status::Invalid(config_path + ": empty file");
  }
  return Build(text, path, config, config_path, options);
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  thread_local Scratch scratch;
  const Impl& impl = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = impl.prefix;
  auto plain = [&](std::string_view piece, int32_t id) -> Status {
    if (id >= 0) return ids.push_back(id), Status::Ok();
    return PreTokenize(impl, piece, 0, &scratch, &ids);
  };
  RETURN_IF_ERROR(SplitAdded(impl.added[0], text, [&](std::string_view piece, int32_t id) -> Status {
    if (id >= 0) return ids.push_back(id), Status::Ok();
    return SplitAdded(impl.added[1], piece, plain);
  }));
  if (add_special_tokens) ids.insert(ids.end(), impl.suffix.begin(), impl.suffix.end());
  return ids;
}

StatusOr<std::string> Tokenizer::DecodeBytes(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || impl.id_kind[id] == Kind::kNone)
      return Status::Invalid("token id " + std::to_string(id) + " is not in the vocabulary (" +
                             std::to_string(vocab_size()) + " ids)");
    if (skip_special_tokens && impl.id_kind[id] == Kind::kSpecial) continue;
    out += impl.id_bytes[id];
  }
  return out;
}

StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  ASSIGN_OR_RETURN(std::string bytes, DecodeBytes(ids, skip_special_tokens));
  return Utf8Lossy(bytes);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_bytes.size()); }

Status CheckTokenizerFitsModel(const Tokenizer& tokenizer, const std::string& tokenizer_dir,
                               int64_t model_vocab_size, const std::string& model_dir) {
  if (tokenizer.vocab_size() <= model_vocab_size) return Status::Ok();
  return Status::Invalid("the tokenizer in " + tokenizer_dir + " has ids up to " +
                         std::to_string(tokenizer.vocab_size() - 1) + ", past the vocab_size " +
                         std::to_string(model_vocab_size) + " of the model in " + model_dir +
                         ": give the tokenizer the model was made with");
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_kind[id] == Kind::kSpecial;
}
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  for (size_t i = 0, len = 0; i < bytes.size(); i += len) {
    if (NextChar(p + i, bytes.size() - i, &len) == Utf8::kValid) {
      out.append(bytes.data() + i, len);
    } else {
      AppendUtf8(0xFFFD, &out);
    }
  }
  return out;
}

Status StreamDecoder::Push(int32_t id, std::string* out) {
  ASSIGN_OR_RETURN(std::string bytes, tokenizer_->DecodeBytes(std::span<const int32_t>(&id, 1), skip_special_));
  pending_ += bytes;
  // Emit everything up to the last character that may still be completed by later bytes.
  const auto* p = reinterpret_cast<const uint8_t*>(pending_.data());
  size_t done = 0;
  for (size_t len = 0; done < pending_.size(); done += len) {
    const Utf8 kind = NextChar(p + done, pending_.size() - done, &len);
    if (kind == Utf8::kTruncated) break;
    if (kind == Utf8::kValid) {
      out->append(pending_, done, len);
    } else {
      AppendUtf8(0xFFFD, out);
    }
  }
  pending_.erase(0, done);
  return Status::Ok();
}

void StreamDecoder::Finish(std::string* out) {
  if (!pending_.empty()) *out += Utf8Lossy(pending_);
  pending_.clear();
}

}  // namespace dsv3
