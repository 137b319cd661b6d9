// A small synthetic byte-level BPE tokenizer.json for tests: byte tokens 0-255 (id = byte),
// merges he(256) ll(257) hell(258) hello(259), added tokens <|bos|> (260, special) and <|sep|>
// (261, not special). Its ids end at 261, below tiny-v3's vocab_size of 512.
#pragma once

#include <string>

namespace dsv3::testing {

std::string TinyTokenizerJson();

}  // namespace dsv3::testing
