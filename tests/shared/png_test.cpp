#include "shared/png.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace glassbox::shared {
namespace {

class PngTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/glassbox_png_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

// A `width` x `height` BGRX image with `stride_bytes` per row; the padding bytes (X and the
// bytes past width * 4) are 0xAB, so a converter that reads them shows up in the output.
std::vector<uint8_t> make_bgrx(uint32_t width, uint32_t height, uint32_t stride_bytes) {
  std::vector<uint8_t> pixels(std::size_t{stride_bytes} * height, 0xAB);
  for (uint32_t y = 0; y < height; ++y) {
    for (uint32_t x = 0; x < width; ++x) {
      uint8_t* p = &pixels[std::size_t{y} * stride_bytes + x * 4];
      p[0] = static_cast<uint8_t>(x * 7);      // B
      p[1] = static_cast<uint8_t>(y * 13);     // G
      p[2] = static_cast<uint8_t>(x + y * 3);  // R
    }
  }
  return pixels;
}

TEST_F(PngTest, PureRedBgrxPixelDecodesAsRed) {
  // Little-endian 0x00FF0000 = red in QEMU's x8r8g8b8: bytes B=0, G=0, R=255, X=0.
  const std::vector<uint8_t> pixel = {0x00, 0x00, 0xFF, 0x00};
  auto png = encode_png(pixel.data(), 1, 1, 4, PixelFormat::kBgrx8888);
  ASSERT_TRUE(png) << png.error().to_string();
  auto image = decode_png(png->data(), png->size());
  ASSERT_TRUE(image) << image.error().to_string();
  ASSERT_EQ(image->width, 1u);
  ASSERT_EQ(image->height, 1u);
  EXPECT_EQ(image->rgba, (std::vector<uint8_t>{255, 0, 0, 255}));
}

TEST_F(PngTest, BgrxRoundTripThroughFilePreservesPixelsWithPaddedStride) {
  const uint32_t width = 37, height = 23, stride_bytes = 37 * 4 + 12;
  const auto pixels = make_bgrx(width, height, stride_bytes);
  const std::string path = (dir_ / "shot.png").string();
  auto written =
      write_png(path, pixels.data(), width, height, stride_bytes, PixelFormat::kBgrx8888);
  ASSERT_TRUE(written) << written.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto image = read_png(path);
  ASSERT_TRUE(image) << image.error().to_string();
  ASSERT_EQ(image->width, width);
  ASSERT_EQ(image->height, height);
  ASSERT_EQ(image->rgba.size(), std::size_t{width} * height * 4);
  for (uint32_t y = 0; y < height; ++y) {
    for (uint32_t x = 0; x < width; ++x) {
      const uint8_t* in = &pixels[std::size_t{y} * stride_bytes + x * 4];
      const uint8_t* out = &image->rgba[(std::size_t{y} * width + x) * 4];
      ASSERT_EQ(out[0], in[2]) << "R at " << x << "," << y;
      ASSERT_EQ(out[1], in[1]) << "G at " << x << "," << y;
      ASSERT_EQ(out[2], in[0]) << "B at " << x << "," << y;
      ASSERT_EQ(out[3], 255) << "A at " << x << "," << y;
    }
  }
}

TEST_F(PngTest, RgbaRoundTripKeepsAlpha) {
  const uint32_t width = 5, height = 3;
  std::vector<uint8_t> pixels(width * height * 4);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 11);
  auto png = encode_png(pixels.data(), width, height, width * 4, PixelFormat::kRgba8888);
  ASSERT_TRUE(png) << png.error().to_string();
  auto image = decode_png(png->data(), png->size());
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->rgba, pixels);
}

TEST_F(PngTest, BgraRoundTripSwapsRedAndBlueAndKeepsAlpha) {
  const std::vector<uint8_t> pixel = {10, 20, 30, 40};  // B, G, R, A
  auto png = encode_png(pixel.data(), 1, 1, 4, PixelFormat::kBgra8888);
  ASSERT_TRUE(png) << png.error().to_string();
  auto image = decode_png(png->data(), png->size());
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->rgba, (std::vector<uint8_t>{30, 20, 10, 40}));
}

TEST_F(PngTest, EveryCompressionSettingRoundTrips) {
  const uint32_t width = 50, height = 20;
  const auto pixels = make_bgrx(width, height, width * 4);
  std::vector<uint8_t> expected;
  for (std::size_t i = 0; i < std::size_t{width} * height; ++i) {
    expected.insert(expected.end(), {pixels[i * 4 + 2], pixels[i * 4 + 1], pixels[i * 4], 255});
  }
  for (int level : {0, 1, 6, 9}) {
    for (bool adaptive : {false, true}) {
      PngOptions options;
      options.compression_level = level;
      options.adaptive_filters = adaptive;
      auto png =
          encode_png(pixels.data(), width, height, width * 4, PixelFormat::kBgrx8888, options);
      ASSERT_TRUE(png) << png.error().to_string();
      auto image = decode_png(png->data(), png->size());
      ASSERT_TRUE(image) << image.error().to_string();
      EXPECT_EQ(image->rgba, expected) << "level " << level << " adaptive " << adaptive;
    }
  }
}

TEST_F(PngTest, RejectsCompressionLevelOutOfRange) {
  const auto pixels = make_bgrx(2, 2, 8);
  PngOptions options;
  options.compression_level = 10;
  auto png = encode_png(pixels.data(), 2, 2, 8, PixelFormat::kBgrx8888, options);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
  EXPECT_NE(png.error().message.find("compression_level"), std::string::npos);
}

TEST_F(PngTest, OverwritesExistingFile) {
  const std::string path = (dir_ / "shot.png").string();
  const auto small = make_bgrx(2, 2, 8);
  const auto big = make_bgrx(9, 4, 36);
  ASSERT_TRUE(write_png(path, small.data(), 2, 2, 8, PixelFormat::kBgrx8888));
  ASSERT_TRUE(write_png(path, big.data(), 9, 4, 36, PixelFormat::kBgrx8888));
  auto image = read_png(path);
  ASSERT_TRUE(image) << image.error().to_string();
  EXPECT_EQ(image->width, 9u);
  EXPECT_EQ(image->height, 4u);
}

TEST_F(PngTest, RejectsZeroWidth) {
  const std::vector<uint8_t> pixels(64);
  auto png = encode_png(pixels.data(), 0, 4, 16, PixelFormat::kBgrx8888);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
  EXPECT_NE(png.error().message.find("width"), std::string::npos) << png.error().message;
}

TEST_F(PngTest, RejectsZeroHeight) {
  const std::vector<uint8_t> pixels(64);
  auto png = encode_png(pixels.data(), 4, 0, 16, PixelFormat::kBgrx8888);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
  EXPECT_NE(png.error().message.find("height"), std::string::npos) << png.error().message;
}

TEST_F(PngTest, RejectsWidthAboveLimit) {
  const std::vector<uint8_t> pixels(64);
  auto png = encode_png(pixels.data(), kMaxPngDimension + 1, 1, (kMaxPngDimension + 1) * 4,
                        PixelFormat::kBgrx8888);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
  EXPECT_NE(png.error().message.find("width"), std::string::npos) << png.error().message;
}

TEST_F(PngTest, RejectsStrideBelowWidthTimesFour) {
  const std::vector<uint8_t> pixels(64);
  auto png = encode_png(pixels.data(), 4, 4, 15, PixelFormat::kBgrx8888);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
  EXPECT_NE(png.error().message.find("stride_bytes"), std::string::npos) << png.error().message;
}

TEST_F(PngTest, RejectsNullPixels) {
  auto png = encode_png(nullptr, 4, 4, 16, PixelFormat::kBgrx8888);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.error().code, Errc::kInvalidArgument);
}

TEST_F(PngTest, RejectedWriteLeavesNoFile) {
  const std::string path = (dir_ / "bad.png").string();
  const std::vector<uint8_t> pixels(64);
  auto written = write_png(path, pixels.data(), 4, 4, 8, PixelFormat::kBgrx8888);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, Errc::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(PngTest, WriteIntoMissingDirectoryFailsWithIo) {
  const std::string path = (dir_ / "no" / "such" / "dir.png").string();
  const auto pixels = make_bgrx(2, 2, 8);
  auto written = write_png(path, pixels.data(), 2, 2, 8, PixelFormat::kBgrx8888);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, Errc::kIo);
}

TEST_F(PngTest, ReadMissingFileIsNotFound) {
  auto image = read_png((dir_ / "missing.png").string());
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code, Errc::kNotFound);
}

TEST_F(PngTest, ReadGarbageIsProtocolError) {
  const std::string path = (dir_ / "garbage.png").string();
  std::ofstream(path) << "this is not a PNG file at all";
  auto image = read_png(path);
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code, Errc::kProtocol);
}

TEST_F(PngTest, ReadTruncatedPngIsProtocolError) {
  const auto pixels = make_bgrx(64, 64, 256);
  auto png = encode_png(pixels.data(), 64, 64, 256, PixelFormat::kBgrx8888);
  ASSERT_TRUE(png);
  auto image = decode_png(png->data(), png->size() / 2);
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code, Errc::kProtocol);
}

}  // namespace
}  // namespace glassbox::shared
