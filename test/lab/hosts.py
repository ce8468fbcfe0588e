"""Lab hosts: Linux network + mount + UTS namespaces on one bridge.

A host is a persistent network namespace (its own eth0 and address on the lab bridge, no default
route) plus a persistent mount namespace in which /etc, /opt, /root, /usr and /var are overlays
over the machine's own directories, and /run is a private tmpfs. Whatever a process in the host
writes there (the Cloudify paths, the package database, firewall files, CLI profiles) lands in the
host's own upper directory and is invisible to other hosts and to the machine. Processes are
entered into the namespaces with nsenter, which execs in place, so a daemon's PID is the real
program's PID. See test/lab/README.md.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from .proc import LabError, alive, run, wait_until

OVERLAID = ("etc", "opt", "root", "usr", "var")
# what a host starts at boot, like enabled units on a systemd host (see boot())
BOOT_DIR = "/etc/lab/boot.d"
# and the SysV services the host itself enabled (update-rc.d, insserv: Salt's debian_service),
# as a SysV init runs them in runlevel 2, Debian's default; a fresh host has none enabled (the
# machine's own links are the machine's: its packages are the hosts' /usr, not their services)
SYSV_LINKS = "/etc/rc[0-6S].d/[SK][0-9][0-9]*"
SYSV_START = "/etc/rc2.d/S[0-9][0-9]*"
# a host whose init is SysV has no systemctl: where it has one but systemd is not PID 1, Salt
# takes the host for systemd "offline" (a container, a chroot) and its service states do nothing
SYSTEMCTL = "/usr/bin/systemctl"
# and sysvinit's runlevel (the machine's is systemd's: a link to systemctl), which says what a
# SysV host booted into runlevel 2 says (Salt's debian_service asks it)
RUNLEVEL = "/usr/sbin/runlevel"
RUNLEVEL_SCRIPT = "#!/bin/sh\n# the lab's SysV hosts run in runlevel 2 (test/lab/hosts.py)\necho 'N 2'\n"
FAULT_TABLE = "lab_faults"
# the firewall a host's OS comes with (Host.set_firewall): nftables (Debian's nft, the default),
# iptables (no nft binary: Debian's iptables alone) or firewalld (CentOS 7's default: its own
# system D-Bus and `firewalld --nofork`, started at boot, its permanent configuration in /etc)
FIREWALLS = ("nftables", "iptables", "firewalld")
FIREWALLD_BOOT = f"{BOOT_DIR}/05-firewalld"
FIREWALLD_SCRIPT = """#!/bin/sh
# the lab's firewalld (test/lab/hosts.py, Host.set_firewall): the host's own system D-Bus, then
# firewalld in the foreground of its own session, as systemd runs them; `start` returns once
# firewalld answers (at most 30 s)
[ "$1" = start ] || exit 0
mkdir -p /run/dbus
dbus-daemon --system --fork
setsid firewalld --nofork --nopid >/var/log/firewalld-lab.log 2>&1 </dev/null &
i=0
until firewall-cmd --state >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -le 150 ] || { echo "firewalld did not answer in 30 s: see /var/log/firewalld-lab.log" >&2; exit 1; }
  sleep 0.2
done
"""


class Network:
    """The lab bridge: the only link every host has."""

    def __init__(self, bridge, subnet_octet):
        self.bridge = bridge
        self.octet = subnet_octet
        self.prefix = f"10.213.{subnet_octet}"
        self.gateway = f"{self.prefix}.1"  # the bridge's address: the salt-master listens here

    def address(self, index):
        return f"{self.prefix}.{index}"

    def create(self):
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def add_address(self, address):
        """Another address of the machine on the bridge (a second salt-master's); it goes with
        the bridge. Adding one twice is a no-op."""
        shown = run(["ip", "-o", "addr", "show", "dev", self.bridge]).stdout
        if f" {address}/" not in shown:
            run(["ip", "addr", "add", f"{address}/24", "dev", self.bridge])

    def destroy(self):
        run(["ip", "link", "del", self.bridge], check=False)


class Host:
    """One lab host. `kind` is manager, db, lb or cli."""

    def __init__(self, lab_dir, prefix, name, kind, index, network):
        self.name = name
        self.kind = kind
        self.index = index
        self.network = network
        self.ip = network.address(index)
        # a manager's public address is a second one on eth0 (.1xx), as a host with a NATed or
        # external address has: profiles and clients are proven with an address that is not the
        # cluster's (private) one. Outgoing traffic keeps the private address as its source.
        self.public_ip = network.address(100 + index) if kind == "manager" else self.ip
        self.netns = f"{prefix}-{name}"
        self.veth = f"{prefix}v{index}"
        self.dir = Path(lab_dir) / "hosts" / name
        self.ns_dir = Path(lab_dir) / "ns"
        self.mnt_file = self.ns_dir / f"{name}.mnt"
        self.uts_file = self.ns_dir / f"{name}.uts"
        self.etc_hosts = ""
        self.firewall = "nftables"
        # an IPv6 address on eth0 (Lab.set_ipv6), None when the host has only IPv4 (and the
        # link-local address every IPv6 interface gets)
        self.ipv6 = None

    # ---- description -------------------------------------------------------------------
    def describe(self):
        return {"name": self.name, "kind": self.kind, "ip": self.ip, "public_ip": self.public_ip,
                "netns": self.netns, "veth": self.veth}

    def __repr__(self):
        return f"<Host {self.name} {self.kind} {self.ip}>"

    # ---- running things inside ---------------------------------------------------------
    def prefix(self):
        """argv prefix that runs a command inside this host (nsenter execs in place)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount={self.mnt_file}",
                f"--uts={self.uts_file}", "--"]

    def run(self, argv, **kwargs):
        """Run argv inside the host; see proc.run for the keyword arguments."""
        return run(self.prefix() + list(argv), **kwargs)

    def sh(self, script, **kwargs):
        """Run a /bin/sh script inside the host."""
        return self.run(["/bin/sh", "-ec", script], **kwargs)

    def read(self, path):
        """A file's text as this host sees it, or None when it does not exist there."""
        proc = self.run(["cat", path], check=False)
        return proc.stdout if proc.returncode == 0 else None

    def exists(self, path):
        return self.run(["test", "-e", path], check=False).returncode == 0

    def write(self, path, text, mode="0644"):
        self.run(["install", "-D", "-m", mode, "/dev/stdin", path], input=text)

    def popen(self, argv, **kwargs):
        return subprocess.Popen(self.prefix() + [str(a) for a in argv], **kwargs)

    # ---- lifecycle -----------------------------------------------------------------------
    def create(self):
        net = self.network
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", f"{self.veth}p"])
        run(["ip", "link", "set", self.veth, "master", net.bridge])
        run(["ip", "link", "set", self.veth, "up"])
        run(["ip", "link", "set", f"{self.veth}p", "netns", self.netns])
        inside = ["ip", "-n", self.netns]
        run(inside + ["link", "set", f"{self.veth}p", "name", "eth0"])
        run(inside + ["addr", "add", f"{self.ip}/24", "dev", "eth0"])
        if self.public_ip != self.ip:
            run(inside + ["addr", "add", f"{self.public_ip}/24", "dev", "eth0"])
        run(inside + ["link", "set", "eth0", "up"])
        run(inside + ["link", "set", "lo", "up"])
        for d in OVERLAID:
            (self.dir / "upper" / d).mkdir(parents=True, exist_ok=True)
            (self.dir / "overlay-work" / d).mkdir(parents=True, exist_ok=True)
        self.mnt_file.touch()
        self.uts_file.touch()
        run(["nsenter", f"--net=/run/netns/{self.netns}", "unshare", f"--mount={self.mnt_file}",
             f"--uts={self.uts_file}", "--propagation", "private", "--", "/bin/sh", "-ec",
             f"mount -t sysfs sysfs /sys; hostname {self.name}"])
        self._mount_overlays()
        self._mount_run()
        self._install_os()

    def _install_os(self):
        """A fresh Debian whose init is SysV (the lab's boot): no SysV service enabled (see
        SYSV_LINKS), no systemctl (SYSTEMCTL; a whiteout in the host's /usr), sysvinit's
        runlevel (RUNLEVEL)."""
        self.sh(f"rm -f {SYSV_LINKS} {SYSTEMCTL} {RUNLEVEL}")
        self.write(RUNLEVEL, RUNLEVEL_SCRIPT, mode="0755")

    def _mount_overlays(self):
        script = []
        for d in OVERLAID:
            script.append(
                f"mount -t overlay lab-{self.name}-{d} -o lowerdir=/{d},"
                f"upperdir={self.dir}/upper/{d},workdir={self.dir}/overlay-work/{d} /{d}")
        script.append(f"echo {self.name} > /etc/hostname")
        self.sh("\n".join(script))
        if self.etc_hosts:
            self.write("/etc/hosts", self.etc_hosts)

    def _mount_run(self):
        # a fresh /run at every boot, as tmpfs is on a real host: pid files do not survive
        self.sh("if mountpoint -q /run; then umount -l /run; fi\n"
                "mount -t tmpfs -o mode=0755 lab-run /run\nmkdir -p /run/lock")

    def set_firewall(self, kind):
        """The firewall this host's OS comes with (FIREWALLS), from its next wipe on (a
        reinstall): the reset or wipe that follows installs it, and its boot starts it."""
        if kind not in FIREWALLS:
            raise LabError(f"unknown firewall {kind!r}: one of {', '.join(FIREWALLS)}")
        self.firewall = kind

    def _install_firewall(self):
        if self.firewall == "firewalld":
            self.write(FIREWALLD_BOOT, FIREWALLD_SCRIPT, mode="0755")
        elif self.firewall == "iptables":
            # a whiteout in the host's /usr: the machine keeps its nft
            self.sh("rm -f /usr/sbin/nft")

    def set_ipv6(self, address):
        """Give eth0 this IPv6 address (a /64 on the bridge, usable at once: no duplicate
        address detection), or take the one it has away (None). The netns keeps it across
        wipes and power cuts, as a host keeps its configured address."""
        if self.ipv6:
            run(["ip", "-n", self.netns, "addr", "del", f"{self.ipv6}/64", "dev", "eth0"],
                check=False)
            self.ipv6 = None
        if address:
            run(["ip", "-n", self.netns, "addr", "add", f"{address}/64", "dev", "eth0", "nodad"])
            self.ipv6 = address

    def set_hosts_file(self, text):
        self.etc_hosts = text
        self.write("/etc/hosts", text)

    def pids(self):
        proc = run(["ip", "netns", "pids", self.netns], check=False)
        return [int(p) for p in proc.stdout.split()]

    def kill(self, timeout=15):
        """Kill every process in the host at once (a power cut); return when none is alive."""
        killed = set()

        def all_gone():
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed.add(pid)
            return not pids and not any(alive(p) for p in killed)

        wait_until(all_gone, timeout, f"every process of {self.name} to die")
        self._forget_firewall()
        return sorted(killed)

    def _forget_firewall(self):
        """What a power cut does to the kernel's firewall: every table of the host is gone
        (iptables-nft's included), but the lab's fault table, which models the network around
        the host and is set and cleared by the tests themselves."""
        proc = self._nft("-j", "list", "tables", check=False)
        if proc.returncode != 0:
            return
        for item in json.loads(proc.stdout)["nftables"]:
            table = item.get("table")
            if table and (table["family"], table["name"]) != ("inet", FAULT_TABLE):
                self._nft("delete", "table", table["family"], table["name"], check=False)

    def boot(self):
        """Start what the host starts at boot: a fresh /run, every script in BOOT_DIR, then the
        SysV services the host enabled (SYSV_START, in their order), each with `start`.

        Boot scripts start their daemons in the background and return; the lab's caller starts
        the salt-minion itself (it is a pytest-salt-factories daemon).
        """
        self._mount_run()
        # a SysV service that fails to start is left down, as init leaves it
        self.sh(f"for s in {BOOT_DIR}/*; do [ -x \"$s\" ] && \"$s\" start; done\n"
                f"for s in {SYSV_START}; do [ -x \"$s\" ] && {{ \"$s\" start || true; }}; done; "
                "true")

    def wipe(self):
        """Return the host to a freshly installed OS: every write since creation is gone.

        The host must have no processes (kill() first): its overlays are unmounted and their
        upper layers removed.
        """
        if self.pids():
            raise LabError(f"{self.name} still has processes; kill it before wiping it")
        # lazy: the shell doing the unmounting runs from the overlaid /usr itself
        umounts = "\n".join(f"umount -l /{d}" for d in reversed(OVERLAID))
        run(["nsenter", f"--mount={self.mnt_file}", "--", "/bin/sh", "-ec",
             f"umount -l /run 2>/dev/null || true\n{umounts}"])
        for d in ("upper", "overlay-work"):
            shutil.rmtree(self.dir / d, ignore_errors=True)
            for sub in OVERLAID:
                (self.dir / d / sub).mkdir(parents=True, exist_ok=True)
        self._mount_overlays()
        self._mount_run()
        self._install_os()
        self._install_firewall()

    def destroy(self):
        """Remove the host: processes, mounts, namespaces, veth."""
        if self.netns in netns_list():
            self.kill()
        for f in (self.mnt_file, self.uts_file):
            run(["umount", "-l", str(f)], check=False)
        run(["ip", "netns", "del", self.netns], check=False)
        run(["ip", "link", "del", self.veth], check=False)

    # ---- faults --------------------------------------------------------------------------
    def link_up(self):
        return Path(f"/sys/class/net/{self.veth}/operstate").read_text().strip() == "up"

    def cut_link(self, timeout=10):
        """Unplug the host's cable: nothing reaches it and it reaches nothing."""
        run(["ip", "link", "set", self.veth, "down"])
        wait_until(lambda: not self.link_up() and not tcp_open(self.ip, 22, 0.2, expect_refused=True),
                   timeout, f"{self.name}'s link to go down")

    def restore_link(self, timeout=10):
        run(["ip", "link", "set", self.veth, "up"])
        wait_until(lambda: self.link_up() and tcp_open(self.ip, 22, 0.5, expect_refused=True),
                   timeout, f"{self.name}'s link to come back")

    def _nft(self, *args, check=True):
        return run(["nsenter", f"--net=/run/netns/{self.netns}", "--", "nft", *args], check=check)

    def blocked_ports(self):
        proc = self._nft("-j", "list", "table", "inet", FAULT_TABLE, check=False)
        if proc.returncode != 0:
            return set()
        ports = set()
        for item in json.loads(proc.stdout)["nftables"]:
            rule = item.get("rule")
            if rule and rule.get("comment", "").startswith("block "):
                _, proto, port = rule["comment"].split()
                ports.add((proto, int(port)))
        return ports

    def block_port(self, port, proto="tcp", timeout=10, probe=True):
        """Drop every packet to or from `port`/`proto` on this host, in both directions.

        Returns when the rules are in the host's ruleset and, for TCP with `probe`, when a
        connection from the bridge to the port is silently dropped (no answer, not even a
        reset). `probe=False` where the host's own firewall already drops the bridge's
        connections (the formula's rules let only the peers in), so the probe proves nothing.
        """
        self._nft("add", "table", "inet", FAULT_TABLE)
        for chain, hook in (("input", "input"), ("output", "output")):
            self._nft("add", "chain", "inet", FAULT_TABLE, chain,
                      f"{{ type filter hook {hook} priority -10; policy accept; }}")
        self._nft("add", "rule", "inet", FAULT_TABLE, "input", proto, "dport", str(port), "drop",
                  "comment", f'"block {proto} {port}"')
        self._nft("add", "rule", "inet", FAULT_TABLE, "output", proto, "dport", str(port), "drop",
                  "comment", f'"block {proto} {port}"')
        check = (lambda: (proto, port) in self.blocked_ports()
                 and (proto != "tcp" or not probe or tcp_dropped(self.ip, port)))
        wait_until(check, timeout, f"{proto}/{port} to be blocked on {self.name}")

    def unblock_port(self, port, proto="tcp", timeout=10, probe=True):
        proc = self._nft("-j", "-a", "list", "table", "inet", FAULT_TABLE, check=False)
        if proc.returncode == 0:
            for item in json.loads(proc.stdout)["nftables"]:
                rule = item.get("rule")
                if rule and rule.get("comment") == f"block {proto} {port}":
                    self._nft("delete", "rule", "inet", FAULT_TABLE, rule["chain"], "handle",
                              str(rule["handle"]))
        check = (lambda: (proto, port) not in self.blocked_ports()
                 and (proto != "tcp" or not probe or not tcp_dropped(self.ip, port)))
        wait_until(check, timeout, f"{proto}/{port} to be open again on {self.name}")


def netns_list():
    proc = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def tcp_open(ip, port, timeout, expect_refused=False):
    """True when ip answers on port (a connection, or a reset when expect_refused)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return expect_refused
    except OSError:
        return False


def tcp_dropped(ip, port, timeout=0.3):
    """True when a TCP connection to ip:port gets no answer at all (dropped by a firewall)."""
    start = time.monotonic()
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return False
    except OSError:
        return time.monotonic() - start >= timeout * 0.9


# how a TCP connection from one host to another fares, as a firewall sees it: "open" (a
# listener answered), "refused" (the host's stack answered: nothing listens, no firewall in the
# way), "dropped" (no answer in 0.5 s), "rejected" (an ICMP error, as firewalld's zones answer)
CONNECT = textwrap.dedent("""
    import errno, socket, sys
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()
        print("open")
    except socket.timeout:
        print("dropped")
    except OSError as exc:
        print("refused" if exc.errno == errno.ECONNREFUSED else
              "rejected" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES)
              else f"error {exc}")
""")


def reach(src, dst, port, family=4):
    """How a TCP connect from host src to host dst's port fares (see CONNECT), to dst's IPv4
    address or (family 6) its IPv6 one (Lab.set_ipv6)."""
    address = dst.ip if family == 4 else dst.ipv6
    if not address:
        raise LabError(f"{dst.name} has no IPv{family} address: Lab.set_ipv6(True) first")
    return src.run([sys.executable, "-c", CONNECT, address, str(port)]).stdout.strip()
