/*
 * gb-physwrite: writes known bytes at a guest-physical address through /dev/mem, so the host
 * can check that glassbox reads guest RAM at the right gpa.
 *
 *   gb-physwrite ADDR TEXT               write TEXT (no NUL) at ADDR
 *   gb-physwrite --pattern ADDR LEN      write the reference pattern (below), LEN bytes
 *   gb-physwrite --tick ADDR PERIOD_US   forever: every PERIOD_US, store a u64 counter at ADDR
 *                                        and CLOCK_MONOTONIC ns at ADDR+8 (latency probes)
 *   gb-physwrite --fill ADDR LEN BYTE    LEN bytes of BYTE (the compositor's 0xff region)
 *   gb-physwrite --text ADDR LEN         LEN bytes of printable ASCII: "GLASSBOX TEXT REGION. "
 *                                        repeated (the compositor's text region)
 *
 * ADDR must lie in a range the kernel does not use as RAM (the reference guest reserves
 * 2 MiB at 0x7000000 with memmap=2M$0x7000000), or STRICT_DEVMEM refuses the mapping.
 * Reference pattern: bytes 0..31 hold "GLASSBOX-PHYS-PATTERN-V1" padded with NULs; byte i
 * (i >= 32) holds (i * 131 + 7) & 0xff.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile uint8_t* map_phys(unsigned long addr, size_t len) {
  int fd = open("/dev/mem", O_RDWR | O_SYNC);
  if (fd < 0) {
    perror("gb-physwrite: /dev/mem");
    exit(1);
  }
  const unsigned long page = addr & ~0xfffUL;
  const size_t span = (addr - page) + len;
  void* p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)page);
  if (p == MAP_FAILED) {
    perror("gb-physwrite: mmap /dev/mem");
    exit(1);
  }
  close(fd);
  return (volatile uint8_t*)p + (addr - page);
}

int main(int argc, char** argv) {
  if (argc == 4 && strcmp(argv[1], "--pattern") == 0) {
    const unsigned long addr = strtoul(argv[2], NULL, 0);
    const size_t len = strtoul(argv[3], NULL, 0);
    if (len < 32 || len > (2u << 20)) {
      fprintf(stderr, "gb-physwrite: LEN must be 32..2 MiB\n");
      return 2;
    }
    volatile uint8_t* p = map_phys(addr, len);
    char head[32] = "GLASSBOX-PHYS-PATTERN-V1";
    for (size_t i = 0; i < 32; ++i) p[i] = (uint8_t)head[i];
    for (size_t i = 32; i < len; ++i) p[i] = (uint8_t)((i * 131 + 7) & 0xff);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--tick") == 0) {
    const unsigned long addr = strtoul(argv[2], NULL, 0);
    const long period_us = strtol(argv[3], NULL, 0);
    volatile uint64_t* p = (volatile uint64_t*)map_phys(addr, 16);
    struct timespec delay = {period_us / 1000000, (period_us % 1000000) * 1000};
    for (uint64_t n = 1;; ++n) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      p[1] = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
      p[0] = n;
      nanosleep(&delay, NULL);
    }
  }
  if ((argc == 5 && strcmp(argv[1], "--fill") == 0) ||
      (argc == 4 && strcmp(argv[1], "--text") == 0)) {
    const unsigned long addr = strtoul(argv[2], NULL, 0);
    const size_t len = strtoul(argv[3], NULL, 0);
    if (len < 1 || len > (2u << 20)) {
      fprintf(stderr, "gb-physwrite: LEN must be 1..2 MiB\n");
      return 2;
    }
    volatile uint8_t* p = map_phys(addr, len);
    if (argc == 5) {
      const uint8_t byte = (uint8_t)strtoul(argv[4], NULL, 0);
      for (size_t i = 0; i < len; ++i) p[i] = byte;
    } else {
      static const char kText[] = "GLASSBOX TEXT REGION. ";
      for (size_t i = 0; i < len; ++i) p[i] = (uint8_t)kText[i % (sizeof kText - 1)];
    }
    return 0;
  }
  if (argc == 3 && argv[1][0] != '-') {
    const unsigned long addr = strtoul(argv[1], NULL, 0);
    const size_t len = strlen(argv[2]);
    volatile uint8_t* p = map_phys(addr, len);
    for (size_t i = 0; i < len; ++i) p[i] = (uint8_t)argv[2][i];
    return 0;
  }
  fprintf(stderr,
          "usage: gb-physwrite ADDR TEXT | --pattern ADDR LEN | --tick ADDR PERIOD_US | --fill "
          "ADDR LEN BYTE | --text ADDR LEN\n");
  return 2;
}
