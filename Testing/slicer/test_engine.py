"""How the background engine process is started and ended (AVSMRegistrationLib.engine)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from AVSMRegistrationLib.engine import (WINDOWS_CREATE_NEW_PROCESS_GROUP, WINDOWS_CREATE_NO_WINDOW, end_process_tree,
                                        popen_options)


def test_windows_starts_the_engine_without_a_console_window_in_its_own_group():
    options = popen_options("nt")
    assert options["creationflags"] == WINDOWS_CREATE_NEW_PROCESS_GROUP | WINDOWS_CREATE_NO_WINDOW == 0x08000200
    if hasattr(subprocess, "STARTUPINFO"):  # only on Windows
        assert options["startupinfo"].wShowWindow == 0
    assert "start_new_session" not in options


def test_posix_starts_the_engine_in_a_session_of_its_own():
    assert popen_options("posix") == {"start_new_session": True}


def test_ending_a_tree_ends_a_child_that_ignores_sigterm():
    """The launcher dies on SIGTERM; its child ignores it and must still be gone when the call returns."""
    if os.name == "nt":
        return  # taskkill /T /F: covered on Windows machines only
    script = ("import signal, subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', "
              "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"ready\", flush=True); time.sleep(60)'])\n"
              "print('pid', child.pid, flush=True)\n"
              "child.wait()\n")
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, **popen_options())
    lines = sorted(launcher.stdout.readline().split() for _ in range(2))  # the two processes print in any order
    assert lines[1] == ["ready"]  # the child is up and ignoring SIGTERM
    child_pid = int(lines[0][1])
    started = time.monotonic()
    end_process_tree(launcher, grace=0.5)
    assert time.monotonic() - started < 2.0
    assert launcher.poll() is not None
    try:
        os.kill(child_pid, 0)
        state = open(f"/proc/{child_pid}/stat").read().rsplit(")", 1)[1].split()[0]
        assert state == "Z", f"child {child_pid} still running ({state})"
    except ProcessLookupError:
        pass
