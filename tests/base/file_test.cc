// AtomicFile gathers writes into whole chunks (kChunkBytes at multiples of kChunkBytes): the
// bytes must still arrive complete and in order, whatever the sizes of the pieces, and nothing
// may be left under either name when a write is abandoned. PopulateMapping maps a range's
// pages ahead of the reads.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/base/file.h"
#include "tests/testing/testing.h"

namespace dsv3 {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 4) {
    const uint32_t r = rng();
    for (size_t j = i; j < n && j < i + 4; ++j) s[j] = static_cast<char>(r >> (8 * (j - i)));
  }
  return s;
}

TEST(AtomicFileTest, PiecesOfEverySizeArriveInOrder) {
  testing::TempDir dir;
  const size_t chunk = AtomicFile::kChunkBytes;
  // Small pieces, pieces that cross a chunk's end, exactly a chunk at a boundary and off one,
  // several chunks at once, and a short tail.
  const std::vector<size_t> sizes = {1, 7, chunk - 8, 3, chunk, 5, 2 * chunk + 11, 100, 9};
  const std::string path = dir.Join("out.bin");
  std::string expected;
  {
    AtomicFile f(path);
    ASSERT_TRUE(f.Open().ok());
    uint32_t seed = 1;
    for (size_t n : sizes) {
      const std::string piece = RandomBytes(n, seed++);
      ASSERT_TRUE(f.Write(piece.data(), piece.size()).ok());
      expected += piece;
    }
    EXPECT_FALSE(FileExists(path)) << "the final name appears only at Commit";
    ASSERT_TRUE(f.Commit().ok());
    EXPECT_FALSE(FileExists(f.temp_path()));
  }
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), expected.size());
  EXPECT_TRUE(*got == expected) << "bytes differ";

  auto mapped = MappedFile::Open(path);
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  ASSERT_EQ(mapped->size(), expected.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(mapped->data()), mapped->size()), expected);
}

// Whether the page holding p is in this process's page tables (/proc/self/pagemap bit 63);
// -1 where pagemap cannot be read.
int PagePresent(const void* p) {
  const int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return -1;
  uint64_t entry = 0;
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / static_cast<uintptr_t>(getpagesize()) * 8);
  const bool ok = pread(fd, &entry, sizeof entry, at) == static_cast<ssize_t>(sizeof entry);
  close(fd);
  return ok ? static_cast<int>(entry >> 63) : -1;
}

long MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

TEST(MappedFileTest, PopulatedRangeIsMappedBeforeItIsRead) {
  testing::TempDir dir;
  const std::string path = dir.Join("weights.bin");
  const size_t mib = size_t{1} << 20;
  {
    AtomicFile f(path);
    ASSERT_TRUE(f.Open().ok());
    const std::string bytes = RandomBytes(12 * mib, 3);
    ASSERT_TRUE(f.Write(bytes.data(), bytes.size()).ok());
    ASSERT_TRUE(f.Commit().ok());
  }
  auto mapped = MappedFile::Open(path);
  ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
  const uint8_t* base = mapped->data();
  const size_t page = static_cast<size_t>(getpagesize());
  // Nothing is mapped until read: the pages of the last 4 MiB are absent before and after the
  // populate below (2 MiB pages: the range ends 2 MiB short of them).
  if (PagePresent(base) < 0) GTEST_SKIP() << "/proc/self/pagemap cannot be read here";
  EXPECT_EQ(PagePresent(base + 8 * mib), 0) << "a page present before any read";
  // An unaligned range, as a tensor's is: every page it touches gets mapped.
  const uint8_t* begin = base + mib + 5;
  const size_t n = 5 * mib - 17;
  if (!PopulateMapping(begin, n)) GTEST_SKIP() << "MADV_POPULATE_READ unsupported (Linux < 5.14)";
  for (size_t off = 0; off < n; off += page) ASSERT_EQ(PagePresent(begin + off), 1) << "offset " << off;
  EXPECT_EQ(PagePresent(begin + n - 1), 1);
  EXPECT_EQ(PagePresent(base + 8 * mib), 0) << "a page past the range was mapped";
  // Reading the range then takes no fault.
  const long before = MinorFaults();
  uint64_t sum = 0;
  for (size_t off = 0; off < n; off += page / 2) sum += begin[off];
  const long faults = MinorFaults() - before;
  EXPECT_EQ(faults, 0) << "reading the populated range faulted (sum " << sum << ")";
  EXPECT_TRUE(PopulateMapping(nullptr, 0));
}

TEST(AtomicFileTest, AbandonedWriteLeavesNothing) {
  testing::TempDir dir;
  const std::string path = dir.Join("out.bin");
  std::string temp;
  {
    AtomicFile f(path);
    ASSERT_TRUE(f.Open().ok());
    temp = f.temp_path();
    const std::string piece = RandomBytes(AtomicFile::kChunkBytes + 123, 7);
    ASSERT_TRUE(f.Write(piece.data(), piece.size()).ok());
    EXPECT_TRUE(FileExists(temp));
  }
  EXPECT_FALSE(FileExists(path));
  EXPECT_FALSE(FileExists(temp));
}

// The temp names Open makes are recognized as such, with the name they were for.
TEST(AtomicFileTest, TempNamesAreRecognized) {
  testing::TempDir dir;
  AtomicFile f(dir.Join("model.safetensors"));
  ASSERT_TRUE(f.Open().ok());
  const std::string temp = f.temp_path().substr(dir.path().size() + 1);
  std::string final_name;
  EXPECT_TRUE(AtomicFile::IsTempName(temp, &final_name)) << temp;
  EXPECT_EQ(final_name, "model.safetensors");
  EXPECT_TRUE(AtomicFile::IsTempName("config.json.tmp.123.4", &final_name));
  EXPECT_EQ(final_name, "config.json");
  for (const char* other : {"model.safetensors", "a.tmp.", "a.tmp.12", "a.tmp.12.", "a.tmp.x.3", "a.tmp.1.2b", ".tmp.1.2"})
    EXPECT_FALSE(AtomicFile::IsTempName(other, &final_name)) << other;
}

TEST(AtomicFileTest, EmptyFileCommits) {
  testing::TempDir dir;
  const std::string path = dir.Join("empty.bin");
  AtomicFile f(path);
  ASSERT_TRUE(f.Open().ok());
  ASSERT_TRUE(f.Commit().ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

// A directory where a file is expected, or a file where a directory is, is the user's
// mistake and says so (exit 2), where read() and mmap() had failed as runtime errors ("Is a
// directory", "No such device"); as does CheckOutputPath for an output.
TEST(FileErrorsTest, DirectoriesAndFilesInTheWrongPlaceAreInputErrors) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.Join("file"), "x").ok());
  for (const auto& st : {ReadFile(dir.path()).status(), MappedFile::Open(dir.path()).status()}) {
    EXPECT_EQ(st.code(), StatusCode::kInvalidInput);
    EXPECT_EQ(st.message(), dir.path() + ": a directory, not a file");
  }
  for (const auto& st : {ReadFile(dir.Join("file/x")).status(), MappedFile::Open(dir.Join("file/x")).status()}) {
    EXPECT_EQ(st.code(), StatusCode::kNotFound);
    EXPECT_EQ(st.message(), dir.Join("file/x") + ": no such file (a part of the path is a file)");
  }
  EXPECT_EQ(ReadFile(dir.Join("none")).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(CheckOutputPath(dir.Join("out.json"), "--output").ok());
  EXPECT_TRUE(CheckOutputPath("relative.json", "--output").ok());
  EXPECT_EQ(CheckOutputPath(dir.path(), "--output").message(), "--output " + dir.path() + ": a directory, not a file");
  EXPECT_EQ(CheckOutputPath(dir.Join("no/out.json"), "--out").message(),
            "--out " + dir.Join("no/out.json") + ": no directory " + dir.Join("no"));
  EXPECT_EQ(CheckOutputPath("", "--output").code(), StatusCode::kInvalidInput);
}

}  // namespace
}  // namespace dsv3
