/*
 * gb-manymaps: a process with an interesting memory map, for glassbox's `maps` tests.
 *
 * - 600 pages of one anonymous mapping with every other page made writable: about 600
 *   VMAs, so the 6.1 maple tree of its mm has several levels (leaf and internal nodes);
 * - a memfd ("gb-manymaps", 3 pages, shared): a file the kernel names with simple_dname;
 * - 4 pages at offset 8 KiB of /run/gb-manymaps.dat: a file on another mount (the /run
 *   tmpfs), so the path walk crosses a mount point;
 * - 2 shared pages of /dev/zero: a shmem file, shown as "/dev/zero (deleted)";
 * - 5 pages of anonymous rwx memory.
 * Then it sleeps forever. Usage: gb-manymaps (no arguments). Built by
 * orchestration/build-guest with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static void die(const char* what) {
  perror(what);
  _exit(1);
}

int main(void) {
  const long pg = 4096, n = 600;
  prctl(PR_SET_NAME, "gb-manymaps", 0, 0, 0);
  char* a = mmap(NULL, n * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) die("gb-manymaps: mmap anon");
  for (long i = 0; i < n; i += 2) {
    if (mprotect(a + i * pg, pg, PROT_READ | PROT_WRITE) != 0) die("gb-manymaps: mprotect");
    a[i * pg] = 1;
  }
  int mfd = memfd_create("gb-manymaps", 0);
  if (mfd < 0 || ftruncate(mfd, 3 * pg) != 0) die("gb-manymaps: memfd");
  char* m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (m == MAP_FAILED) die("gb-manymaps: mmap memfd");
  m[0] = 1;
  int fd = open("/run/gb-manymaps.dat", O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ftruncate(fd, 8 * pg) != 0) die("gb-manymaps: /run/gb-manymaps.dat");
  volatile char* f = mmap(NULL, 4 * pg, PROT_READ, MAP_SHARED, fd, 2 * pg);
  if (f == MAP_FAILED) die("gb-manymaps: mmap file");
  (void)f[0];
  int zfd = open("/dev/zero", O_RDWR);
  char* z = zfd < 0 ? MAP_FAILED : mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, zfd, 0);
  if (z == MAP_FAILED) die("gb-manymaps: mmap /dev/zero");
  z[0] = 1;
  char* x =
      mmap(NULL, 5 * pg, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (x == MAP_FAILED) die("gb-manymaps: mmap rwx");
  x[0] = 1;
  for (;;) pause();
}
