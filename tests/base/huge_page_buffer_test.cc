// HugePageBuffer: zeroed anonymous memory on 2 MiB boundaries, advised for transparent huge
// pages, unmapped when dropped.
#include "engine/base/huge_page_buffer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <new>
#include <string>
#include <utility>

namespace dsv3 {
namespace {

// The VmFlags line of the mapping of /proc/self/smaps that contains p ("" when none is found).
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = a >= lo && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// Whether [p, p + n) is mapped in this process (mincore fails with ENOMEM where it is not).
bool Mapped(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(getpagesize());
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  unsigned char vec[1024];
  const size_t pages = (reinterpret_cast<uintptr_t>(p) + n - begin + page - 1) / page;
  if (pages > sizeof(vec)) return false;
  return mincore(reinterpret_cast<void*>(begin), pages * page, vec) == 0 || errno != ENOMEM;
}

TEST(HugePageBufferTest, ZeroedAlignedAndWritable) {
  const size_t bytes = (size_t{5} << 20) + 3;
  HugePageBuffer buf(bytes);
  ASSERT_FALSE(buf.empty());
  EXPECT_EQ(buf.size(), bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf.data()) % HugePageBuffer::kHugePageBytes, 0u);
  auto* b = static_cast<unsigned char*>(buf.data());
  size_t nonzero = 0;
  for (size_t i = 0; i < bytes; i += 4093) nonzero += b[i] != 0;
  EXPECT_EQ(nonzero + (b[bytes - 1] != 0), 0u);
  for (size_t i = 0; i < bytes; i += 4096) b[i] = static_cast<unsigned char>(i);
  b[bytes - 1] = 7;
  EXPECT_EQ(b[bytes - 1], 7);
  EXPECT_TRUE(HugePageBuffer(0).empty());
}

// A mapping the kernel refuses throws, as new would, rather than leaving its caller a buffer to
// check: far past any address space, and past what the rounding to 2 MiB can hold.
TEST(HugePageBufferTest, RefusedMappingThrows) {
  EXPECT_THROW(HugePageBuffer(size_t{1} << 62), std::bad_alloc);
  EXPECT_THROW(HugePageBuffer(SIZE_MAX - 5), std::bad_alloc);
}

TEST(HugePageBufferTest, AdvisedForHugePages) {
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK) != 0)
    GTEST_SKIP() << "no transparent huge pages in this kernel";
  HugePageBuffer buf(size_t{4} << 20);
  ASSERT_FALSE(buf.empty());
  const std::string flags = VmFlagsOf(buf.data());
  if (flags.empty()) GTEST_SKIP() << "/proc/self/smaps cannot be read here";
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;  // VM_HUGEPAGE: MADV_HUGEPAGE was applied
}

TEST(HugePageBufferTest, MovedOwnershipAndUnmappedWhenDropped) {
  const size_t bytes = size_t{3} << 20;
  HugePageBuffer a(bytes);
  ASSERT_FALSE(a.empty());
  void* p = a.data();
  HugePageBuffer b(std::move(a));
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), bytes);
  EXPECT_TRUE(Mapped(p, bytes));
  b = HugePageBuffer();
  EXPECT_TRUE(b.empty());
  EXPECT_FALSE(Mapped(p, bytes)) << "the mapping outlived its buffer";
}

}  // namespace
}  // namespace dsv3
