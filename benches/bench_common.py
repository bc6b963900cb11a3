"""What the benchmark scripts share: free loopback ports, descriptor limits, and echo
servers started (optionally pinned to a core) and stopped around a measurement."""
import contextlib
import resource
import socket
import subprocess
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def wait_listening(port, proc, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


@contextlib.contextmanager
def running_server(binary, cpu=None, fds=4096):
    """Runs the echo server `binary` on a free port (pinned to core `cpu` if given) until
    the block ends; yields (process, port) once it accepts connections."""
    port = free_port()
    command = (["taskset", "-c", str(cpu)] if cpu is not None else []) + [binary, "127.0.0.1:%d" % port]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: raise_fd_limit(fds))
    try:
        wait_listening(port, proc)
        yield proc, port
    finally:
        proc.kill()
        proc.wait()
