/*
 * sigdfl: run a program with every signal at its default disposition and none blocked.
 *
 * Usage:  sigdfl PROG [ARGS...]     (installed as /usr/libexec/glassbox/sigdfl)
 *
 * Why: a non-interactive shell starts `cmd &` with SIGINT and SIGQUIT ignored, and a shell
 * cannot un-ignore a signal that was ignored when it started. /init starts the tty1 shell
 * that way, so without this wrapper Ctrl-C on tty1 would not interrupt anything.
 * Built by orchestration/build-guest with `gcc -static -O2`.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sigdfl PROG [ARGS...]\n");
    return 2;
  }
  for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL); /* errors: KILL, STOP, ... */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execvp(argv[1], argv + 1);
  perror("sigdfl: exec");
  return 127;
}
