#include "shared/png.hpp"

#include <fcntl.h>
#include <spng.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace glassbox::shared {
namespace {

struct SpngCtxDeleter {
  void operator()(spng_ctx* ctx) const noexcept { spng_ctx_free(ctx); }
};
using SpngCtx = std::unique_ptr<spng_ctx, SpngCtxDeleter>;

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

bool has_alpha(PixelFormat format) {
  return format == PixelFormat::kBgra8888 || format == PixelFormat::kRgba8888;
}

Result<void> validate(const uint8_t* pixels, uint32_t width, uint32_t height, uint32_t stride_bytes,
                      const PngOptions& options) {
  if (pixels == nullptr) return fail(Errc::kInvalidArgument, "pixels is null");
  if (width == 0 || width > kMaxPngDimension) {
    return fail(Errc::kInvalidArgument, "width " + std::to_string(width) + " outside 1.." +
                                            std::to_string(kMaxPngDimension));
  }
  if (height == 0 || height > kMaxPngDimension) {
    return fail(Errc::kInvalidArgument, "height " + std::to_string(height) + " outside 1.." +
                                            std::to_string(kMaxPngDimension));
  }
  if (uint64_t{stride_bytes} < uint64_t{width} * 4) {
    return fail(Errc::kInvalidArgument, "stride_bytes " + std::to_string(stride_bytes) +
                                            " below width * 4 = " + std::to_string(width * 4));
  }
  if (options.compression_level < 0 || options.compression_level > 9) {
    return fail(Errc::kInvalidArgument,
                "compression_level " + std::to_string(options.compression_level) + " outside 0..9");
  }
  return {};
}

// Converts one row of `width` 4-byte pixels in `format` to packed RGB8 or RGBA8 at `out`.
void convert_row(const uint8_t* in, uint8_t* out, uint32_t width, PixelFormat format) {
  switch (format) {
    case PixelFormat::kBgrx8888:
      for (uint32_t x = 0; x < width; ++x, in += 4, out += 3) {
        out[0] = in[2];
        out[1] = in[1];
        out[2] = in[0];
      }
      return;
    case PixelFormat::kRgbx8888:
      for (uint32_t x = 0; x < width; ++x, in += 4, out += 3) {
        out[0] = in[0];
        out[1] = in[1];
        out[2] = in[2];
      }
      return;
    case PixelFormat::kBgra8888:
      for (uint32_t x = 0; x < width; ++x, in += 4, out += 4) {
        out[0] = in[2];
        out[1] = in[1];
        out[2] = in[0];
        out[3] = in[3];
      }
      return;
    case PixelFormat::kRgba8888:
      std::memcpy(out, in, std::size_t{width} * 4);
      return;
  }
}

tl::unexpected<Error> spng_fail(Errc code, const char* what, int rc) {
  return fail(code, std::string(what) + ": " + spng_strerror(rc));
}

// libspng stream sink: appends to the std::vector<uint8_t> at `user`.
int append_to_vector(spng_ctx* /*ctx*/, void* user, void* src, size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(user);
  const auto* bytes = static_cast<const uint8_t*>(src);
  out->insert(out->end(), bytes, bytes + length);
  return 0;
}

}  // namespace

Result<std::vector<uint8_t>> encode_png(const uint8_t* pixels, uint32_t width, uint32_t height,
                                        uint32_t stride_bytes, PixelFormat format,
                                        const PngOptions& options) {
  if (auto ok = validate(pixels, width, height, stride_bytes, options); !ok) {
    return tl::unexpected(ok.error());
  }
  SpngCtx ctx(spng_ctx_new(SPNG_CTX_ENCODER));
  if (!ctx) return fail(Errc::kInternal, "spng_ctx_new failed");

  std::vector<uint8_t> png;
  png.reserve(std::size_t{width} * height / 4 + 1024);
  if (int rc = spng_set_png_stream(ctx.get(), append_to_vector, &png); rc != 0) {
    return spng_fail(Errc::kInternal, "spng_set_png_stream", rc);
  }
  if (int rc = spng_set_option(ctx.get(), SPNG_IMG_COMPRESSION_LEVEL, options.compression_level);
      rc != 0) {
    return spng_fail(Errc::kInternal, "spng_set_option(compression level)", rc);
  }
  if (int rc = spng_set_option(
          ctx.get(), SPNG_FILTER_CHOICE,
          options.adaptive_filters ? SPNG_FILTER_CHOICE_ALL : SPNG_FILTER_CHOICE_SUB);
      rc != 0) {
    return spng_fail(Errc::kInternal, "spng_set_option(filter choice)", rc);
  }
  const bool alpha = has_alpha(format);
  spng_ihdr ihdr{};
  ihdr.width = width;
  ihdr.height = height;
  ihdr.bit_depth = 8;
  ihdr.color_type = alpha ? SPNG_COLOR_TYPE_TRUECOLOR_ALPHA : SPNG_COLOR_TYPE_TRUECOLOR;
  if (int rc = spng_set_ihdr(ctx.get(), &ihdr); rc != 0) {
    return spng_fail(Errc::kInternal, "spng_set_ihdr", rc);
  }
  if (int rc = spng_encode_image(ctx.get(), nullptr, 0, SPNG_FMT_PNG,
                                 SPNG_ENCODE_PROGRESSIVE | SPNG_ENCODE_FINALIZE);
      rc != 0) {
    return spng_fail(Errc::kInternal, "spng_encode_image", rc);
  }
  const std::size_t row_bytes = std::size_t{width} * (alpha ? 4 : 3);
  std::vector<uint8_t> row(row_bytes);
  for (uint32_t y = 0; y < height; ++y) {
    convert_row(pixels + std::size_t{y} * stride_bytes, row.data(), width, format);
    const int rc = spng_encode_row(ctx.get(), row.data(), row.size());
    // The last row answers SPNG_EOI; any other non-zero answer is an error.
    if (rc == SPNG_EOI && y + 1 == height) break;
    if (rc != 0) return spng_fail(Errc::kInternal, "spng_encode_row", rc);
  }
  return png;
}

Result<void> write_png(const std::string& path, const uint8_t* pixels, uint32_t width,
                       uint32_t height, uint32_t stride_bytes, PixelFormat format,
                       const PngOptions& options) {
  auto png = encode_png(pixels, width, height, stride_bytes, format, options);
  if (!png) return tl::unexpected(png.error());

  const std::string tmp = path + ".tmp";
  FdCloser file{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (file.fd < 0) return fail_errno("open " + tmp);
  auto fail_and_unlink = [&](const std::string& what) {
    auto error = fail_errno(what);
    ::close(file.fd);
    file.fd = -1;
    ::unlink(tmp.c_str());
    return error;
  };
  const uint8_t* data = png->data();
  std::size_t left = png->size();
  while (left > 0) {
    const ssize_t n = ::write(file.fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_and_unlink("write " + tmp);
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::close(file.fd) != 0) {
    file.fd = -1;
    auto error = fail_errno("close " + tmp);
    ::unlink(tmp.c_str());
    return error;
  }
  file.fd = -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto error = fail_errno("rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return error;
  }
  return {};
}

Result<DecodedImage> decode_png(const uint8_t* data, std::size_t size_bytes) {
  if (data == nullptr || size_bytes == 0) return fail(Errc::kProtocol, "empty PNG data");
  SpngCtx ctx(spng_ctx_new(0));
  if (!ctx) return fail(Errc::kInternal, "spng_ctx_new failed");
  // Ancillary chunks (text, ICC profiles) are not needed: bound what libspng keeps of them.
  spng_set_chunk_limits(ctx.get(), 16u << 20, 64u << 20);
  if (int rc = spng_set_png_buffer(ctx.get(), data, size_bytes); rc != 0) {
    return spng_fail(Errc::kProtocol, "PNG", rc);
  }
  spng_ihdr ihdr{};
  if (int rc = spng_get_ihdr(ctx.get(), &ihdr); rc != 0) {
    return spng_fail(Errc::kProtocol, "PNG header", rc);
  }
  if (ihdr.width > kMaxPngDimension || ihdr.height > kMaxPngDimension) {
    return fail(Errc::kOutOfRange, "PNG is " + std::to_string(ihdr.width) + "x" +
                                       std::to_string(ihdr.height) + ", above the limit " +
                                       std::to_string(kMaxPngDimension));
  }
  std::size_t out_size = 0;
  if (int rc = spng_decoded_image_size(ctx.get(), SPNG_FMT_RGBA8, &out_size); rc != 0) {
    return spng_fail(Errc::kProtocol, "PNG size", rc);
  }
  DecodedImage image;
  image.width = ihdr.width;
  image.height = ihdr.height;
  if (out_size != std::size_t{ihdr.width} * ihdr.height * 4) {
    return fail(Errc::kInternal,
                "libspng RGBA8 size " + std::to_string(out_size) + " does not match the header");
  }
  image.rgba.resize(out_size);
  if (int rc = spng_decode_image(ctx.get(), image.rgba.data(), image.rgba.size(), SPNG_FMT_RGBA8,
                                 SPNG_DECODE_TRNS);
      rc != 0) {
    return spng_fail(Errc::kProtocol, "PNG data", rc);
  }
  return image;
}

Result<DecodedImage> read_png(const std::string& path) {
  FdCloser file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) {
    if (errno == ENOENT) return fail(Errc::kNotFound, "PNG file " + path + " does not exist");
    return fail_errno("open " + path);
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) return fail_errno("fstat " + path);
  if (!S_ISREG(st.st_mode)) return fail(Errc::kIo, path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxPngFileBytes) {
    return fail(Errc::kOutOfRange, path + " is " + std::to_string(st.st_size) +
                                       " bytes, above the limit " +
                                       std::to_string(kMaxPngFileBytes));
  }
  std::vector<uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(file.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read " + path);
    }
    if (n == 0) break;  // shrank under us: decode what is there
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  auto image = decode_png(bytes.data(), bytes.size());
  if (!image) {
    return fail(image.error().code, path + ": " + image.error().message);
  }
  return image;
}

}  // namespace glassbox::shared
