#include <gtest/gtest.h>
#include "engine/base/dtype.h"
TEST(DType, E4M3Table) {
  EXPECT_EQ(dsv3::E4M3ToF32(0x7e), 448.0f);
  EXPECT_EQ(dsv3::F32ToE4M3(448.0f), 0x7e);
  EXPECT_EQ(dsv3::E4M3ToF32(0x38), 1.0f);
}
