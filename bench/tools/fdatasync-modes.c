/* fdatasync-modes: the latency of one small write followed by fdatasync, for four ways of
 * laying out the file (BENCHMARKS.md, "The ceiling with no audit log at all"):
 *   0  appending (as the audit log's segments are written today)
 *   1  appending into space reserved with fallocate(FALLOC_FL_KEEP_SIZE)
 *   2  overwriting 64 MiB that were zero-filled and synced beforehand
 *   3  appending with O_DSYNC (each write durable when it returns; no fdatasync call)
 * Build and run, e.g. (DIR on the file system the daemon's log is on):
 *   cc -O2 -o /tmp/fdatasync-modes bench/tools/fdatasync-modes.c
 *   for m in 0 1 2 3 0 1 2 3; do /tmp/fdatasync-modes $m 2000 DIR; done
 * Prints p50 and p99 of 2,000 writes, each with its fdatasync (mode 3: none); removes its
 * file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODE(0|1|2|3) RECORD_BYTES DIR\n", argv[0]);
    return 2;
  }
  int mode = atoi(argv[1]);
  size_t rec = (size_t)atol(argv[2]);
  const int n = 2000;
  const size_t mib = 1 << 20;
  if (mode < 0 || mode > 3 || rec == 0 || rec > mib || rec * n > 64 * mib) {
    fprintf(stderr, "mode 0, 1, 2 or 3; RECORD_BYTES from 1 to 33554\n");
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/fdatasync-modes.%d", argv[3], (int)getpid());
  int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | (mode == 3 ? O_DSYNC : 0), 0600);
  if (fd < 0) { perror(path); return 1; }
  char *buf = malloc(mib);
  double *lat = malloc(n * sizeof *lat);
  if (!buf || !lat) { perror("malloc"); goto fail; }
  memset(buf, 'x', mib);
  if (mode == 1 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 64 * mib) != 0) { perror("fallocate"); goto fail; }
  if (mode == 2) {
    memset(buf, 0, mib);
    for (int i = 0; i < 64; i++)
      if (write(fd, buf, mib) != (ssize_t)mib) { perror("write"); goto fail; }
    if (fdatasync(fd) != 0) { perror("fdatasync"); goto fail; }
    memset(buf, 'x', mib);
  }
  off_t off = 0;
  for (int i = 0; i < n; i++) {
    double a = now();
    if (pwrite(fd, buf, rec, off) != (ssize_t)rec || (mode != 3 && fdatasync(fd) != 0)) { perror("pwrite/fdatasync"); goto fail; }
    off += rec;
    lat[i] = now() - a;
  }
  qsort(lat, n, sizeof *lat, cmp);
  printf("mode %d, %zu-byte writes: p50 %.0f us, p99 %.0f us\n", mode, rec, lat[n / 2] * 1e6, lat[n * 99 / 100] * 1e6);
  unlink(path);
  return 0;
fail:
  unlink(path);
  return 1;
}
