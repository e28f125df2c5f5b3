/*
 * gb-sleeper: idle workload of the glassbox reference guest.
 *
 * Sleeps forever, waking every INTERVAL seconds to bump a counter (so it shows up as
 * an interruptible sleeper that is nonetheless scheduled now and then). The init starts
 * two instances, giving two processes with the same name.
 *
 * Usage:  gb-sleeper [INTERVAL_SECONDS]   (1..3600, default 5)
 * Memory use is a few KiB. Built by orchestration/build-guest with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

static volatile uint64_t g_wakeups;

int main(int argc, char** argv) {
  long interval = argc > 1 ? strtol(argv[1], NULL, 10) : 5;
  if (interval < 1) interval = 1;
  if (interval > 3600) interval = 3600;

  prctl(PR_SET_NAME, "gb-sleeper", 0, 0, 0);

  for (;;) {
    struct timespec ts = {(time_t)interval, 0};
    while (nanosleep(&ts, &ts) != 0) { /* resume after a signal */
    }
    g_wakeups = g_wakeups + 1;
  }
}
