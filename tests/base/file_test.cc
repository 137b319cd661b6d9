// AtomicFile gathers writes into whole chunks (kChunkBytes at multiples of kChunkBytes): the
// bytes must still arrive complete and in order, whatever the sizes of the pieces, and nothing
// may be left under either name when a write is abandoned.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace dsv3
