/* pty-relay: the least a pty relay does (a new pty for the command, its output copied to
 * stdout, stdout's terminal raw), to compare the recorder with; see pam/benches/pty-cat.c. */
#define _GNU_SOURCE
#include <pty.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
int main(int argc, char **argv) {
  int m, s; struct winsize ws; ioctl(0, TIOCGWINSZ, &ws);
  struct termios t; tcgetattr(0, &t);
  if (openpty(&m, &s, NULL, &t, &ws) < 0) { perror("openpty"); return 1; }
  struct termios raw = t; cfmakeraw(&raw); tcsetattr(0, TCSANOW, &raw);
  pid_t p = fork();
  if (p == 0) { setsid(); ioctl(s, TIOCSCTTY, 0); dup2(s,0); dup2(s,1); dup2(s,2); close(m); if (s>2) close(s); execvp(argv[1], argv+1); _exit(127); }
  close(s);
  static char buf[1<<16]; ssize_t n;
  while ((n = read(m, buf, sizeof buf)) > 0) { char *q = buf; while (n > 0) { ssize_t w = write(1, q, n); if (w <= 0) return 1; q += w; n -= w; } }
  waitpid(p, NULL, 0);
  tcsetattr(0, TCSANOW, &t);
  return 0;
}
