// Anonymous memory for a large buffer that is streamed whole, on 2 MiB boundaries with
// transparent huge pages asked for (MADV_HUGEPAGE). Where THP is "madvise" (Debian's default)
// malloc's memory gets 4 KiB pages, while the weights a decode step streams are mapped with 2
// MiB pages (MappedFile), and on 4 KiB pages a stream is slower: each page is a TLB miss (a
// nested page walk under a hypervisor) and the hardware prefetchers stop at its end. On this
// project's Zen 5 VM a 256-bit read loop on two threads, alternating between two 512 MiB
// buffers, read 45-56 GB/s from 4 KiB pages and 49-60 GB/s from 2 MiB ones (12 of 14 pairs
// faster, by 6-14%). Advice only: where the kernel has no THP the buffer works on 4 KiB pages.
#pragma once

#include <cstddef>

namespace dsv3 {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // `bytes` of zeroed memory (empty() for 0). Throws std::bad_alloc where the kernel refuses
  // the mapping (no memory left, or a size past the address space), as new would.
  explicit HugePageBuffer(size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  HugePageBuffer(HugePageBuffer&& o) noexcept { *this = static_cast<HugePageBuffer&&>(o); }
  HugePageBuffer& operator=(HugePageBuffer&& o) noexcept;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return data_ == nullptr; }

  static constexpr size_t kHugePageBytes = size_t{2} << 20;

 private:
  void Release();
  void* data_ = nullptr;
  size_t size_ = 0;    // as asked for
  size_t mapped_ = 0;  // size_ rounded up to whole 2 MiB pages: what is unmapped
};

}  // namespace dsv3
