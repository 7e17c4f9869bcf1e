#!/usr/bin/python3
# pty_prompt.py PROMPT KEYS PROGRAM [ARG...]: runs PROGRAM on a new
# pseudo-terminal, as an operator at a terminal would; once PROGRAM has
# written PROMPT, types KEYS (backslash escapes read as Python's: "\x03"
# is Ctrl-C, which the terminal turns into SIGINT). Waits for PROGRAM to
# end and prints one line: "echo" or "noecho" (whether the terminal
# echoes what is typed, once PROGRAM is gone), then "exit N" or
# "signal N".
#
# PROGRAM starts as a shell at a terminal starts a command: the signals a
# terminal and a logout send (SIGINT, SIGQUIT, SIGHUP) and SIGTERM act as
# by default, and none is blocked, whatever this script's caller ignored.
# A test run started in the background inherits SIGINT and SIGQUIT
# ignored (POSIX: an asynchronous list without job control), and PROGRAM
# rightly leaves an ignored signal ignored: Ctrl-C would then do nothing
# and PROGRAM would wait for its input forever.
#
# Nothing is measured. A PROGRAM still running LIMIT seconds (120) after
# it started is killed, with its process group, and the line is "hung":
# a failure the test sees, not a test run that never ends.
import os
import pty
import select
import signal
import sys
import termios
import time

LIMIT = 120
prompt = sys.argv[1].encode()
keys = sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
pid, fd = pty.fork()
if pid == 0:
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.execvp(sys.argv[3], sys.argv[3:])
deadline = time.monotonic() + LIMIT


def hung():
    """PROGRAM outlived LIMIT: killed, its children too, and said so."""
    os.killpg(pid, signal.SIGKILL)  # pty.fork made it a session leader
    os.waitpid(pid, 0)
    print("hung")
    sys.exit(1)


def drain(want):
    """Reads the terminal until want has been written, or its end."""
    seen = b""
    while want is None or want not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            hung()
        try:
            data = os.read(fd, 1024)
        except OSError:  # EIO: the program is gone
            return False
        if not data:
            return False
        seen += data
    return True


if drain(prompt):
    os.write(fd, keys)
drain(None)
_, st = os.waitpid(pid, 0)
lflag = termios.tcgetattr(fd)[3]
print("echo" if lflag & termios.ECHO else "noecho",
      ("signal %d" % os.WTERMSIG(st)) if os.WIFSIGNALED(st)
      else ("exit %d" % os.WEXITSTATUS(st)))
