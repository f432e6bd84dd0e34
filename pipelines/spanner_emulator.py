"""Run the Cloud Spanner emulator as a child process, for tests and local demos.

rex reads a real change stream locally, so the emulator must be started on demand (never
assumed running) on a free loopback port, and stopped by its own PID afterwards.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

EMULATOR_RELATIVE_PATH = Path("bin", "cloud_spanner_emulator", "emulator_main")
DEBIAN_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
START_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def find_emulator_binary() -> str | None:
    """Path of `emulator_main`, or None when the emulator is not installed.

    Looks at $SPANNER_EMULATOR_BINARY, then under the Cloud SDK root of the `gcloud` on PATH,
    then under the Debian package's root. `gcloud info` would say the same but takes seconds.
    """
    override = os.environ.get("SPANNER_EMULATOR_BINARY")
    if override:
        return override if _is_executable(Path(override)) else None
    for root in _sdk_roots():
        candidate = root / EMULATOR_RELATIVE_PATH
        if _is_executable(candidate):
            return str(candidate)
    return None


def _sdk_roots() -> list[Path]:
    roots = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        # .../google-cloud-sdk/bin/gcloud, usually reached through a symlink in /usr/bin.
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots.append(DEBIAN_SDK_ROOT)
    return roots


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it, so parallel runs do not clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SpannerEmulator:
    """One emulator process on a loopback port; use as a context manager.

    `extra_args` passes emulator flags through, e.g. a shorter
    `--change_stream_churning_interval` so tests see partition splits and merges quickly.
    """

    def __init__(
        self,
        binary: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ):
        self.binary = binary or find_emulator_binary()
        if not self.binary:
            raise FileNotFoundError(
                "Cloud Spanner emulator not found: install google-cloud-cli-spanner-emulator "
                "or set SPANNER_EMULATOR_BINARY"
            )
        self.host = host
        self.port = port if port is not None else free_loopback_port(host)
        self.extra_args = list(extra_args)
        self._process: subprocess.Popen | None = None
        self._workdir: str | None = None

    @property
    def host_port(self) -> str:
        """What SPANNER_EMULATOR_HOST should say to reach this emulator."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._workdir, "emulator.log") if self._workdir else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = START_TIMEOUT_S) -> "SpannerEmulator":
        """Launch the emulator and return once its gRPC port accepts connections."""
        if self._process is not None:
            raise RuntimeError("emulator already started")
        if _accepts_connections(self.host, self.port):
            # The emulator binds with SO_REUSEPORT, so a second one would start "fine" and
            # share the port with whatever listens there.
            raise RuntimeError(f"cannot start the Spanner emulator: {self.host_port} is in use")
        self._workdir = tempfile.mkdtemp(prefix="rex-spanner-emulator-")
        with open(self.log_path, "wb") as log:
            # Own process group: stop() can signal the emulator without touching the caller.
            self._process = subprocess.Popen(
                [self.binary, "--host_port", self.host_port, *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        try:
            self._wait_until_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Spanner emulator exited with code {self._process.returncode} "
                    f"before listening on {self.host_port}:\n{self._log_tail()}"
                )
            if _accepts_connections(self.host, self.port):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"Spanner emulator did not listen on {self.host_port} within {timeout:.0f} s:\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no emulator log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the emulator's process group (by its PID) and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            _terminate_group(process, timeout)
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "SpannerEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent_hook():
    """On Linux, have the kernel stop the emulator if this process dies without stop().

    Its own session shields it from Ctrl-C and from a killed test run, which would otherwise
    leave it running. The signal follows the *thread* that started it, so it is only armed
    when starting from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    parent = os.getpid()

    def arm():
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _terminate_group(process: subprocess.Popen, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)  # the group id is the emulator's PID (new session)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()
