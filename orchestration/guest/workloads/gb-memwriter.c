/*
 * gb-memwriter: memory-dirtying workload of the glassbox reference guest.
 *
 * Maps SIZE_MIB of anonymous memory, touches every page once, then rewrites pages
 * forever at a steady RATE_KIB_PER_S, walking a cursor through the buffer so that a
 * different window of pages is dirtied over time (a full sweep of 16 MiB at 4 MiB/s
 * takes 4 s). Every rewrite changes the page's content (a header with the page index and
 * a sequence number, then a fill byte derived from the sequence), so both dirty-bitmap
 * and content-hashing trackers see it. Each page starts with the text
 *     "GB-MEMWRITER page=<index> seq=<n>"
 * which makes the buffer easy to find in a raw RAM image.
 *
 * Usage:  gb-memwriter [SIZE_MIB [RATE_KIB_PER_S]]
 *   SIZE_MIB        1..256 (default 16)
 *   RATE_KIB_PER_S  4..65536 (default 4096, i.e. 4 MiB/s), applied in 20 ticks/s
 * Built by orchestration/build-guest with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#define PAGE 4096u
#define TICKS_PER_S 20u

static long arg_or(int argc, char** argv, int idx, long def, long lo, long hi) {
  long v = argc > idx ? strtol(argv[idx], NULL, 10) : def;
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

static void write_page(unsigned char* page, size_t index, uint64_t seq) {
  char header[64];
  int n = snprintf(header, sizeof header, "GB-MEMWRITER page=%zu seq=%llu\n", index,
                   (unsigned long long)seq);
  memset(page, (int)(0x20 + (seq % 0x5f)), PAGE);
  memcpy(page, header, (size_t)n);
}

int main(int argc, char** argv) {
  const size_t size_mib = (size_t)arg_or(argc, argv, 1, 16, 1, 256);
  const size_t rate_kib = (size_t)arg_or(argc, argv, 2, 4096, 4, 65536);

  prctl(PR_SET_NAME, "gb-memwriter", 0, 0, 0);

  const size_t npages = size_mib * 1024u * 1024u / PAGE;
  unsigned char* buf =
      mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) {
    perror("gb-memwriter: mmap");
    return 1;
  }

  uint64_t seq = 0;
  for (size_t p = 0; p < npages; ++p) write_page(buf + p * PAGE, p, seq++);

  size_t per_tick = rate_kib / 4u / TICKS_PER_S; /* pages per tick */
  if (per_tick == 0) per_tick = 1;
  size_t cursor = 0;

  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    for (size_t k = 0; k < per_tick; ++k) {
      write_page(buf + cursor * PAGE, cursor, seq++);
      cursor = (cursor + 1) % npages;
    }
    next.tv_nsec += 1000000000L / TICKS_PER_S;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec += 1;
    }
    /* Absolute deadlines keep the rate steady; if we fell far behind, resync. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > next.tv_sec + 1) next = now;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0) {
    }
  }
}
