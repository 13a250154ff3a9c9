# codegen-mcp stateful interpreter: one per session, inside the session's sandbox (python_exec).
#
# Started by src/sandbox/interpreter/process.ts as `<venv python> -u -c <BOOTSTRAP> <limits JSON>`;
# the bootstrap reads this source from fd 3 (up to a NUL byte) and runs it. fd 3 is then the
# control channel, JSON lines both ways; fds 1 and 2 are pipes the worker reads:
#   kernel -> worker  {"ev": "ready", "pid", "subreaper"}   without a subreaper it is refused
#   worker -> kernel  {"op": "exec", "id", "code", "mark"}
#   kernel -> worker  {"ev": "done", "id", "result", "outputs": [{"mime", "b64"}], "error_name",
#                      "error_value", "traceback", "execution_count"}
#                     after it wrote `mark` to fd 1 and fd 2: what came before it on a stream is
#                     the call's output.
#   worker -> kernel  {"op": "interrupt", "id"}   timeout or cancel: KeyboardInterrupt in the call
# End of fd 3 ends the kernel. Every call runs in the same __main__ namespace, so variables,
# imports and definitions stay. Processes a call started are killed when it ends (threads stay:
# they are the interpreter's state). The worker kills the kernel when an interrupt does not stop
# the call, and starts a fresh one for the next call.
import sys

if sys.path and sys.path[0] == '':
    del sys.path[0]  # from -c: put back below as the workspace ('' = cwd), like `python -`

import ast
import base64
import builtins
import importlib
import io
import json
import linecache
import os
import queue
import resource
import signal
import threading
import traceback

CTL = 3
# Bounds on a reply (the worker refuses a control line over 24 MiB): rich outputs before base64,
# and each text.
MAX_RICH_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 1024 * 1024
RICH_MIMES = (
    ('image/png', '_repr_png_', True),
    ('image/jpeg', '_repr_jpeg_', True),
    ('image/svg+xml', '_repr_svg_', False),
    ('text/html', '_repr_html_', False),
    ('text/markdown', '_repr_markdown_', False),
)

_send_lock = threading.Lock()
ME = os.getpid()


def _send(msg):
    data = (json.dumps(msg, separators=(',', ':')) + '\n').encode()
    with _send_lock:
        while data:
            n = os.write(CTL, data)
            data = data[n:]


def _apply_limits(limits):
    for key, res in (('as', resource.RLIMIT_AS), ('nproc', resource.RLIMIT_NPROC), ('fsize', resource.RLIMIT_FSIZE)):
        value = limits.get(key)
        if value:
            resource.setrlimit(res, (int(value), int(value)))


def _set_subreaper():
    """Orphans of what a call started become the kernel's children, so it can find and end them."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def _descendants(root):
    children = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name, 'rb') as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b')') + 2:].split()
        if rest[0] != b'Z':
            children.setdefault(int(rest[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def _has_children():
    """Reaps ended children; False when none is left. With the subreaper set, no child means no
    descendant at all, so the /proc scan is skipped for the usual call that started nothing."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        except InterruptedError:
            continue
        if pid == 0:
            return True


def _end_children():
    """Nothing a call started outlives it (as with any task): kill and reap every descendant."""
    for _ in range(500):
        if not _has_children():
            return
        for pid in _descendants(ME):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        threading.Event().wait(0.002)


class _Call:
    """The call running now, for the interrupt: only user code is ever interrupted. An interrupt
    that comes before its call reaches user code (still queued, or compiling) waits in `pending`
    and is raised as the code starts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.id = None
        self.in_user_code = False
        self.pending = set()


CALL = _Call()


def _on_sigint(signum, frame):
    if CALL.in_user_code:
        raise KeyboardInterrupt
    # outside user code (between calls, or while the kernel reports): ignored


def _control(requests):
    """Reads fd 3: exec requests go to the main thread; an interrupt is delivered at once."""
    buf = b''
    main_ident = threading.main_thread().ident
    while True:
        try:
            data = os.read(CTL, 1 << 20)
        except InterruptedError:
            continue
        except OSError:
            data = b''
        if not data:
            os._exit(0)  # the worker went away: so does the interpreter
        buf += data
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            try:
                msg = json.loads(line)
            except ValueError:
                os._exit(70)
            if msg.get('op') == 'interrupt':
                with CALL.lock:
                    if CALL.id == msg.get('id') and CALL.in_user_code:
                        signal.pthread_kill(main_ident, signal.SIGINT)
                    elif len(CALL.pending) < 64:
                        CALL.pending.add(msg.get('id'))
            elif msg.get('op') == 'exec':
                requests.put(msg)


class Display:
    """display(obj, ...): rich outputs of the call, as IPython.display.display gives them."""

    def __init__(self):
        self.outputs = []
        self.size = 0

    def add(self, mime, data):
        if self.size + len(data) > MAX_RICH_BYTES:
            sys.stderr.write('[codegen: a %s output of %d bytes was dropped: rich outputs are limited to %d bytes per call]\n' % (mime, len(data), MAX_RICH_BYTES))
            return
        self.size += len(data)
        self.outputs.append({'mime': mime, 'b64': base64.b64encode(data).decode('ascii')})

    def rich(self, obj):
        """The object's rich representations; True when it had one."""
        found = False
        for mime, method, binary in RICH_MIMES:
            fn = getattr(type(obj), method, None)
            if fn is None:
                continue
            try:
                data = fn(obj)
            except Exception as e:
                sys.stderr.write('[codegen: %s() failed: %s: %s]\n' % (method, type(e).__name__, e))
                continue
            if data is None:
                continue
            if isinstance(data, tuple):  # (data, metadata), as IPython allows
                data = data[0]
            if binary:
                if isinstance(data, str):
                    try:
                        data = base64.b64decode(data)
                    except ValueError:
                        data = data.encode()
                elif not isinstance(data, (bytes, bytearray)):
                    continue
                self.add(mime, bytes(data))
            else:
                self.add(mime, str(data).encode('utf-8', 'surrogateescape'))
            found = True
        return found

    def __call__(self, *objs, **_kwargs):
        for obj in objs:
            if not self.rich(obj):
                print(repr(obj))


def _figures(display):
    """matplotlib figures the call left open become PNG outputs (and are closed), as in a notebook."""
    plt = sys.modules.get('matplotlib.pyplot')
    if plt is None:
        return
    try:
        for num in plt.get_fignums():
            buf = io.BytesIO()
            plt.figure(num).savefig(buf, format='png')
            display.add('image/png', buf.getvalue())
        plt.close('all')
    except Exception as e:
        sys.stderr.write('[codegen: a matplotlib figure could not be saved: %s: %s]\n' % (type(e).__name__, e))


def _enter_user(call_id):
    with CALL.lock:
        CALL.in_user_code = True
        if call_id in CALL.pending:
            CALL.pending.discard(call_id)
            raise KeyboardInterrupt


def _leave_user(call_id):
    with CALL.lock:
        CALL.in_user_code = False
        # An interrupt for this call that came too late, or for an earlier one: no longer wanted.
        CALL.pending = set(i for i in CALL.pending if isinstance(i, int) and i > call_id)


def _cut(text):
    if len(text) > MAX_TEXT_CHARS:
        return text[:MAX_TEXT_CHARS] + '... [%d characters cut]' % (len(text) - MAX_TEXT_CHARS)
    return text


def _safe_str(e):
    try:
        return _cut(str(e))
    except BaseException:
        return '<str() of the exception failed>'


def _error_of(e, skip):
    """(name, value, traceback) of an exception from user code, each bounded; never raises."""
    try:
        tb = _cut(_user_traceback(e, skip))
    except BaseException:
        tb = ''
    return (type(e).__name__, _safe_str(e), tb)


def _user_traceback(e, skip):
    """The exception as Python prints it, from the user's code on (the kernel's frames cut)."""
    tb = e.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    return ''.join(traceback.format_exception(type(e), e, tb))


def _run(code, count, ns, display, call_id):
    """Compile and run one call; (result text, error fields). Everything user code decides —
    the code itself, a value's repr and _repr_*_ methods, matplotlib's rendering — runs with the
    interrupt on."""
    filename = '<cell %d>' % count
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        tree = ast.parse(code, filename, 'exec')
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, filename, 'exec', dont_inherit=True)
        tail = compile(last, filename, 'eval', dont_inherit=True) if last is not None else None
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        try:
            tb = _cut(''.join(traceback.format_exception_only(type(e), e)))
        except BaseException:
            tb = ''
        return '', (type(e).__name__, _safe_str(e), tb)
    text = ''
    try:
        _enter_user(call_id)
        try:
            exec(body, ns)
            if tail is not None:
                value = eval(tail, ns)
                if value is not None:
                    ns['_'] = value
                    display.rich(value)
                    try:
                        text = _cut(repr(value))
                    except Exception as e:
                        text = '<repr() failed: %s: %s>' % (type(e).__name__, _safe_str(e))
            _figures(display)
        finally:
            _leave_user(call_id)
    except BaseException as e:  # SystemExit too: the interpreter stays, as in a notebook
        if os.getpid() != ME:
            os._exit(0)  # a fork of the kernel (os.fork() in the code) never reports
        error = _error_of(e, 1)
        try:  # figures drawn before the error are shown, as in a notebook
            _enter_user(call_id)
            try:
                _figures(display)
            finally:
                _leave_user(call_id)
        except BaseException:
            pass
        return '', error
    if os.getpid() != ME:
        os._exit(0)
    return text, None


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError:
            return
        data = data[n:]


def main():
    limits = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    _apply_limits(limits)
    subreaper = _set_subreaper()
    sys.argv = ['']
    sys.path.insert(0, '')  # the workspace, as with `python -`
    signal.signal(signal.SIGINT, _on_sigint)
    main_module = type(sys)('__main__')
    ns = main_module.__dict__
    ns['__builtins__'] = sys.modules['builtins']
    ns['__annotations__'] = {}
    sys.modules['__main__'] = main_module
    requests = queue.Queue()
    threading.Thread(target=_control, args=(requests,), name='codegen-control', daemon=True).start()
    _send({'ev': 'ready', 'pid': ME, 'subreaper': subreaper})
    count = 0
    while True:
        msg = requests.get()
        count += 1
        display = Display()
        builtins.display = display  # a builtin: a variable of the user's named display wins
        with CALL.lock:
            CALL.id = msg.get('id')
        # User code may have replaced these; the kernel's own rules come back for each call.
        signal.signal(signal.SIGINT, _on_sigint)
        importlib.invalidate_caches()  # packages installed since the last call are found
        result, error = _run(msg.get('code', ''), count, ns, display, msg.get('id'))
        with CALL.lock:
            CALL.id = None
        _flush()
        _end_children()
        mark = msg.get('mark', '').encode()
        _write_all(1, mark)
        _write_all(2, mark)
        reply = {'ev': 'done', 'id': msg.get('id'), 'result': result, 'outputs': display.outputs, 'execution_count': count}
        if error is not None:
            reply['error_name'], reply['error_value'], reply['traceback'] = error
        _send(reply)


main()
