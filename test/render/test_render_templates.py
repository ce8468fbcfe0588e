"""The formula's templates as its SLS render them: the firewall rules (each backend, through
``slsutil.renderer`` inside cloudify_ha.firewall) and HAProxy's configuration (through
``file.get_managed``, what ``file.managed`` with ``template: jinja`` and its ``context`` runs)."""

import base64
import contextlib
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from render_setup import LB, LEADER, args_of, functions_of, problems_of

PEERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
# pillar.example's leader: its cluster's ports to the managers, the REST port to them and
# rest_sources, 5671 and 53333 to them and agent_sources
NFT_RULES = """table inet cloudify_ha {{
  set peers_0 {{
    type ipv4_addr
    flags interval
    elements = {{ 10.0.0.11, 10.0.0.12, 10.0.0.13 }}
  }}
  set rest_1 {{
    type ipv4_addr
    flags interval
    elements = {{ 10.0.0.11, 10.0.0.12, 10.0.0.13, 10.0.0.20, 10.0.1.0/24 }}
  }}
  set agents_2 {{
    type ipv4_addr
    flags interval
    elements = {{ 10.0.0.11, 10.0.0.12, 10.0.0.13, 10.0.2.0/24 }}
  }}
  # each port below from its set only; every other source is dropped, IPv6 included (an inet
  # table sees both families; the sets hold IPv4 addresses)
  chain input {{
    type filter hook input priority -1; policy accept;
    iifname "lo" accept comment "cloudify_ha prod {digest}"
    ip saddr @peers_0 tcp dport {{ 8300, 8301, 8500, 22000 }} accept
    ip saddr @peers_0 udp dport {{ 8301 }} accept
    ip saddr @rest_1 tcp dport {{ 80 }} accept
    ip saddr @agents_2 tcp dport {{ 5671, 53333 }} accept
    tcp dport {{ 8300, 8301, 8500, 22000 }} drop
    udp dport {{ 8301 }} drop
    tcp dport {{ 80 }} drop
    tcp dport {{ 5671, 53333 }} drop
  }}
}}
"""
IPTABLES_RULES = "".join(
    ["*filter\n:CLOUDIFY_HA - [0:0]\n-F CLOUDIFY_HA\n-A CLOUDIFY_HA -i lo -j RETURN\n"]
    + [f"-A CLOUDIFY_HA -s {ip} -p tcp -m multiport --dports 8300,8301,8500,22000 -j ACCEPT\n"
       f"-A CLOUDIFY_HA -s {ip} -p udp -m multiport --dports 8301 -j ACCEPT\n" for ip in PEERS]
    + [f"-A CLOUDIFY_HA -s {src} -p tcp -m multiport --dports 80 -j ACCEPT\n"
       for src in PEERS + ("10.0.0.20", "10.0.1.0/24")]
    + [f"-A CLOUDIFY_HA -s {src} -p tcp -m multiport --dports 5671,53333 -j ACCEPT\n"
       for src in PEERS + ("10.0.2.0/24",)]
    + ["-A CLOUDIFY_HA -p tcp -m multiport --dports 8300,8301,8500,22000 -j DROP\n"
       "-A CLOUDIFY_HA -p udp -m multiport --dports 8301 -j DROP\n"
       "-A CLOUDIFY_HA -p tcp -m multiport --dports 80 -j DROP\n"
       "-A CLOUDIFY_HA -p tcp -m multiport --dports 5671,53333 -j DROP\n"
       '-A CLOUDIFY_HA -m comment --comment "cloudify_ha prod {digest}" -j RETURN\nCOMMIT\n'])
# over IPv6 every port the formula handles is closed: its sources are IPv4
IP6TABLES_RULES = (
    "*filter\n:CLOUDIFY_HA - [0:0]\n-F CLOUDIFY_HA\n-A CLOUDIFY_HA -i lo -j RETURN\n"
    "-A CLOUDIFY_HA -p tcp -m multiport --dports 8300,8301,8500,22000 -j DROP\n"
    "-A CLOUDIFY_HA -p udp -m multiport --dports 8301 -j DROP\n"
    "-A CLOUDIFY_HA -p tcp -m multiport --dports 80 -j DROP\n"
    "-A CLOUDIFY_HA -p tcp -m multiport --dports 5671,53333 -j DROP\n"
    '-A CLOUDIFY_HA -m comment --comment "cloudify_ha prod {digest}" -j RETURN\nCOMMIT\n')
HEADER = "# managed by Salt (cloudify_ha.firewall), do not edit\n"
NFT_HEADER = HEADER + "table inet cloudify_ha\ndelete table inet cloudify_ha\n"
NFT_STATES = {"cloudify_ha-firewall-nftables-file": "file.managed",
              "cloudify_ha-firewall-nftables-loaded": "cloudify_ha_firewall.rules_loaded"}
XTABLES_STATES = {f"cloudify_ha-firewall-{tool}-{what}": fun for tool in ("iptables", "ip6tables")
                  for what, fun in (("file", "file.managed"),
                                    ("loaded", "cloudify_ha_firewall.rules_loaded"))}


def digest_of(rules):
    # the formula's marker: the rules' digest rendered without it
    return hashlib.sha256(rules.format(digest="").encode()).hexdigest()[:16]


def firewall(minion, *args, **kwargs):
    m = minion(*args, **kwargs)
    high, errors = m.render("cloudify_ha.firewall")
    assert errors == []
    assert problems_of(m.state, high) == []
    return high


def parses(tool, text, tmp_path):
    """What this machine's real tool says of the rules file (nft -c, iptables-restore --test),
    in a network namespace of its own: nothing is loaded anywhere. '' when it takes them."""
    path = tmp_path / f"rules.{tool}"
    path.write_text(text)
    check = {"nft": ["nft", "-c", "-f"], "iptables": ["iptables-restore", "--test"],
             "ip6tables": ["ip6tables-restore", "--test"]}[tool]
    proc = subprocess.run(["unshare", "--net", *check, str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    return (proc.stderr + proc.stdout).strip() if proc.returncode else ""


def test_nftables_where_nft_is_installed_with_the_rules_and_their_digest(minion, tmp_path):
    high = firewall(minion, "example", LEADER, binaries=("nft",))
    assert functions_of(high) == NFT_STATES
    digest = digest_of(NFT_RULES)
    managed = args_of(high, "cloudify_ha-firewall-nftables-file")
    assert (managed["name"], managed["mode"]) == ("/etc/cloudify_ha/firewall.nft", "0644")
    assert managed["contents"] == NFT_HEADER + NFT_RULES.format(digest=digest)
    assert args_of(high, "cloudify_ha-firewall-nftables-loaded") == {
        "name": "/etc/cloudify_ha/firewall.nft", "backend": "nftables",
        "marker": f"cloudify_ha prod {digest}",
        "require": [{"file": "cloudify_ha-firewall-nftables-file"}]}
    assert parses("nft", managed["contents"], tmp_path) == ""


def test_iptables_and_ip6tables_where_the_pillar_asks_for_it_even_with_nft_installed(minion,
                                                                                     tmp_path):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"firewall": {"backend": "iptables"}}}}}
    high = firewall(minion, "example", LEADER, pillar=pillar, binaries=("nft",))
    assert functions_of(high) == XTABLES_STATES
    for tool, rules in (("iptables", IPTABLES_RULES), ("ip6tables", IP6TABLES_RULES)):
        digest = digest_of(rules)
        managed = args_of(high, f"cloudify_ha-firewall-{tool}-file")
        assert managed["name"] == f"/etc/cloudify_ha/firewall.{tool}"
        assert managed["contents"] == HEADER + rules.format(digest=digest)
        assert args_of(high, f"cloudify_ha-firewall-{tool}-loaded") == {
            "name": f"/etc/cloudify_ha/firewall.{tool}", "backend": tool,
            "marker": f"cloudify_ha prod {digest}",
            "require": [{"file": f"cloudify_ha-firewall-{tool}-file"}]}
        assert parses(tool, managed["contents"], tmp_path) == ""


@pytest.mark.parametrize("binaries", [(), ("nft=0.8",), ("nft=0.8.5",)],
                         ids=["no nft", "EL7's nft 0.8", "nft 0.8.5"])
def test_auto_picks_iptables_where_nft_is_missing_or_older_than_the_rules_need(minion,
                                                                              binaries):
    assert functions_of(firewall(minion, "example", LEADER, binaries=binaries)) == XTABLES_STATES


@pytest.mark.parametrize("version", ["0.9.0", "0.9.3", "1.0.6"])
def test_auto_picks_nftables_where_nft_is_new_enough(minion, version):
    high = firewall(minion, "example", LEADER, binaries=(f"nft={version}",))
    assert functions_of(high) == NFT_STATES


@pytest.mark.parametrize("binaries, found", [((), "this host has no nft"),
                                             (("nft=0.8",), "this host's nft is 0.8 and")],
                         ids=["no nft", "nft 0.8"])
def test_nftables_asked_for_where_nft_cannot_take_the_rules_is_refused_naming_the_key(
        minion, binaries, found):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"firewall": {"backend": "nftables"}}}}}
    high = firewall(minion, "example", LEADER, pillar=pillar, binaries=binaries)
    assert functions_of(high) == {"cloudify_ha-firewall-refused": "cloudify_ha.refused"}
    comment = args_of(high, "cloudify_ha-firewall-refused")["comment"]
    assert comment.startswith("cloudify_ha:clusters:prod:firewall:backend: nftables, but ")
    assert found in comment and "iptables" in comment


def test_the_labs_pillar_lets_its_managers_and_its_subnet_in(minion):
    high = firewall(minion, "lab", "mgr1", binaries=("nft",))
    contents = args_of(high, "cloudify_ha-firewall-nftables-file")["contents"]
    assert "    elements = { 10.10.0.11, 10.10.0.12, 10.10.0.13 }\n" in contents
    # the subnet holds the managers: their own addresses are not listed twice (no overlap)
    assert contents.count("    elements = { 10.10.0.0/24 }\n") == 2


def test_firewalld_where_it_runs_gets_every_opening_as_data(minion):
    """firewalld gets its rules as data (no shell string): the state builds its ipsets and rich
    rules itself from checked parts and runs firewall-cmd with an argv."""
    high = firewall(minion, "example", LEADER, binaries=("firewall-cmd", "nft"))
    peers = list(PEERS)
    assert functions_of(high) == {
        "cloudify_ha-firewall-firewalld-rules": "cloudify_ha_firewall.firewalld_present"}
    assert args_of(high, "cloudify_ha-firewall-firewalld-rules") == {
        "name": "prod", "zone": "", "openings": [
            {"cluster": "prod", "name": "peers", "tcp": [8300, 8301, 8500, 22000],
             "udp": [8301], "sources": peers},
            {"cluster": "prod", "name": "rest", "tcp": [80], "udp": [],
             "sources": peers + ["10.0.0.20", "10.0.1.0/24"]},
            {"cluster": "prod", "name": "agents", "tcp": [5671, 53333], "udp": [],
             "sources": peers + ["10.0.2.0/24"]}]}


def test_firewalld_in_the_pillars_zone(minion):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"firewall": {"firewalld_zone": "internal"}}}}}
    high = firewall(minion, "example", LEADER, pillar=pillar, binaries=("firewall-cmd",))
    assert args_of(high, "cloudify_ha-firewall-firewalld-rules")["zone"] == "internal"


def test_a_disabled_firewall_renders_nothing_to_do(minion):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"firewall": {"enabled": False}}}}}
    for host in (LEADER, LB):
        high = firewall(minion, "example", host, pillar=pillar)
        assert functions_of(high) == {"cloudify_ha-firewall-nothing-to-do":
                                      "test.succeed_without_changes"}


def test_the_load_balancer_host_opens_its_port_to_its_sources_with_the_same_templates(
        minion, tmp_path):
    """The LB host's firewall: loadbalancer:port to loadbalancer:sources (everyone by default),
    closed to every other source and to IPv6, from the same state and templates."""
    nft = args_of(firewall(minion, "example", LB), "cloudify_ha-firewall-nftables-file")
    rules = ('table inet cloudify_ha {{\n  set lb_0 {{\n    type ipv4_addr\n    flags interval\n'
             '    elements = {{ 0.0.0.0/0 }}\n  }}\n'
             '  # each port below from its set only; every other source is dropped, IPv6 '
             'included (an inet\n  # table sees both families; the sets hold IPv4 addresses)\n'
             '  chain input {{\n    type filter hook input priority -1; policy accept;\n'
             '    iifname "lo" accept comment "cloudify_ha prod {digest}"\n'
             '    ip saddr @lb_0 tcp dport {{ 80 }} accept\n    tcp dport {{ 80 }} drop\n'
             '  }}\n}}\n')
    assert nft["contents"] == NFT_HEADER + rules.format(digest=digest_of(rules))
    assert parses("nft", nft["contents"], tmp_path) == ""
    pillar = {"cloudify_ha": {"clusters": {"prod": {
        "loadbalancer": {"port": 443, "sources": ["192.0.2.0/24", "198.51.100.7"]},
        "firewall": {"backend": "iptables"}}}}}
    high = firewall(minion, "example", LB, pillar=pillar)
    v4 = args_of(high, "cloudify_ha-firewall-iptables-file")["contents"]
    assert [line for line in v4.splitlines() if line.startswith("-A")][1:-1] == [
        "-A CLOUDIFY_HA -s 192.0.2.0/24 -p tcp -m multiport --dports 443 -j ACCEPT",
        "-A CLOUDIFY_HA -s 198.51.100.7 -p tcp -m multiport --dports 443 -j ACCEPT",
        "-A CLOUDIFY_HA -p tcp -m multiport --dports 443 -j DROP"]
    v6 = args_of(high, "cloudify_ha-firewall-ip6tables-file")["contents"]
    assert [line for line in v6.splitlines() if line.startswith("-A")][1:-1] == [
        "-A CLOUDIFY_HA -p tcp -m multiport --dports 443 -j DROP"]
    fwd = args_of(firewall(minion, "example", LB, binaries=("firewall-cmd",)),
                  "cloudify_ha-firewall-firewalld-rules")
    assert fwd == {"name": "prod", "zone": "", "openings": [
        {"cluster": "prod", "name": "lb", "tcp": [80], "udp": [], "sources": ["0.0.0.0/0"]}]}


# ---- HAProxy ----------------------------------------------------------------------------------
# `haproxy -v` of the two HAProxy packages the formula is written for (cloudify_ha_lb.FEATURES)
EL7_HAPROXY = {"version": "1.5.18", "server_state": False, "ssl_min_ver": False,
               "http_check_send": False}
DEBIAN12_HAPROXY = {"version": "2.6.12", "server_state": True, "ssl_min_ver": True,
                    "http_check_send": True}


@contextlib.contextmanager
def haproxy_on_host(m, features):
    """The template asks the host's HAProxy what it parses (cloudify_ha_lb.features): answer as
    that HAProxy would, for `m` (a cached Minion) during the block."""
    functions = m.state.functions
    functions["cloudify_ha_lb.features"]  # noqa: B018  loaded now, so that a later load keeps the fake
    real = functions._dict["cloudify_ha_lb.features"]  # the function, not the loader's wrapper
    functions["cloudify_ha_lb.features"] = lambda: dict(features)
    try:
        yield
    finally:
        functions["cloudify_ha_lb.features"] = real


def haproxy_cfg(minion, features=None, pillar_name="example", lb=LB, **kwargs):
    """The configuration file.managed would write, from the SLS's own arguments (with the
    HAProxy `features` of cloudify_ha_lb.features; by default this machine's own)."""
    m = minion(pillar_name, lb, **kwargs)
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert errors == []
    if "os_family" not in kwargs:  # another family's pkg module does not load on this machine
        assert problems_of(m.state, high) == []
    config = args_of(high, "cloudify_ha-loadbalancer-config")
    # the TOFS sources (cloudify_ha:tofs): the minion's own directory, its os_family's, default
    assert (config["source"], config["template"], config["mode"]) == (
        [f"salt://cloudify_ha/files/{lb}/haproxy.cfg.jinja",
         f"salt://cloudify_ha/files/{m.state.opts['grains']['os_family']}/haproxy.cfg.jinja",
         "salt://cloudify_ha/files/default/haproxy.cfg.jinja"], "jinja", "0600")
    if features is None:
        return high, managed_content(m, config)
    with haproxy_on_host(m, features):
        return high, managed_content(m, config)


def managed_content(m, config):
    """What file.managed writes for these arguments: the first source found (file.source_list),
    rendered with the state's context."""
    source, _ = m.state.functions["file.source_list"](config["source"], "", "base")
    sfn, _, comment = m.state.functions["file.get_managed"](
        name=config["name"], template=config["template"], source=source,
        source_hash="", source_hash_name=None, user=config["user"], group=None,
        mode=config["mode"], attrs=None, saltenv="base", context=config["context"], defaults=None)
    assert comment == ""
    try:
        with open(sfn, encoding="utf-8") as fh:
            return fh.read()
    finally:
        os.unlink(sfn)  # Salt's temporary copy holds the health check's credentials


def lines(cfg, *keywords):
    """The configuration's lines that start with one of the keywords (after the indent)."""
    pattern = "|".join(re.escape(k) for k in keywords)
    return re.findall(rf"^ *(?:{pattern})(?: .*)?$", cfg, re.M)


# the check user's, never the admin's
AUTH = base64.b64encode(b"cloudify_ha_check:CHANGE-ME-check-password").decode()
# the lab's pillar with its `lb` host as the load balancer (and the secret it needs)
LAB_LB = {"cloudify_ha": {"clusters": {"lab": {"loadbalancer": {
    "minion_ids": ["lb"], "check_password": "lab-check-pw"}}}}}
SERVERS = ["    server cfy-mgr1 10.0.0.11:80 check", "    server cfy-mgr2 10.0.0.12:80 check",
           "    server cfy-mgr3 10.0.0.13:80 check"]


@pytest.mark.parametrize("family, features, check", [
    ("RedHat", EL7_HAPROXY, [
        "    option httpchk GET /api/v3.1/status HTTP/1.0\\r\\nAuthorization:\\ Basic\\ "
        f"{AUTH}"]),
    ("Debian", DEBIAN12_HAPROXY, [
        "    option httpchk",
        "    http-check send meth GET uri /api/v3.1/status ver HTTP/1.0 hdr Authorization "
        f'"Basic {AUTH}"']),
], ids=["EL7's HAProxy 1.5: the request in option httpchk",
        "Debian 12's HAProxy 2.6: http-check send"])
def test_haproxy_checks_each_manager_with_cloudifys_status_call(minion, family, features, check):
    high, cfg = haproxy_cfg(minion, features, os_family=family)
    assert args_of(high, "cloudify_ha-loadbalancer-config")["context"]["clusters"] == ["prod"]
    assert lines(cfg, "server") == SERVERS
    assert lines(cfg, "option httpchk", "http-check", "default-server", "bind") == [
        "    bind 0.0.0.0:80", *check, "    http-check expect status 200",
        "    default-server inter 2s fall 2 rise 2"]


@pytest.mark.parametrize("family, features, tls, log", [
    ("RedHat", EL7_HAPROXY, "no-sslv3 no-tlsv10 no-tlsv11", "127.0.0.1 local2"),
    ("Debian", DEBIAN12_HAPROXY, "ssl-min-ver TLSv1.2", "/dev/log local0"),
], ids=["EL7", "Debian 12"])
def test_haproxy_runs_as_its_packages_user_in_its_chroot_with_tls_1_2_at_least(
        minion, family, features, tls, log):
    # the lab's pillar sets no lookup: each family's defaults (cloudify_ha/defaults.yaml)
    high, cfg = haproxy_cfg(minion, features, pillar_name="lab", lb="lb", os_family=family,
                            pillar=LAB_LB)
    assert args_of(high, "cloudify_ha-loadbalancer-config")["context"] == {
        "clusters": ["lab"], "certs_dir": "/etc/cloudify_ha",
        "haproxy": {"user": "haproxy", "group": "haproxy", "chroot": "/var/lib/haproxy",
                    "log": log.split()[0], "log_facility": log.split()[1],
                    "state_file": "/var/lib/haproxy/server-state"}}
    state = (["    server-state-file /var/lib/haproxy/server-state"]
             if features["server_state"] else [])
    assert lines(cfg, "user", "group", "chroot", "log", "stats socket", "server-state-file",
                 "ssl-default-bind-options", "ssl-default-server-options",
                 "load-server-state-from-file") == [
        "    user haproxy", "    group haproxy", "    chroot /var/lib/haproxy", f"    log {log}",
        "    stats socket /run/haproxy/admin.sock mode 600 level admin", *state,
        f"    ssl-default-bind-options {tls}", f"    ssl-default-server-options {tls}",
        "    log global", *(["    load-server-state-from-file global"] if state else [])]


def test_haproxy_logs_where_the_pillar_says(minion):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"loadbalancer": {
        "log": "10.0.0.9:5140", "log_facility": "local4"}}}}}
    _, cfg = haproxy_cfg(minion, DEBIAN12_HAPROXY, os_family="RedHat", pillar=pillar)
    assert lines(cfg, "log") == ["    log 10.0.0.9:5140 local4", "    log global"]


@pytest.mark.parametrize("features", [EL7_HAPROXY, DEBIAN12_HAPROXY], ids=["1.5", "2.6"])
def test_this_machines_haproxy_parses_each_form(minion, tmp_path, features):
    """haproxy -c of each form (2.6 parses 1.5's too): what the SLS's check_cmd runs."""
    _, cfg = haproxy_cfg(minion, features)
    (tmp_path / "haproxy.cfg").write_text(cfg)
    done = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_serves_https_with_the_certificate_the_sls_writes(minion):
    pillar = {"cloudify_ha": {"clusters": {"prod": {"loadbalancer": {
        "ssl": True, "ssl_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "port": 443}}}}}
    high, cfg = haproxy_cfg(minion, pillar=pillar)
    assert re.findall(r"^    bind .*$", cfg, re.M) == [
        "    bind 0.0.0.0:443 ssl crt /etc/cloudify_ha/prod/haproxy.pem"]
    cert = args_of(high, "cloudify_ha-loadbalancer-prod-certificate")
    assert {k: cert[k] for k in ("name", "contents_pillar", "mode", "require_in")} == {
        "name": "/etc/cloudify_ha/prod/haproxy.pem",
        "contents_pillar": "cloudify_ha:clusters:prod:loadbalancer:ssl_cert", "mode": "0600",
        "require_in": [{"file": "cloudify_ha-loadbalancer-config"}]}


# ---- the rendered configuration in a real HAProxy ----------------------------------------------
class _Backend(http.server.BaseHTTPRequestHandler):
    """A manager's REST API as the health check and a user see it: 200 on the active node(s),
    400 on a replica; every answer names the server."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 200 if self.server.active else 400
        body = self.server.name.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("actives", [("cfy-mgr2",), ("cfy-mgr2", "cfy-mgr3")],
                         ids=["one active node", "two answer as active (a partition)"])
def test_haproxy_sends_every_request_to_one_node_even_when_two_answer_as_active(
        minion, tmp_path, actives):
    """The formula's haproxy.cfg in a real HAProxy, its managers on 127.0.0.1 (only the
    addresses, the socket path and the check interval are changed for the test): traffic goes to
    one server only, also when two nodes answer 200 at once (4.6's active minority mode)."""
    _, cfg = haproxy_cfg(minion)
    servers = {}
    for n, ip in ((1, "10.0.0.11"), (2, "10.0.0.12"), (3, "10.0.0.13")):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
        httpd.name, httpd.active = f"cfy-mgr{n}", f"cfy-mgr{n}" in actives
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers[httpd.name] = httpd
        cfg = cfg.replace(f" {ip}:80 check", f" 127.0.0.1:{httpd.server_address[1]} check")
    port = _free_port()
    cfg = (cfg.replace("bind 0.0.0.0:80", f"bind 127.0.0.1:{port}")
           .replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock"))
           .replace("inter 2s fall 2 rise 2", "inter 100ms fall 2 rise 1"))
    (tmp_path / "haproxy.cfg").write_text(cfg)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(tmp_path / "admin.sock"))
                    s.sendall(b"show stat\n")
                    stat = b"".join(iter(lambda: s.recv(65536), b"")).decode()
            except OSError:  # not listening yet
                return None
            # servers start UP: a replica is "UP 1/2" after its first failed check, still
            # taking traffic, and out only once DOWN
            return {f[1]: f[17] for f in (line.split(",") for line in stat.splitlines())
                    if f[0] == "cloudify_prod" and f[1].startswith("cfy-mgr")}

        want = {name: "UP" if name in actives else "DOWN" for name in servers}
        deadline = time.monotonic() + 20
        while up() != want:  # bounded poll: the checks settle every server's state
            assert time.monotonic() < deadline, (up(), proc.poll())
            time.sleep(0.1)
        answers = set()
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3.1/blueprints",
                                        timeout=5) as resp:
                answers.add(resp.read().decode())
        assert answers == {actives[0]}
    finally:
        proc.terminate()
        proc.wait(10)
        for httpd in servers.values():
            httpd.shutdown()
            httpd.server_close()


# ---- TOFS: an operator's own templates -----------------------------------------------------------
@pytest.fixture
def site_templates(file_root):
    """A site directory on the file server beside the formula (cloudify_ha:tofs:path_prefix);
    removed after the test. Write into it with put()."""
    site = file_root / "site"
    yield site
    shutil.rmtree(site, ignore_errors=True)
    drop_file_list_cache(file_root)


def drop_file_list_cache(file_root):
    """The roots backend caches its file list (fileserver_list_cache_time, 20 s by default): a new
    site file shows up on a real master after that delay; here the cache is dropped instead."""
    shutil.rmtree(file_root.parent / "cache" / "file_lists", ignore_errors=True)


def put(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_an_operators_haproxy_template_wins_and_gets_the_formulas_context(minion, file_root,
                                                                         site_templates):
    own = (file_root / "cloudify_ha/files/default/haproxy.cfg.jinja").read_text()
    put(site_templates / "files/default/haproxy-prod.cfg.jinja", "# site: prod\n" + own)
    drop_file_list_cache(file_root)
    tofs = {"path_prefix": "site", "source_files": {
        "cloudify_ha-loadbalancer-config": ["haproxy-prod.cfg.jinja"]}}
    m = minion("example", LB, pillar={"cloudify_ha": {"tofs": tofs}})
    high, errors = m.render("cloudify_ha.loadbalancer")
    assert errors == []
    config = args_of(high, "cloudify_ha-loadbalancer-config")
    family = m.state.opts["grains"]["os_family"]
    assert config["source"] == [
        f"salt://site/files/{LB}/haproxy-prod.cfg.jinja", f"salt://site/files/{LB}/haproxy.cfg.jinja",
        f"salt://site/files/{family}/haproxy-prod.cfg.jinja",
        f"salt://site/files/{family}/haproxy.cfg.jinja",
        "salt://site/files/default/haproxy-prod.cfg.jinja",
        "salt://site/files/default/haproxy.cfg.jinja",
        "salt://cloudify_ha/files/default/haproxy.cfg.jinja"]
    cfg = managed_content(m, config)
    assert cfg.startswith("# site: prod\n")
    assert "    server cfy-mgr1 10.0.0.11:80 check" in cfg  # the formula's context reached it


def test_an_operators_firewall_template_for_one_minion_wins_over_the_formulas(minion, file_root,
                                                                             site_templates):
    put(site_templates / f"files/{LEADER}/firewall.nft.jinja",
        'table inet cloudify_ha {\n  comment "cloudify_ha {{ cluster }} {{ digest }}"\n'
        '  # site rules for {{ peers | join(",") }}\n'
        '  # {% for o in openings %}{{ o.set }} {% endfor %}{{ agent_allowed | join(",") }}\n}\n')
    drop_file_list_cache(file_root)
    pillar = {"cloudify_ha": {"tofs": {"path_prefix": "site"}}}
    high = firewall(minion, "example", LEADER, pillar=pillar, binaries=("nft",))
    rules = 'table inet cloudify_ha {{\n  comment "cloudify_ha prod {digest}"\n' \
            '  # site rules for 10.0.0.11,10.0.0.12,10.0.0.13\n' \
            '  # peers_0 rest_1 agents_2 10.0.0.11,10.0.0.12,10.0.0.13,10.0.2.0/24\n}}\n'
    digest = digest_of(rules)
    assert args_of(high, "cloudify_ha-firewall-nftables-file")["contents"] == (
        NFT_HEADER + rules.format(digest=digest))
    assert args_of(high, "cloudify_ha-firewall-nftables-loaded")["marker"] == (
        f"cloudify_ha prod {digest}")
    # another minion, whose directory has no override, gets the formula's own rules
    other = firewall(minion, "example", "cfy-mgr2.example.com", pillar=pillar, binaries=("nft",))
    assert "ip saddr @peers_0 tcp dport" in args_of(
        other, "cloudify_ha-firewall-nftables-file")["contents"]


@contextlib.contextmanager
def drained_on_host(m, record):
    """The formula's record of the servers it took out (cloudify_ha_lb.drained), as on a host."""
    functions = m.state.functions
    functions["cloudify_ha_lb.drained"]  # noqa: B018  loaded now, so that a later load keeps the fake
    real = functions._dict["cloudify_ha_lb.drained"]
    functions["cloudify_ha_lb.drained"] = lambda: dict(record)
    try:
        yield
    finally:
        functions["cloudify_ha_lb.drained"] = real


def test_a_server_the_formula_took_out_starts_disabled(minion):
    m = minion("example", LB)
    with drained_on_host(m, {"cloudify_prod": ["cfy-mgr2"], "cloudify_other": ["cfy-mgr3"]}):
        _, cfg = haproxy_cfg(minion, DEBIAN12_HAPROXY)
    assert lines(cfg, "server") == [SERVERS[0], SERVERS[1] + " disabled", SERVERS[2]]
