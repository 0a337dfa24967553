"""Helpers for tests that talk to other processes over DDS (no fixed sleeps)."""
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy


@contextlib.contextmanager
def ros_node(name, namespace=None):
    """rclpy initialized in this process and a node ``name``; both torn down on exit."""
    rclpy.init()
    node = rclpy.create_node(name, namespace=namespace)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown()


def spin_until(node, condition, timeout, what, on_idle=None, idle_period=0.5):
    """Spin ``node`` until ``condition()`` is true; fail with ``what`` after ``timeout`` seconds.

    ``on_idle`` (e.g. a republish) runs at once and then every ``idle_period`` seconds.
    """
    deadline = time.monotonic() + timeout
    next_idle = time.monotonic()
    while not condition():
        now = time.monotonic()
        assert now < deadline, f'timed out after {timeout} s waiting for {what}'
        if on_idle is not None and now >= next_idle:
            on_idle()
            next_idle = now + idle_period
        rclpy.spin_once(node, timeout_sec=0.05)


def wait_for_service(node, client, timeout=30.0):
    spin_until(node, client.service_is_ready, timeout, f'service {client.srv_name}')


def call(node, client, request, timeout=30.0):
    """Call a service synchronously (spinning ``node``) and return the response."""
    wait_for_service(node, client, timeout)
    future = client.call_async(request)
    spin_until(node, future.done, timeout, f'a reply from {client.srv_name}')
    return future.result()


class PythonProcess:
    """A Python script in its own process that prints ``ready`` when set up and stops on stdin EOF."""

    def __init__(self, script, *args, log_path, ready_timeout=60.0):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        deadline = time.monotonic() + ready_timeout
        line = ''
        while line != 'ready\n':
            remaining = deadline - time.monotonic()
            if (self.proc.poll() is not None or remaining <= 0
                    or not select.select([self.proc.stdout], [], [], remaining)[0]):
                self.stop()
                raise AssertionError(f'{script} did not get ready (exit code {self.proc.returncode}):\n{self.log()}')
            line = self.proc.stdout.readline()

    def log(self):
        self._log.flush()
        return open(self.log_path).read()

    def stop(self, timeout=20.0):
        """Close its stdin and return its exit code (killing it after ``timeout`` seconds)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return self.proc.returncode


ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """The seem node as users run it (``python -m seem_ros.ros.seem_node --ros-args --params-file
    config/seem.yaml``) in namespace ``namespace`` with the extra ``ros_args``, in its own process,
    output in a log file."""

    def __init__(self, namespace, log_path, ros_args=()):
        self.log_path = log_path
        self._log = open(log_path, 'w')
        cmd = [sys.executable, '-m', 'seem_ros.ros.seem_node', '--ros-args', '--params-file', 'config/seem.yaml',
               '-r', f'__ns:={namespace}', *ros_args]
        # One torch thread keeps the shared CI cores free; two malloc arenas keep glibc's per-thread
        # arenas (a new worker thread per activation) from reading as growth in the RSS checks.
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, 'OMP_NUM_THREADS': '1', 'MALLOC_ARENA_MAX': '2'})

    def log(self):
        self._log.flush()
        return self.log_path.read_text()

    def rss_mb(self):
        status = Path(f'/proc/{self.proc.pid}/status').read_text()
        return int(re.search(r'VmRSS:\s+(\d+) kB', status).group(1)) / 1024

    def wait_for_log(self, pattern, timeout=30.0):
        """Wait until the log matches ``pattern`` (a problem the node must report); returns the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            assert self.proc.poll() is None, f'the node died:\n{self.log()}'
            time.sleep(0.1)
        raise AssertionError(f'no log line matching {pattern!r}:\n{self.log()}')

    def interrupt(self, timeout=30.0):
        """SIGINT, as Ctrl-C; returns the exit code (None when it had to be killed)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self._log.close()
