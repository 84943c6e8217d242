/* pty-cat: runs a command on a new pty and reads its master until EIO, then prints the seconds
 * and MB/s (BENCHMARKS.md, "Joined output events"). Build and run, e.g.:
 *   cc -O2 -o /tmp/pty-cat pam/benches/pty-cat.c -lutil
 *   cc -O2 -o /tmp/pty-relay pam/benches/pty-relay.c -lutil
 *   LABEL=direct /tmp/pty-cat cat FILE
 *   LABEL=relay /tmp/pty-cat /tmp/pty-relay cat FILE
 *   LABEL=script /tmp/pty-cat script -qfc "cat FILE" /dev/null
 *   LABEL=recorder BREAKGLASS_RECORDING=/tmp/x.cast SHELL=/bin/sh \
 *     /tmp/pty-cat target/release/breakglass-record --grant g-00000000000000be -- "cat FILE"
 * (prefix with `chrt -f 10` for SCHED_FIFO). */
#define _GNU_SOURCE
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <termios.h>
int main(int argc, char **argv) {
  int m, s; struct winsize ws = {40, 120, 0, 0};
  if (openpty(&m, &s, NULL, NULL, &ws) < 0) { perror("openpty"); return 1; }
  struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
  pid_t p = fork();
  if (p == 0) { setsid(); ioctl(s, TIOCSCTTY, 0); dup2(s,0); dup2(s,1); dup2(s,2); close(m); if (s>2) close(s); execvp(argv[1], argv+1); _exit(127); }
  close(s);
  static char buf[1<<16]; long long tot = 0; ssize_t n;
  while ((n = read(m, buf, sizeof buf)) > 0) tot += n;
  clock_gettime(CLOCK_MONOTONIC, &b);
  waitpid(p, NULL, 0);
  double t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  fprintf(stderr, "%-10s %.3f s %.1f MB/s (%lld bytes)\n", getenv("LABEL") ? getenv("LABEL") : "", t, tot / t / 1e6, tot);
  return 0;
}
