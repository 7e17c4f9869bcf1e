#!/usr/bin/python3
# pty_prompt.py PROMPT KEYS PROGRAM [ARG...]: runs PROGRAM on a new
# pseudo-terminal, as an operator at a terminal would; once PROGRAM has
# written PROMPT, types KEYS (backslash escapes read as Python's: "\x03"
# is Ctrl-C, which the terminal turns into SIGINT). Waits for PROGRAM to
# end and prints one line: "echo" or "noecho" (whether the terminal
# echoes what is typed, once PROGRAM is gone), then "exit N" or
# "signal N". Nothing is timed: it reads until PROMPT, or the end.
import os
import pty
import sys
import termios

prompt = sys.argv[1].encode()
keys = sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])


def drain(want):
    """Reads the terminal until want has been written, or its end."""
    seen = b""
    while want is None or want not in seen:
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
