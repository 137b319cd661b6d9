// Hugging Face byte-level BPE tokenizer (the DeepSeek-V3 `tokenizer.json` family).
//
// Encoding follows the `tokenizers` library step by step so that ids are byte-identical:
// added/special tokens are cut out first (leftmost-longest), the remaining text goes through
// the pre-tokenizer's Split regexes (PCRE2, UTF + UCP, JIT), each piece is byte-level BPE'd
// with ranked merges. Decoding maps tokens back to bytes (the ByteLevel decoder) and, like
// Rust's from_utf8_lossy, turns invalid UTF-8 into U+FFFD.
//
// Anything tokenizer.json declares that this code does not implement (a normalizer, a
// pre-tokenizer, a Split behaviour, a model option, a decoder) is a load error naming it:
// a tokenizer that silently skips a step gives plausible but wrong ids.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct TokenizerOptions {
  // Memoizes BPE per pre-token word. Off only to compare against the uncached path.
  bool word_cache = true;
};

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (BOS/EOS policy).
  static StatusOr<Tokenizer> Load(const std::string& dir, TokenizerOptions options = {});
  // Same from JSON texts; `config_json` may be empty. Errors are prefixed with `name`.
  static StatusOr<Tokenizer> FromJson(std::string_view tokenizer_json, std::string_view config_json,
                                      const std::string& name = "tokenizer.json",
                                      TokenizerOptions options = {});

  // Any byte string is accepted: invalid UTF-8 is BPE'd byte by byte, never rejected.
  // add_special_tokens adds BOS/EOS as tokenizer_config.json's add_bos_token/add_eos_token
  // say (HF `add_special_tokens=True`); without a config, as a TemplateProcessing
  // post-processor says.
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens = false) const;

  // Valid UTF-8 (invalid byte sequences become U+FFFD, as in Hugging Face).
  StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // The raw bytes the ids stand for; Encode's inverse even for invalid UTF-8 input.
  StatusOr<std::string> DecodeBytes(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // One more than the largest id (vocabulary plus added tokens).
  int32_t vocab_size() const;
  // The id of a token as written in tokenizer.json (vocab string or added-token content).
  std::optional<int32_t> TokenId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // Content of bos/eos from tokenizer_config.json ("" when it names none).
  const std::string& bos_token() const;
  const std::string& eos_token() const;

  struct Impl;

 private:
  static StatusOr<Tokenizer> Build(std::string_view tokenizer_json, const std::string& name,
                                   std::string_view config_json, const std::string& config_name,
                                   TokenizerOptions options);
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Turns ids arriving one at a time into text that never ends inside a UTF-8 character:
// bytes of an incomplete character wait for the next token. Concatenating every Push and
// the final Finish gives exactly Decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer* tokenizer, bool skip_special_tokens = false)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}

  // Appends to *out the text completed by `id` (possibly nothing).
  Status Push(int32_t id, std::string* out);
  // End of stream: a dangling partial character becomes U+FFFD, as Decode() does.
  void Finish(std::string* out);

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of a character not yet complete
};

// A tokenizer fits a model when every id it can produce is below the model's vocab_size; the
// model may have more rows (DeepSeek-V3 pads its tokenizer's 128815 ids to 129280). Otherwise
// the error names both directories: text would encode to ids the embedding has no row for.
Status CheckTokenizerFitsModel(const Tokenizer& tokenizer, const std::string& tokenizer_dir,
                               int64_t model_vocab_size, const std::string& model_dir);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

}  // namespace dsv3
