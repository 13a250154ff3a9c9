# codegen-mcp warm interpreter: a fork server, one per session, inside the session's sandbox.
#
# Started by src/sandbox/warm/server.ts as `<venv python> -u -c <BOOTSTRAP> <control dir> <mode> <room>`;
# the bootstrap reads this source from fd 3 (up to a NUL byte) and runs it as __main__. mode is 'pidns'
# (bwrap: a PID namespace of its own, pid 1 is bwrap's init) or 'process' (no namespace); <room> is
# blank padding: each task writes its own command line over the argv area (/proc/<pid>/cmdline).
#
# fd 3 is the control channel, a socket pair to the worker, JSON lines both ways:
#   server -> worker  {"ev": "ready", "pid", "next", "subreaper", "pidns"}  FIFOs <dir>/<next>.out|.err exist
#   worker -> server  {"op": "run", "id", "argv", "code"?, "env", "cwd", "limits"}
#   server -> worker  {"ev": "started", "id", "pid"}
#   worker -> server  {"op": "signal", "id", "sig"}          timeout or cancel: the task's processes
#   server -> worker  {"ev": "exit", "id", "code"|"signal", "next"}  the task and all it started are gone
#   server -> worker  {"ev": "error", "id", "message", "next"}       nothing ran
#   server -> worker  {"ev": "stale", "id"}   site-packages .pth files changed: the server exits
# End of fd 3 (the worker stopped or died) ends the server and everything it started.
#
# Each task is a fork that becomes what `python - args` (or `python file args`) would be: its own
# session, rlimits, stdin at its end, stdout/stderr on the task's FIFOs, the task's environment, argv
# and command line, sys.path[0], a fresh __main__, no module the server imported, and an exit like
# the interpreter's (SystemExit codes, threads joined, atexit, stdio flushed, the program's modules
# torn down), then os._exit: the server's own objects are never finalized in the task. After each
# task every other process of the sandbox is killed, and (in its own PID namespace) /tmp and
# /dev/shm are emptied, as a fresh sandbox would have them. The server imports nothing user code
# could shadow before it deletes sys.path[0], and never writes to fd 1 or 2.
import sys

_STARTUP_MODULES = frozenset(sys.modules)
if sys.path and sys.path[0] == '':
    del sys.path[0]  # from -c: the workspace must not shadow what the server imports
_BASE_PATH = list(sys.path)

import gc
import json
import os
import resource
import select
import signal
import time

CTL = 3
_MAXFD = 65536
try:
    _MAXFD = max(int(os.sysconf('SC_OPEN_MAX')), 256)
except (ValueError, OSError):
    pass


def _send(msg):
    data = (json.dumps(msg, separators=(',', ':')) + '\n').encode()
    while data:
        n = os.write(CTL, data)
        data = data[n:]


_ctypes = None


def _set_subreaper():
    """Orphans of a task become the server's children, so it can find and reap them."""
    global _ctypes
    try:
        import ctypes

        _ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def _set_cmdline(args):
    """Show `args` in /proc/<pid>/cmdline (ps, pgrep), as an exec of them would: the bytes are
    written over the server's own argv area (padded at start-up for room); longer ones are cut."""
    if _ctypes is None:
        return
    try:
        with open('/proc/self/stat', 'rb') as f:
            stat = f.read()
        fields = stat[stat.rfind(b')') + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49)
        size = end - start
        if size <= 1:
            return
        data = b'\0'.join(os.fsencode(a) for a in args) + b'\0'
        data = data[:size - 1] + b'\0' if len(data) > size else data + b'\0' * (size - len(data))
        _ctypes.memmove(start, data, size)
    except Exception:
        pass


def _in_own_pidns():
    try:
        with open('/proc/1/comm') as f:
            return os.getpid() != 1 and f.read().strip() == 'bwrap'
    except OSError:
        return False


def _proc_pids():
    out = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            out.append(int(name))
    return out


def _state_and_ppid(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read()
    except OSError:
        return None, None
    rest = stat[stat.rfind(b')') + 2:].split()
    return rest[0], int(rest[1])


def _descendants(root):
    children = {}
    for pid in _proc_pids():
        state, ppid = _state_and_ppid(pid)
        if ppid is not None and state != b'Z':
            children.setdefault(ppid, []).append(pid)
    out, queue = [], [root]
    while queue:
        for c in children.get(queue.pop(), ()):
            out.append(c)
            queue.append(c)
    return out


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _reap(on_task_exit):
    """Reap every child that ended; False when the server has no child left at all."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        except InterruptedError:
            continue
        if pid == 0:
            return True
        on_task_exit(pid, status)


def _remove_tree(path, keep, dev=None):
    """Empty a folder of the sandbox's own (its private /tmp, /dev/shm) but `keep`. Never crosses
    into another file system: the workspace or the control folder may be bound below /tmp."""
    try:
        if dev is None:
            dev = os.lstat(path).st_dev
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        if entry.path == keep:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_dev != dev:
                continue  # a mount point
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path, keep, dev)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


class Server:
    def __init__(self, ctl_dir, mode):
        self.ctl_dir = ctl_dir
        self.pidns = mode == 'pidns' and _in_own_pidns()
        self.subreaper = _set_subreaper()
        self.me = os.getpid()
        self.seq = 0
        self.placeholders = None  # (out, err) O_RDWR fds holding the next FIFOs open
        self.task = None  # (id, pid)
        self.task_status = None
        self.pth_dirs = [d for d in sys.path if d.endswith('site-packages') and os.path.isdir(d)]
        self.pth_mtimes = self._dir_mtimes()
        self.pth_state = self._pth_state()

    # -- FIFOs -----------------------------------------------------------------------------------
    def fifo(self, seq, stream):
        return os.path.join(self.ctl_dir, '%d.%s' % (seq, stream))

    def make_fifos(self):
        fds = []
        for stream in ('out', 'err'):
            p = self.fifo(self.seq, stream)
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            os.mkfifo(p, 0o600)
            # O_RDWR never blocks and counts as a writer: the worker's reader sees no EOF before the task.
            fds.append(os.open(p, os.O_RDWR | os.O_CLOEXEC))
        self.placeholders = tuple(fds)

    def writers(self):
        """Write ends for the task (the worker's readers are open by now); the placeholders go."""
        fds = []
        try:
            for stream in ('out', 'err'):
                p = self.fifo(self.seq, stream)
                fds.append(os.open(p, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
                os.unlink(p)
            for fd in fds:
                os.set_blocking(fd, True)
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        for fd in self.placeholders:
            os.close(fd)
        self.placeholders = None
        return fds

    def next_task(self):
        if self.placeholders is not None:
            for fd in self.placeholders:
                os.close(fd)
            for stream in ('out', 'err'):
                try:
                    os.unlink(self.fifo(self.seq, stream))
                except OSError:
                    pass
            self.placeholders = None
        self.seq += 1
        self.make_fifos()

    # -- installed packages ------------------------------------------------------------------------
    def _dir_mtimes(self):
        out = []
        for d in self.pth_dirs:
            try:
                out.append(os.stat(d).st_mtime_ns)
            except OSError:
                out.append(None)
        return out

    def _pth_state(self):
        out = []
        for d in self.pth_dirs:
            try:
                for e in os.scandir(d):
                    if e.name.endswith('.pth'):
                        st = e.stat()
                        out.append((d, e.name, st.st_mtime_ns, st.st_size))
            except OSError:
                pass
        return sorted(out)

    def stale(self):
        """True when .pth files changed since start-up (a fresh interpreter would see other paths)."""
        mtimes = self._dir_mtimes()
        if mtimes == self.pth_mtimes:
            return False
        self.pth_mtimes = mtimes
        return self._pth_state() != self.pth_state

    # -- processes ---------------------------------------------------------------------------------
    def signal_task(self, sig):
        if self.task is None:
            return
        if self.pidns:
            _kill(-1, sig)  # every process of the namespace but init and the server
            return
        try:
            os.killpg(self.task[1], sig)
        except OSError:
            pass
        for pid in _descendants(self.me):
            _kill(pid, sig)

    def on_exit(self, pid, status):
        if self.task is not None and pid == self.task[1] and self.task_status is None:
            self.task_status = status

    def kill_rest(self):
        """Nothing a task started outlives it: kill and reap all but init and the server."""
        deadline = time.monotonic() + 5
        while True:
            if self.pidns:
                others = [p for p in _proc_pids() if p != 1 and p != self.me and _state_and_ppid(p)[0] not in (b'Z', None)]
                if others:
                    _kill(-1, signal.SIGKILL)
                has_children = _reap(self.on_exit)
                if not others and not has_children:
                    return
            else:
                if self.task is not None:
                    try:
                        os.killpg(self.task[1], signal.SIGKILL)
                    except OSError:
                        pass
                if not _reap(self.on_exit):
                    return  # no child left: with the subreaper set, no descendant either
                for pid in _descendants(self.me):
                    _kill(pid, signal.SIGKILL)
                _reap(self.on_exit)
            if time.monotonic() > deadline:
                return
            time.sleep(0.002)

    def clean_private_tmp(self):
        if self.pidns:
            _remove_tree('/tmp', self.ctl_dir)
            _remove_tree('/dev/shm', self.ctl_dir)

    # -- the loop ----------------------------------------------------------------------------------
    def serve(self):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        poller = select.poll()
        poller.register(CTL, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        self.make_fifos()
        _send({'ev': 'ready', 'pid': self.me, 'next': self.seq, 'subreaper': self.subreaper, 'pidns': self.pidns})
        buf = b''
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == wake_r:
                        try:
                            while os.read(wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        continue
                    try:
                        data = os.read(CTL, 1 << 20)
                    except InterruptedError:
                        continue
                    except OSError:
                        data = b''
                    if not data:
                        return None  # the worker went away
                    buf += data
                    while b'\n' in buf:
                        line, buf = buf.split(b'\n', 1)
                        forked = self.handle(json.loads(line))
                        if forked is not None:
                            os.close(wake_r)
                            os.close(wake_w)
                            return forked  # in the task's process
                _reap(self.on_exit)
                if self.task is not None and self.task_status is not None:
                    self.finish_task()
        finally:
            if os.getpid() == self.me:
                self.signal_task(signal.SIGKILL)
                self.kill_rest()

    def handle(self, msg):
        op = msg.get('op')
        if op == 'signal':
            if self.task is not None and msg.get('id') == self.task[0]:
                self.signal_task(int(msg.get('sig', signal.SIGKILL)))
            return None
        if op != 'run':
            return None
        task_id = msg.get('id')
        if self.task is not None or task_id != self.seq:
            _send({'ev': 'error', 'id': task_id, 'message': 'the fork server is busy or the task id is wrong', 'next': self.seq})
            return None
        if self.stale():
            _send({'ev': 'stale', 'id': task_id})
            raise SystemExit(0)
        try:
            out_w, err_w = self.writers()
        except OSError as e:
            self.next_task()
            _send({'ev': 'error', 'id': task_id, 'message': 'cannot open the output FIFOs: %s' % e, 'next': self.seq})
            return None
        # The server's objects go to the collector's permanent generation: the task's collections
        # never walk them, so its pages stay shared with the server (copy-on-write).
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            return (msg, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        self.task = (task_id, pid)
        self.task_status = None
        _send({'ev': 'started', 'id': task_id, 'pid': pid})
        return None

    def finish_task(self):
        task_id = self.task[0]
        status = self.task_status
        self.kill_rest()
        self.clean_private_tmp()
        self.task = None
        self.task_status = None
        self.next_task()
        if os.WIFSIGNALED(status):
            _send({'ev': 'exit', 'id': task_id, 'signal': os.WTERMSIG(status), 'next': self.seq})
        else:
            _send({'ev': 'exit', 'id': task_id, 'code': os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1, 'next': self.seq})


# -- the task's process ------------------------------------------------------------------------------

def _apply_limits(limits):
    for key, res in (('as', resource.RLIMIT_AS), ('nproc', resource.RLIMIT_NPROC), ('fsize', resource.RLIMIT_FSIZE)):
        value = limits.get(key)
        if value:
            resource.setrlimit(res, (int(value), int(value)))
    cpu = limits.get('cpu')
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))


def _new_stdio(io_encoding):
    """sys.stdin/stdout/stderr made anew on fds 0-2 as interpreter start-up makes them (the server's
    describe /dev/null: seekable, and so on), with PYTHONIOENCODING applied."""
    import io

    encoding, _, errors = io_encoding.partition(':')
    for fd, name, write in ((0, 'stdin', False), (1, 'stdout', True), (2, 'stderr', True)):
        old = getattr(sys, '__%s__' % name)
        buf = io.open(fd, 'wb' if write else 'rb', 0 if write else -1, closefd=False)
        (buf if write else buf.raw).name = '<%s>' % name
        stream = io.TextIOWrapper(
            buf,
            encoding or old.encoding,
            old.errors if name == 'stderr' else (errors or old.errors),
            '\n',
            False,  # line_buffering: off, as with -u (PYTHONUNBUFFERED)
            True,  # write_through
        )
        stream.mode = 'w' if write else 'r'
        setattr(sys, name, stream)
        setattr(sys, '__%s__' % name, stream)


def _become_task(msg, out_w, err_w):
    """Runs in the forked child: set the process up like a fresh `python - args`, then run the code."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # stdin: an empty pipe whose writer is gone, like `python -` once it read the code: input() gets EOF.
    stdin_r, stdin_w = os.pipe()
    os.close(stdin_w)
    os.dup2(stdin_r, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.closerange(3, _MAXFD)
    try:
        _apply_limits(msg.get('limits') or {})
    except (ValueError, OSError) as e:
        os.write(2, ('cannot apply resource limits: %s\n' % e).encode())
        os._exit(1)

    env = msg['env']
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    _new_stdio(env.get('PYTHONIOENCODING', ''))
    os.chdir(msg['cwd'])

    argv = list(msg['argv'])
    code = msg.get('code')
    sys.argv = argv
    sys.orig_argv = [sys.executable] + argv
    _set_cmdline(sys.orig_argv)
    sys.path[:] = ['' if code is not None else os.path.dirname(os.path.realpath(argv[0]))] + _BASE_PATH
    sys.path_importer_cache.clear()
    if 'random' in sys.modules:
        sys.modules['random'].seed()
    for name in list(sys.modules):
        if name not in _STARTUP_MODULES:
            del sys.modules[name]

    user_modules_from = frozenset(sys.modules) - {'__main__'}
    main = type(sys)('__main__')
    d = main.__dict__
    d['__annotations__'] = {}
    d['__builtins__'] = sys.modules['builtins']
    if code is not None:
        filename = '<stdin>'
        d['__loader__'] = sys.modules['_frozen_importlib'].BuiltinImporter
    else:
        filename = argv[0]
        d['__loader__'] = sys.modules['_frozen_importlib_external'].SourceFileLoader('__main__', filename)
    d['__file__'] = filename
    d['__cached__'] = None
    sys.modules['__main__'] = main
    del main

    status = _run_main(code, filename, d)
    os._exit(_finalize(status, d, user_modules_from))


def _run_main(code, filename, d):
    """Run the program as `python -` (or `python file`) runs it; the exit status it asks for."""
    try:
        if code is not None:
            source = code.encode('utf-8', 'surrogateescape')
        else:
            try:
                with open(filename, 'rb') as f:
                    source = f.read()
            except OSError as e:
                sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n" % (sys.executable, filename, e.errno, e.strerror))
                return 2
        exec(compile(source, filename, 'exec', dont_inherit=True), d)
        return 0
    except SystemExit as e:
        return _system_exit_status(e)
    except BaseException as e:
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        e.__traceback__ = tb  # the traceback starts in the user's code, as with `python -`
        try:
            sys.excepthook(type(e), e, tb)
        except BaseException:
            pass
        return 1


def _system_exit_status(e):
    """As the interpreter handles an uncaught SystemExit: None is 0, an int is itself, else print it and 1."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write('%s\n' % (code,))
    except BaseException:
        pass
    return 1


def _flush_std():
    ok = True
    for name in ('stdout', 'stderr'):
        stream = getattr(sys, name, None)
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            ok = ok and name != 'stdout'
    return ok


def _clear_module_dict(d):
    """As the interpreter clears a module at exit: single-underscore names to None first, then the rest."""
    for key in list(d):
        if isinstance(key, str) and key.startswith('_') and not key.startswith('__'):
            d[key] = None
    for key in list(d):
        if key != '__builtins__':
            d[key] = None


def _finalize(status, main_dict, user_modules_from):
    """The parts of interpreter exit a program can see: non-daemon threads joined, atexit handlers,
    stdio flushed (a failed stdout flush is status 120), then the program's own modules torn down so
    their objects are finalized (unclosed files flushed, __del__ run). The server's objects are frozen
    for the garbage collector and never touched: os._exit follows."""
    threading = sys.modules.get('threading')
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    if not _flush_std():
        status = 120
    try:
        # Daemon threads keep running until os._exit (the interpreter would stop them): give them
        # as little of the GIL as possible while the modules are torn down.
        sys.setswitchinterval(1000.0)
        import _weakref

        refs = []
        for name in reversed(list(sys.modules)):
            if name == '__main__' or name not in user_modules_from:
                module = sys.modules.pop(name, None)
                if module is not None:
                    try:
                        refs.append(_weakref.ref(module))
                    except TypeError:
                        pass
                module = None
        gc.collect()
        for ref in refs:
            module = ref()
            if module is not None and module.__dict__ is not main_dict:
                _clear_module_dict(module.__dict__)
            module = None
        _clear_module_dict(main_dict)
        gc.collect()
    except BaseException:
        pass
    if not _flush_std():
        status = 120
    return status


def _main():
    server = Server(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else 'process')
    try:
        return server.serve()
    except BrokenPipeError:
        return None


_forked = _main()
if _forked is not None:
    _become_task(*_forked)  # never returns: the task ends with os._exit
