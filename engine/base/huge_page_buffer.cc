#include "engine/base/huge_page_buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace dsv3 {

HugePageBuffer::HugePageBuffer(size_t bytes) {
  if (bytes == 0) return;
  if (bytes > SIZE_MAX / 2) throw std::bad_alloc();  // the rounding below would wrap
  const size_t mapped = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  // mmap aligns to 4 KiB only: map one huge page more, then unmap what lies outside the
  // aligned range.
  void* p = mmap(nullptr, mapped + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + mapped + kHugePageBytes;
  const uintptr_t aligned = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (aligned > begin) munmap(p, aligned - begin);
  munmap(reinterpret_cast<void*>(aligned + mapped), end - (aligned + mapped));  // aligned - begin < one huge page
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), mapped, MADV_HUGEPAGE);
#endif
  data_ = reinterpret_cast<void*>(aligned);
  size_ = bytes;
  mapped_ = mapped;
}

HugePageBuffer::~HugePageBuffer() { Release(); }

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = o.data_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    o.data_ = nullptr;
    o.size_ = o.mapped_ = 0;
  }
  return *this;
}

void HugePageBuffer::Release() {
  if (data_ != nullptr) munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
}

}  // namespace dsv3
