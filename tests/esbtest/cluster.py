"""A private three-node RabbitMQ cluster on this machine, for the cluster tests.

Every node has its own node name (``esbtest<id>-<n>@localhost``), AMQP and distribution ports,
data and log folders, config file (no ``/etc/rabbitmq`` file is read) and no plugins at all (no
management listener to clash on 15672), all under one temporary folder; the nodes and
``rabbitmqctl`` share an Erlang cookie through ``HOME``. Nodes 2 and 3 join node 1 with
``rabbitmqctl join_cluster``. ``cluster_partition_handling`` is ``pause_minority`` and
``net_ticktime`` 10 s, so a silent node is found out in seconds.

It never touches the shared broker (127.0.0.1:5672, ``rabbit@localhost``): every command names
its node with ``-n``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esb.adapters.testing.daemon import free_port as _free_port

SBIN = Path("/usr/lib/rabbitmq/bin")


def available() -> str | None:
    """None when private nodes can be started here; else why not."""
    if not (SBIN / "rabbitmq-server").exists() or shutil.which("erl") is None:
        return "no RabbitMQ server installation (/usr/lib/rabbitmq/bin)"
    return None


@dataclass
class Node:
    index: int
    name: str
    port: int
    dist_port: int
    base: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    #: With network namespaces: the node's namespace, its address, and the host-side end of
    #: its virtual cable (set down: the node is cut off).
    netns: str | None = None
    host: str = "127.0.0.1"
    cable: str | None = None
    #: Its cable is pulled (:meth:`Cluster.partition`): asked nothing until healed.
    cut: bool = False

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def command(self, *args: str) -> list[str]:
        """``args`` run in the node's network namespace (when it has one)."""
        return ["ip", "netns", "exec", self.netns, *args] if self.netns else list(args)

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"


def netns_problem() -> str | None:
    """None when this machine lets us make network namespaces joined by a bridge; else why
    not (not root, no ``ip``, a sandbox without them)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "network namespaces need root and iproute2"
    name = f"esbprobe{secrets.token_hex(3)}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True,
                       timeout=10)
        subprocess.run(["ip", "link", "add", f"{name}b", "type", "bridge"], check=True,
                       capture_output=True, timeout=10)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot make a network namespace and a bridge here: {exc}"
    finally:
        subprocess.run(["ip", "link", "del", f"{name}b"], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


@dataclass
class Cluster:
    """``netns=True``: every node in a network namespace of its own (address
    ``10.<net>.0.<n>``, host name ``h<n>`` through ``/etc/netns/<ns>/hosts``), the
    namespaces joined by a bridge that this process's namespace is on too — so one node's
    cable can be pulled (:meth:`partition`): a partition, no FIN, no RST."""

    root: Path
    size: int = 3
    netns: bool = False
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tag = tag
        self._net = secrets.randbelow(200) + 20
        self.bridge = f"esb{tag}br" if self.netns else None
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        plugins = self.root / "enabled_plugins"
        plugins.write_text("[].\n")
        env_file = self.root / "rabbitmq-env.conf"
        env_file.write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf
        for i in range(1, self.size + 1):
            base = self.root / f"n{i}"
            base.mkdir()
            port, dist = _free_port(), _free_port()
            host = f"10.{self._net}.0.{i}" if self.netns else "127.0.0.1"
            (base / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = {host}:{port}\n"
                "loopback_users = none\n"
                "cluster_partition_handling = pause_minority\n"
                "vm_memory_high_watermark.absolute = 1GB\n"
                "disk_free_limit.absolute = 50MB\n"
                "log.console = false\n"
                "log.file.level = warning\n")
            (base / "advanced.config").write_text("[{kernel, [{net_ticktime, 10}]}].\n")
            name = f"esbtest{tag}-{i}@{f'h{i}' if self.netns else 'localhost'}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_",
                                                                           "ERL_"))}
            env.update({
                "HOME": str(home),
                "RABBITMQ_NODENAME": name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(port),
                "RABBITMQ_DIST_PORT": str(dist),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_PID_FILE": str(base / "pid"),
                "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(env_file),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                    "-kernel inet_dist_use_interface {127,0,0,1}",
                "ERL_EPMD_ADDRESS": "127.0.0.1",
            })
            if self.netns:  # in its own namespace: its own epmd, any interface
                env.pop("ERL_EPMD_ADDRESS")
                env.pop("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS")
                env["RABBITMQ_NODE_IP_ADDRESS"] = host
            self.nodes.append(Node(i, name, port, dist, base, env,
                                   netns=f"esb{tag}n{i}" if self.netns else None,
                                   host=host, cable=f"esb{tag}h{i}" if self.netns else None))
        if self.netns:
            self._make_network()

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def _make_network(self) -> None:
        assert self.bridge is not None
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"10.{self._net}.0.254/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(f"{n.host} h{n.index}\n" for n in self.nodes)
        for node in self.nodes:
            assert node.netns and node.cable
            inner = f"esb{self.tag}v{node.index}"
            self._ip("netns", "add", node.netns)
            self._ip("link", "add", node.cable, "type", "veth", "peer", "name", inner)
            self._ip("link", "set", inner, "netns", node.netns)
            self._ip("link", "set", node.cable, "master", self.bridge)
            self._ip("link", "set", node.cable, "up")
            self._ip("netns", "exec", node.netns, "ip", "addr", "add", f"{node.host}/24",
                     "dev", inner)
            self._ip("netns", "exec", node.netns, "ip", "link", "set", inner, "up")
            self._ip("netns", "exec", node.netns, "ip", "link", "set", "lo", "up")
            # `ip netns exec` shows this file as /etc/hosts inside the namespace: the node
            # names' hosts, and this machine's own name (rabbitmqctl's node) as the node.
            etc = Path("/etc/netns") / node.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts + f"{node.host} {socket.gethostname()}\n")

    def partition(self, node: Node) -> None:
        """Pull the node's cable: from now on nothing reaches it or leaves it (no FIN, no
        RST), for the other nodes and for clients alike."""
        assert node.cable, "partitions need netns=True"
        self._ip("link", "set", node.cable, "down")
        node.cut = True

    def heal(self, node: Node) -> None:
        assert node.cable
        self._ip("link", "set", node.cable, "up")
        node.cut = False

    def _remove_network(self) -> None:
        for node in self.nodes:
            if not node.netns:
                continue
            pids = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            for pid in pids:  # epmd and anything else still in there
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "link", "del", node.cable or ""], capture_output=True,
                           timeout=10)
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True,
                           timeout=10)
            shutil.rmtree(Path("/etc/netns") / node.netns, ignore_errors=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    # -- commands -----------------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <node> ...``, always naming the private node."""
        # cwd: an Erlang VM writes its crash dumps (MnesiaCore.*) where it runs
        out = subprocess.run(node.command(str(SBIN / "rabbitmqctl"), "-n", node.name, *args),
                             env=node.env, capture_output=True, text=True, timeout=timeout,
                             cwd=node.base)
        if check and out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: "
                               f"{out.stdout}{out.stderr}")
        return out

    def queues(self, node: Node, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(node.command(str(SBIN / "rabbitmq-queues"), "-n", node.name,
                                           *args),
                              env=node.env, capture_output=True, text=True, timeout=120,
                              cwd=node.base)

    # -- lifecycle ----------------------------------------------------------------------------

    def start_node(self, node: Node, timeout: float = 300, wait: bool = True) -> None:
        """Start the node's server; with ``wait``, until it runs (else :meth:`await_node`)."""
        log = open(node.base / "stdout.log", "ab")  # noqa: SIM115 - the child keeps it
        node.proc = subprocess.Popen(node.command(str(SBIN / "rabbitmq-server")), env=node.env,
                                     stdout=log, stderr=log, start_new_session=True,
                                     cwd=node.base)
        log.close()
        if wait:
            self.await_node(node, timeout)

    def await_node(self, node: Node, timeout: float = 300) -> None:
        """Until the node runs. Generous: on a busy machine (the suite on parallel workers)
        the node and each ``rabbitmqctl`` (an Erlang VM of its own) start slowly."""
        deadline = time.monotonic() + timeout
        why = ""
        while True:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: "
                                   f"{(node.base / 'stdout.log').read_text()[-3000:]}")
            try:
                out = self.ctl(node, "await_startup", "--timeout", "30", check=False,
                               timeout=90)
                if out.returncode == 0:
                    return
                why = out.stdout + out.stderr
            except subprocess.TimeoutExpired:
                why = "rabbitmqctl await_startup did not return"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not start: {why}")
            time.sleep(0.5)

    def start(self) -> None:
        """Start every node, then join nodes 2.. to node 1."""
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(self.start_node, self.nodes))
        first = self.nodes[0]

        # One at a time: joins running together race on the schema (mnesia fails to start).
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            for attempt in range(3):
                out = self.ctl(node, "start_app", check=attempt == 2)
                if out.returncode == 0:
                    break
                time.sleep(1)
        running = self.running_nodes()
        if len(running) != self.size:
            raise RuntimeError(f"cluster did not form: {running}")

    def running_nodes(self, via: Node | None = None) -> list[str]:
        node = via or self._asked()
        out = self.ctl(node, "eval", "rabbit_nodes:all_running().", check=False)
        return [n.strip(" '[]\n") for n in out.stdout.split(",") if "@" in n]

    def _asked(self) -> Node:
        """The node a question goes to: one that runs and is not cut off."""
        return next(n for n in self.nodes if self.is_up(n) and not n.cut)

    def is_up(self, node: Node) -> bool:
        return node.proc is not None and node.proc.poll() is None

    def os_pid(self, node: Node) -> int:
        return int(node.pid_file.read_text().strip())

    def kill(self, node: Node) -> None:
        """kill -9 the node's Erlang VM: no goodbye to anybody."""
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(self.os_pid(node), signal.SIGKILL)
        if node.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(30)
            node.proc = None

    def stop_node(self, node: Node) -> None:
        """A clean stop (``rabbitmqctl stop``), as a rolling restart does."""
        if not self.is_up(node):
            return
        self.ctl(node, "stop", check=False, timeout=90)
        if node.proc is not None:
            try:
                node.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill(node)
            node.proc = None

    def restart_node(self, node: Node) -> None:
        self.stop_node(node)
        self.start_node(node)

    def list_queues(self, *fields: str, vhost: str = "/") -> list[dict[str, Any]]:
        """``rabbitmqctl list_queues <fields>`` as dicts, asked of a running node."""
        via = self._asked()
        out = self.ctl(via, "list_queues", "-p", vhost, "--quiet", "--formatter", "json",
                       *fields)
        start = out.stdout.find("[")
        return list(json.loads(out.stdout[start:])) if start >= 0 else []

    def replicated(self, prefix: str, vhost: str = "/") -> dict[str, dict[str, Any]]:
        """Every quorum queue and stream named ``prefix``... as the broker lists it: name ->
        its ``type``, ``leader``, ``members`` and ``online`` members."""
        return {q["name"]: q for q in self.list_queues("name", "type", "leader", "members",
                                                       "online", vhost=vhost)
                if q["name"].startswith(prefix) and q["type"] in ("quorum", "stream")}

    def members(self, queue: str, vhost: str = "/") -> list[str]:
        for q in self.list_queues("name", "members", vhost=vhost):
            if q["name"] == queue:
                return list(q["members"])
        raise LookupError(f"no queue {queue}")

    def await_in_sync(self, prefix: str, timeout: float = 300, steady: float = 3.0,
                      vhost: str = "/") -> dict[str, dict[str, Any]]:
        """Until every quorum queue and stream named ``prefix``... has a member on every node,
        all of them online, and has kept the same leader for ``steady`` seconds: what an
        operator checks before taking a node down. Returns that last listing (name -> its
        ``type``, ``leader``, ``members``, ``online``), so a test picks the node to take down
        from a state it has just verified, not from a second, later look.

        A node lost while another's members are still starting is a second fault, not the one
        a test means: on RabbitMQ 3.10 a stream whose writer goes while its replicas are still
        starting (or while the stream coordinator is restarting the stream) stays without a
        writer until that node returns."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        leaders: dict[str, str] = {}
        while True:
            listing = self.replicated(prefix, vhost)
            lacking = {}
            for name, q in listing.items():
                members, online = set(q["members"] or ()), set(q["online"] or ())
                if len(members) < self.size or members != online:
                    lacking[name] = sorted(members - online) or "too few members"
            now_leaders = {name: q["leader"] for name, q in listing.items()}
            if lacking or now_leaders != leaders:
                since, leaders = None, now_leaders
            elif since is None:
                since = time.monotonic()
            if not lacking and since is not None and time.monotonic() - since >= steady:
                return listing
            if time.monotonic() > deadline:
                raise RuntimeError(f"members not online and steady within {timeout:g}s: "
                                   f"{lacking or 'leaders still moving'}")
            time.sleep(0.5)

    def node(self, name: str) -> Node:
        """The node called ``name`` (as ``rabbitmqctl`` names it)."""
        return next(n for n in self.nodes if n.name == name)

    def writerless(self, prefix: str, vhost: str = "/") -> list[str]:
        """The streams named ``prefix``... whose writer (leader) is on no running node."""
        running = set(self.running_nodes())
        return sorted(name for name, q in self.replicated(prefix, vhost).items()
                      if q["type"] == "stream" and q["leader"] not in running)

    def version(self) -> tuple[int, ...]:
        """The RabbitMQ server version of the running nodes, e.g. (3, 10, 8)."""
        text = self.ctl(self._asked(), "version").stdout.strip()
        return tuple(int(part) for part in text.split(".") if part.isdigit())

    def report(self, prefix: str, vhost: str = "/") -> str:
        """For a failure report: each quorum queue and stream named ``prefix``... as the
        broker sees it (leader, members, online members), and the last lines the running
        nodes logged about streams, quorum queues and errors."""
        lines = []
        try:
            for name, q in self.replicated(prefix, vhost).items():
                lines.append(f"  {name} ({q['type']}): leader {q['leader']}, "
                             f"members {q['members']}, online {q['online']}")
        except Exception as exc:  # a report must not hide the failure it reports
            lines.append(f"  queues unknown: {exc}")
        for node in self.nodes:
            if not self.is_up(node):
                lines.append(f"--- {node.name}: down")
                continue
            log = node.base / "log" / f"{node.name}.log"
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            picked = [line for line in text
                      if any(w in line for w in ("stream", "quorum", "[error]", "[warning]"))]
            lines.append(f"--- {node.name}: last of {len(picked)} lines about streams, "
                         f"quorum queues, warnings and errors:")
            lines += [line[:400] for line in picked[-25:]]
        return "\n".join(lines)

    def close(self) -> None:
        """Throw the cluster away: its nodes are killed, not stopped (a clean stop of a quorum
        cluster's last nodes waits for a majority that is already gone: a minute or more)."""
        for node in self.nodes:
            self.kill(node)
        self._remove_network()
