"""Start JupyterLab on notebooks/ wherever `make lab` is typed: a laptop, root in a container, a remote box.

`make lab` runs this file with the course's virtualenv; the browser smoke test starts JupyterLab
through `make lab` too, so what is tested is what a learner types. Each choice it makes is printed:

- as root (Docker images, cloud GPU boxes, workshop VMs) JupyterLab refuses to start unless given
  --allow-root, so it is added there, and only there, with the reason printed once;
- the port asked for (PORT, 8888 by default) may be taken by a lab still running: the next free
  one is used and said so, instead of JupyterLab's own log line that is easy to miss;
- a token is always set, so the URL printed here is the one to open; with HOST=0.0.0.0 (a remote
  machine, a cloud GPU box) the token is what keeps the lab private, and the SSH tunnel is shown;
- a browser is opened only where there is a display to open it on (not over SSH, not in a container).

Any argument this script does not know is passed to `jupyter lab` unchanged (LAB_ARGS in make).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ANY = {"0.0.0.0", "::", ""}  # every network interface
PORT_TRIES = 50


def port_is_free(host: str, port: int) -> bool:
    """Try to listen on host:port the way Jupyter's server will (tornado's bind_sockets)."""
    from tornado.netutil import bind_sockets

    try:
        sockets = bind_sockets(port, host)
    except OSError:
        return False
    for s in sockets:
        s.close()
    return True


def next_free_port(host: str, port: int, tries: int = PORT_TRIES) -> int | None:
    """Return the first port from `port` on that can be listened on, or None after `tries` ports."""
    return next((p for p in range(port, port + tries) if port_is_free(host, p)), None)


def is_root() -> bool:
    """Return True when this process runs as root (Windows has no euid and no such check)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def this_machine() -> str:
    """Return a name or address other machines may reach this one by (a cloud box's public one may differ)."""
    name = socket.getfqdn()
    try:
        if not ipaddress.ip_address(socket.gethostbyname(name)).is_loopback:
            return name
    except (OSError, ValueError):
        pass
    # Containers often call themselves localhost: take the address of the interface that leads outwards.
    # Connecting a UDP socket sends nothing; 192.0.2.1 is a documentation address (RFC 5737).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:  # no network but the loopback: the name is as good as anything
            return socket.gethostname()


def lab_urls(host: str, port: int, token: str) -> list[str]:
    """Return the URLs to open: this machine's for a local lab, the machine's name for a remote one."""
    if host in LOOPBACK:
        name = "[::1]" if host == "::1" else "127.0.0.1"
        return [f"http://{name}:{port}/lab?token={token}"]
    name = this_machine() if host in ANY else host
    name = f"[{name}]" if ":" in name else name  # an IPv6 address
    return [f"http://{name}:{port}/lab?token={token}", f"http://localhost:{port}/lab?token={token}"]


def main(argv: list[str] | None = None) -> None:
    """Print what will happen and why, then replace this process with `jupyter lab`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    parser.add_argument("--port", type=int, default=8888, help="first port to try")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser here")
    parser.add_argument("--notebook-dir", default=str(ROOT / "notebooks"))
    args, extra = parser.parse_known_args(argv)

    port = next_free_port(args.host, args.port)
    if port is None:
        sys.exit(f"make lab: ports {args.port}-{args.port + PORT_TRIES - 1} on {args.host} are all in use; "
                 f"stop an old lab (`jupyter server list` shows them) or choose one with PORT=")
    if port != args.port:
        print(f"make lab: port {args.port} is already in use (another JupyterLab still running? "
              f"`jupyter server list` shows them), so this lab uses port {port}.")

    # Jupyter reads JUPYTER_TOKEN; unlike a flag, the environment is hidden from `ps` on a shared box.
    env = dict(os.environ)
    token = env.setdefault("JUPYTER_TOKEN", secrets.token_hex(24))
    jupyter = Path(sys.executable).parent / ("jupyter.exe" if os.name == "nt" else "jupyter")
    cmd = [str(jupyter), "lab", f"--notebook-dir={args.notebook_dir}", f"--ip={args.host}", f"--port={port}",
           "--ServerApp.port_retries=0"]
    if is_root():
        cmd.append("--allow-root")
        print("make lab: running as root (usual in containers and on cloud GPU boxes), where JupyterLab "
              "refuses to start by default, so it is started with --allow-root.")
    remote = args.host not in LOOPBACK
    # Without a display (SSH, containers) Python would start a text browser such as lynx in the terminal.
    headless = sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if args.no_browser or remote or headless:
        cmd.append("--no-browser")
    if remote:
        print(f"make lab: listening on {args.host}:{port}, reachable from other machines; "
              f"the token in the URL is the password, keep it private.")
    urls = lab_urls(args.host, port, token)
    print(f"make lab: open {urls[0]}")
    if remote:
        target = "localhost" if args.host in ANY else args.host
        print(f"make lab: or, safer, tunnel from your own computer: ssh -N -L {port}:{target}:{port} "
              f"<you>@<this machine>, then open {urls[1]}")
    sys.stdout.flush()
    os.execve(cmd[0], cmd + extra, env)


if __name__ == "__main__":
    main()
