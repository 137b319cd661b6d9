// The build's version (git hash at configure time), recorded in results files. It lives in a
// generated file of its own so a new commit recompiles one file, not every library.
#pragma once

namespace dsv3 {
const char* Dsv3Version();
}  // namespace dsv3
