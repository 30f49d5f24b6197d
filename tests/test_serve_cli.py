"""Serving as a user runs it: `p1daemon run` subprocesses chained over TCP, `probe`
against a served meter, a port in use at start, and what `check-config` warns about."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from test_cli_run import finish, p1daemon
from test_daemon_support import PtyMeter, telegram, wait_until
from test_serve import free_port


class Lines:
    """A subprocess's stdout lines, collected on a thread (never blocks the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()

    def readings(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            data = json.loads(line)
            if "topic" not in data:
                out.append(data)
        return out


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def test_daisy_chain_and_probe_against_a_served_meter(tmp_path: Path) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    port = free_port()
    (tmp_path / "upstream.toml").write_text(
        f'[[meters]]\nname = "house"\nsource = "{pty.link}"\nserve = "127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    (tmp_path / "downstream.toml").write_text(
        f'[[meters]]\nname = "relay"\nsource = "socket://127.0.0.1:{port}"\n'
        "reconnect_initial_s = 0.05\nreconnect_max_s = 0.2\n",
        encoding="utf-8",
    )
    upstream = p1daemon("run", "--config", str(tmp_path / "upstream.toml"), "--stdout")
    downstream = p1daemon("run", "--config", str(tmp_path / "downstream.toml"), "--stdout")
    up, down = Lines(upstream), Lines(downstream)
    stop_meter = threading.Event()

    def meter() -> None:
        seq = 1
        while not stop_meter.is_set():
            pty.write(telegram(seq))
            seq += 1
            time.sleep(0.05)

    writer = threading.Thread(target=meter, daemon=True)
    writer.start()
    try:
        assert wait_until(lambda: len(down.readings()) >= 5, timeout=20), (up.lines, down.lines)
        probe = p1daemon("probe", f"socket://127.0.0.1:{port}", "--timeout", "10")
        code, out, err = finish(probe, timeout=15)
        assert code == 0, err
        assert f"port:            socket://127.0.0.1:{port}" in out
        assert "equipment id:    E0000000000000001" in out
    finally:
        stop_meter.set()
        writer.join(5)
        down_code, down_err = stop(downstream)
        up_code, up_err = stop(upstream)
        pty.unplug()
    assert (up_code, down_code) == (0, 0), (up_err, down_err)
    upstream_seqs = [round(r["import"]["t1_kwh"] * 1000) for r in up.readings()]
    relayed = down.readings()
    relayed_seqs = [round(r["import"]["t1_kwh"] * 1000) for r in relayed]
    assert {r["meter"] for r in relayed} == {"relay"}
    # Every relayed reading is one the upstream daemon accepted, in order, none missing
    # from the first relayed one on (the downstream joined mid-stream).
    start = upstream_seqs.index(relayed_seqs[0])
    assert relayed_seqs == upstream_seqs[start : start + len(relayed_seqs)]
    assert "client 127.0.0.1:" in up_err and "connected (1 of 4)" in up_err


def test_a_port_in_use_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        path = tmp_path / "p1daemon.toml"
        path.write_text(
            f'[[meters]]\nname = "house"\nsource = "/dev/ttyUSB-none"\n'
            f'serve = "127.0.0.1:{port}"\n',
            encoding="utf-8",
        )
        code, out, err = finish(p1daemon("run", "--config", str(path), "--stdout"))
    assert code == 1
    # One error line (besides the daemon's usual "stopped"), no traceback.
    lines = [line for line in err.splitlines() if line.strip() and not line.endswith(" stopped")]
    assert len(lines) == 1, err
    assert " ERROR " in lines[0] and "Traceback" not in err
    assert lines[0].endswith(
        f"meter house: cannot serve on 127.0.0.1:{port}: the address is already in use "
        "(another program, or another p1daemon?)"
    )
    assert out == ""


def test_check_config_warns_about_a_network_address_and_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = holder.getsockname()[1]
        free = free_port()
        path = tmp_path / "p1daemon.toml"
        path.write_text(
            f'[[meters]]\nname = "house"\nsource = "/dev/ttyUSB0"\nserve = "127.0.0.1:{busy}"\n'
            f'[[meters]]\nname = "car"\nrole = "secondary"\nsource = "/dev/ttyUSB1"\n'
            f'serve = "0.0.0.0:{free}"\nserve_max_clients = 2\n',
            encoding="utf-8",
        )
        code, out, err = finish(p1daemon("check-config", str(path)))
    assert code == 0, err
    assert f'serve = "127.0.0.1:{busy}"' in out and "serve_max_clients = 2" in out
    assert err.splitlines() == [
        f"{path}: warning: meter house: serve = 127.0.0.1:{busy}: the address is already in use "
        "(another program, or another p1daemon?); fine if it is this configuration's "
        "running daemon",
        f"{path}: warning: meter car: serve = 0.0.0.0:{free} is reachable from the network: "
        "whoever "
        "can connect sees this household's consumption telegrams (use 127.0.0.1 unless "
        "that is intended)",
    ]


def test_check_config_is_quiet_without_serve(tmp_path: Path) -> None:
    path = tmp_path / "p1daemon.toml"
    path.write_text('[[meters]]\nname = "house"\nsource = "/dev/ttyUSB0"\n', encoding="utf-8")
    code, out, err = finish(p1daemon("check-config", str(path)))
    assert (code, err) == (0, "")
    assert "# serve is not set" in out
