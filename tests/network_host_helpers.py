"""Hosts made of Linux network namespaces, for the tests that lose one mid-run.

Each host is a network namespace (`ip netns add`) with its loopback up. The first host holds a
bridge, the switch: every other host reaches it through a veth pair whose switch end lies in the
first host, so taking that end down (`link_down`) cuts a host off the way a pulled cable or a
dead switch port does: packets vanish, and neither side is told. An observer link joins the test
process itself (the root namespace) to the switch, so the test can watch the servers it starts.
All the hosts share the file system, so a drop, a registry and a home have the same path on each.

Everything lives in the namespaces (the bridge, the veths, the processes started there), so
deleting them removes it all; `close` kills every process in them by id, deletes them, and fails
naming whatever is left. Where `ip netns add` is refused (not root, no CAP_NET_ADMIN, no iproute2)
the tests skip with the reason, unless VISIONFLOW_REQUIRE_NETNS=1 (then they fail).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from visionflow.processes.reaper import process_start

REQUIRE_VARIABLE = "VISIONFLOW_REQUIRE_NETNS"
SWITCH = "switch"  # The bridge's name inside the first host.
HOST_LINK = "eth0"  # Each other host's end of its link.
STOP_SECONDS = 30.0  # How long killed processes have to be gone, in seconds.


def ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGUMENTS`; with check, an AssertionError carrying ip's own message when it fails."""
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"ip {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result


def netns_refusal() -> str | None:
    """Why network namespaces cannot be made here (the system's own words), or None when they can."""
    probe = f"vf-probe-{os.getpid()}"
    try:
        added = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if added.returncode != 0:
        return f"`ip netns add` is refused here: {added.stderr.strip() or f'exit code {added.returncode}'}"
    ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    """Skip the calling test where namespaces cannot be made, or fail if VISIONFLOW_REQUIRE_NETNS=1."""
    reason = netns_refusal()
    if reason is None:
        return
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1 says these tests must run)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Host:
    """One namespace: its role, its name, its address on the switch, and its link's end in the switch host."""

    role: str  # What the test calls it, e.g. "flow" or "worker-b".
    namespace: str
    address: str
    switch_port: str  # The veth end in the first host's namespace; "" for the first host.


@dataclass
class NetworkHosts:
    """Hosts on one switch, the processes started on them, and their removal."""

    hosts: list[Host]
    observer_link: str  # The test process's link to the switch, in the root namespace.
    processes: list[subprocess.Popen] = field(default_factory=list)

    def host(self, role: str) -> Host:
        return next(host for host in self.hosts if host.role == role)

    def start(self, host: Host, arguments: list[str], environment: dict[str, str], log: Path) -> subprocess.Popen:
        """Start arguments on host, in a process group of its own, output to log."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as output:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *arguments],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        return process

    def link_down(self, host: Host) -> None:
        """Cut host off: its port on the switch goes down, so every packet to or from it is lost."""
        ip("-n", self.hosts[0].namespace, "link", "set", host.switch_port, "down")

    def pids(self) -> set[int]:
        """Every process now running in one of the hosts."""
        found: set[int] = set()
        for host in self.hosts:
            listed = ip("netns", "pids", host.namespace, check=False).stdout.split()
            found.update(int(pid) for pid in listed)
        return found

    def close(self) -> None:
        """Kill every process on the hosts, delete the hosts, and fail naming anything left."""
        started = {process.pid: process_start(process.pid)[0] for process in self.processes}
        for process in self.processes:
            _kill(process.pid, group=True)
        seen: dict[int, str | None] = dict(started)
        deadline = time.monotonic() + STOP_SECONDS
        while (running := self.pids()) and time.monotonic() < deadline:
            for pid in running:
                seen.setdefault(pid, process_start(pid)[0])
                _kill(pid, group=False)
            time.sleep(0.1)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):  # Named below, among what is left.
                process.wait(timeout=STOP_SECONDS)
        ip("link", "del", self.observer_link, check=False)
        for host in self.hosts:
            ip("netns", "del", host.namespace, check=False)
        # The kernel tears a deleted namespace's links down in the background: give it a moment.
        deadline = time.monotonic() + STOP_SECONDS
        while (problems := self.leftovers(seen)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if problems:
            raise AssertionError("the network hosts left behind: " + "; ".join(problems))

    def leftovers(self, seen: dict[int, str | None]) -> list[str]:
        """What is still there of the hosts: namespaces, the observer link, processes seen in them."""
        listed = ip("netns", "list", check=False).stdout.split()
        problems = [f"namespace {host.namespace}" for host in self.hosts if host.namespace in listed]
        if ip("link", "show", self.observer_link, check=False).returncode == 0:
            problems.append(f"link {self.observer_link}")
        alive = [pid for pid, start in seen.items() if start is not None and process_start(pid)[0] == start]
        problems += [f"process {pid}" for pid in sorted(alive)]
        return problems


def _kill(pid: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # Ended already (a group whose leader is gone has no members left to find by its id).


def make_hosts(roles: list[str]) -> NetworkHosts:
    """Hosts named by roles, the first holding the switch, on a /24 of 10.199.0.0/16 of their own.

    The subnet's third byte comes from this process's id, so two test runs at once do not route
    the same subnet from the root namespace; addresses are .1, .2, ... in the order of roles and
    .254 for the observer.
    """
    tag = uuid.uuid4().hex[:6]
    subnet = f"10.199.{os.getpid() % 250 + 1}"
    hosts = [
        Host(role, f"vf-{tag}-{role}", f"{subnet}.{index}", f"port-{role}"[:15] if index > 1 else "")
        for index, role in enumerate(roles, start=1)
    ]
    network = NetworkHosts(hosts, observer_link=f"vf{tag}obs")
    try:
        _wire(network, subnet)
    except BaseException:
        network.close()
        raise
    return network


def _wire(network: NetworkHosts, subnet: str) -> None:
    switch_host = network.hosts[0]
    for host in network.hosts:
        ip("netns", "add", host.namespace)
        ip("-n", host.namespace, "link", "set", "lo", "up")
    ip("-n", switch_host.namespace, "link", "add", SWITCH, "type", "bridge")
    ip("-n", switch_host.namespace, "addr", "add", f"{switch_host.address}/24", "dev", SWITCH)
    ip("-n", switch_host.namespace, "link", "set", SWITCH, "up")
    for host in network.hosts[1:]:
        ip("-n", switch_host.namespace, "link", "add", host.switch_port, "type", "veth",
           "peer", "name", HOST_LINK, "netns", host.namespace)  # fmt: skip
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", HOST_LINK)
        ip("-n", host.namespace, "link", "set", HOST_LINK, "up")
        _plug(switch_host.namespace, host.switch_port)
    # The observer: the test process's end stays in the root namespace, the other end joins the switch.
    ip("link", "add", network.observer_link, "type", "veth", "peer", "name", "port-observer",
       "netns", switch_host.namespace)  # fmt: skip
    ip("addr", "add", f"{subnet}.254/24", "dev", network.observer_link)
    ip("link", "set", network.observer_link, "up")
    _plug(switch_host.namespace, "port-observer")


def _plug(namespace: str, port: str) -> None:
    ip("-n", namespace, "link", "set", port, "master", SWITCH)
    ip("-n", namespace, "link", "set", port, "up")
