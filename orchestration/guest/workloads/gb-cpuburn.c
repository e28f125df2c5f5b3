/*
 * gb-cpuburn: CPU-bound workload of the glassbox reference guest.
 *
 * Runs an FNV-1a style hash loop forever, so the process is always runnable and
 * accumulates CPU time (the top entry of any per-process CPU view).
 *
 * Usage:  gb-cpuburn [BUSY_PERCENT]
 *   BUSY_PERCENT  1..100 (default 100): share of each 100 ms period spent computing;
 *                 the rest is slept. 100 never sleeps.
 * The process lowers its own priority (nice 10) so that the guest's shell and the
 * other workloads stay responsive under TCG. Memory use is a few KiB of stack.
 * Built by orchestration/build-guest with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* Published result, so the compiler cannot drop the loop. */
static volatile uint64_t g_sink;

/* The hot loop, in a function of its own with a stable name: build-guest records its address
 * range (the binary is static and not PIE, so it is the guest virtual address) in
 * guest.json ("hot_loop"), and the tracing tests expect its loop head among the hottest
 * blocks. */
__attribute__((noinline)) uint64_t gb_cpuburn_chunk(uint64_t h, uint64_t* i) {
  for (int k = 0; k < 200000; ++k) {
    h ^= (*i)++ & 0xffu;
    h *= 1099511628211ull; /* FNV prime */
  }
  return h;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char** argv) {
  long busy = argc > 1 ? strtol(argv[1], NULL, 10) : 100;
  if (busy < 1) busy = 1;
  if (busy > 100) busy = 100;

  prctl(PR_SET_NAME, "gb-cpuburn", 0, 0, 0);
  if (nice(10) == -1) { /* not fatal: keep the default priority */
  }

  const uint64_t period_ns = 100ull * 1000000ull;
  const uint64_t busy_ns = period_ns / 100u * (uint64_t)busy;
  uint64_t h = 1469598103934665603ull; /* FNV offset basis */
  uint64_t i = 0;

  for (;;) {
    const uint64_t start = now_ns();
    do {
      /* A chunk of pure computation between clock reads. */
      h = gb_cpuburn_chunk(h, &i);
      g_sink = h;
    } while (now_ns() - start < busy_ns);

    if (busy < 100) {
      const uint64_t idle = period_ns - busy_ns;
      struct timespec ts = {(time_t)(idle / 1000000000ull), (long)(idle % 1000000000ull)};
      nanosleep(&ts, NULL);
    }
  }
}
