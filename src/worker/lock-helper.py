"""Holds a worker's session locks: flock(2) on <dir>/<id>.lock, one open file per lock.

Run by session-locks.ts as `python -I -S lock-helper.py <dir>`, stdin and stdout pipes from
the worker. The locks belong to this process, so they go away exactly when it does; it exits
when its stdin closes, which happens when the worker exits for any reason, SIGKILL included.
A stopped worker (SIGSTOP) keeps its pipe open, so its locks stay held.

Protocol, one line each way, answered in order:
  lock <id>    -> ok <id> | busy <id> | err <id> <message>   (non-blocking; ok again if held)
  unlock <id>  -> ok <id>                                     (idempotent)
  remove <id>  -> ok <id>   unlink the lock file while holding it, then release (no-op if not held)
First line out: `ready <pid> <nofile soft limit>`, or `fatal <message>` and exit 2.
"""

import fcntl
import os
import re
import resource
import signal
import stat
import sys

# The same shape as isSafeId in src/domain/ids.ts.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def out(line):
    os.write(1, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))


def raise_nofile():
    # A worker may hold hundreds of locks, one descriptor each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. an infinite hard limit above fs.nr_open: keep the soft one
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def lock(directory, held, sid):
    if sid in held:
        return "ok " + sid
    path = os.path.join(directory, sid + ".lock")
    # The previous holder may unlink the file between our open and our flock (remove):
    # a lock on an unlinked inode guards nothing, so check the path still names our file.
    for _ in range(20):
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return "err %s %s is not a regular file" % (sid, path)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return "busy " + sid
        except OSError:
            os.close(fd)
            raise
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            os.close(fd)
            continue
        mine = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            continue
        held[sid] = fd
        return "ok " + sid
    return "err %s %s keeps being replaced" % (sid, path)


def unlock(held, sid):
    fd = held.pop(sid, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock
    return "ok " + sid


def remove(directory, held, sid):
    if sid in held:
        try:
            os.unlink(os.path.join(directory, sid + ".lock"))
        except FileNotFoundError:
            pass
    return unlock(held, sid)


def handle(directory, held, line):
    parts = line.split(" ")
    if len(parts) != 2:
        return "err - malformed request %r" % line[:200]
    op, sid = parts
    if not SAFE_ID.match(sid) or ".." in sid:
        return "err %s not a valid session id" % sid[:200]
    try:
        if op == "lock":
            return lock(directory, held, sid)
        if op == "unlock":
            return unlock(held, sid)
        if op == "remove":
            return remove(directory, held, sid)
        return "err %s unknown request %r" % (sid, op)
    except OSError as e:
        return "err %s %s" % (sid, e)


def main():
    # Ctrl-C in a terminal signals the whole process group: the worker decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(sys.argv) != 2:
        out("fatal usage: lock-helper.py <dir>")
        sys.exit(2)
    directory = sys.argv[1]
    if not os.path.isdir(directory):
        out("fatal %s is not a directory" % directory)
        sys.exit(2)
    out("ready %d %d" % (os.getpid(), raise_nofile()))
    held = {}
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            break  # the worker is gone or stopping: exiting releases every lock
        out(handle(directory, held, raw.decode("utf-8", "replace").rstrip("\n")))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.exit(0)
