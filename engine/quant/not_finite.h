// The one error every weight encoder gives for a NaN or infinite input: quantizing it would
// silently poison a whole block's scale.
#pragma once

#include <cstdint>
#include <string>

#include "engine/base/status.h"

namespace dsv3 {

inline Status NotFiniteWeight(const std::string& what, int64_t r, int64_t c) {
  return Status::Invalid(what + ": weight [" + std::to_string(r) + "," + std::to_string(c) +
                         "] is not finite; refusing to quantize it");
}

}  // namespace dsv3
