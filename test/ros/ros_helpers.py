"""Helpers for tests that talk to other processes over DDS (no fixed sleeps)."""
import select
import subprocess
import sys
import time

import rclpy


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
            if self.proc.poll() is not None or remaining <= 0 or not select.select([self.proc.stdout], [], [], remaining)[0]:
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
