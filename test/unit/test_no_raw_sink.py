"""No raw sink: every ``{{ }}`` of every SLS and template of the formula prints either a value
quoted as data (``| json``: YAML reads it back as the same string, whatever it holds) or a value
that comes from the formula's validated settings (``mapdata``, ``cloudify_ha.settings``,
``cloudify_ha.plan``), from the formula's own constants, or from a function whose output is
plain whatever its input (a digest, base64). A pillar, grain, event or ``config.get`` value
printed any other way is a raw sink: a newline in it adds a state or a configuration line.

The check is static: each file is parsed by Jinja (with Salt's extensions) and the origin of
every printed name followed through ``set``, ``for``, ``do`` and macro calls. A value that a
test in the SLS guards (``regex_match``) is still raw here: guards are easy to lose in an edit,
so such a value is printed through ``| json`` instead.
"""

import jinja2
import jinja2.nodes as n
import pytest
from salt.utils.jinja import SerializerExtension

from formula_code import REPO

FORMULA = REPO / "cloudify_ha"
# functions whose answer is the formula's validated settings, or text of a fixed alphabet
TRUSTED_FUNCTIONS = {
    "cloudify_ha.settings", "cloudify_ha.plan",  # validated by the schema (errors refuse)
    "hashutil.base64_b64encode", "hashutil.digest",  # [A-Za-z0-9+/=] and hex
    "file.source_list",  # one of the sources it is given (the TOFS list from mapdata)
    "slsutil.renderer",  # a formula template rendered with trusted context: checked below too
    # what a host opens to whom, computed from the validated settings it is given (mapdata)
    "cloudify_ha_firewall.plan",
}
# names Salt sets that no pillar, grain, event or runner argument reaches: where the formula is
# on the file server (tpldir, sls), its file server environment, the minion's own
# configuration; and tplroot, which every SLS sets from tpldir (an SLS that set it otherwise
# would have it followed like any other name) and map.jinja gets with the SLS's context
TRUSTED_NAMES = {"tpldir", "tplpath", "tplfile", "sls", "slspath", "saltenv", "opts", "range",
                 "dict", "True", "False", "None", "loop", "tplroot"}
# what each template is given by the SLS that renders it (loadbalancer.sls `context`,
# firewall.sls `fw.context`, from cloudify_ha_firewall.plan): trusted because those SLS build them
# from trusted values, which test_the_templates_context_is_built_from_trusted_values checks
FIREWALL_CONTEXT = {"cluster", "openings", "peers", "tcp_ports", "udp_ports", "rest_port",
                    "rest_allowed", "agent_ports", "agent_allowed", "digest"}
TEMPLATE_CONTEXT = {
    "haproxy.cfg.jinja": {"clusters", "certs_dir", "haproxy"},
    "firewall.nft.jinja": FIREWALL_CONTEXT,
    "firewall.iptables.jinja": FIREWALL_CONTEXT,
    "firewall.ip6tables.jinja": FIREWALL_CONTEXT,
}


def environment():
    return jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols",
                                          SerializerExtension])


class Walker:
    """Follows where each name of one template comes from, and collects the raw prints."""

    def __init__(self, path, macros, trusted=()):
        self.path, self.macros = path, macros
        self.env = dict.fromkeys(trusted, True)
        self.lines = path.read_text(encoding="utf-8").splitlines()
        self.raw = []  # (line number, the line)
        self.raw_params = {}  # macro name -> the parameters it prints raw

    # ---- values ----
    def trusted(self, node, params=()):
        """Whether the value of expression `node` is trusted (macro `params` count as trusted)."""
        if isinstance(node, (n.Const, n.TemplateData, n.Test, n.Compare, n.Not)):
            return True
        if isinstance(node, n.ExtensionAttribute):
            return True  # a method of Salt's own Jinja extension (import_yaml's helpers)
        if isinstance(node, n.Name):
            if node.name in params:
                return True
            return self.env.get(node.name, node.name in TRUSTED_NAMES)
        if isinstance(node, (n.Getattr, n.Getitem)):
            # an item of a trusted mapping is trusted, whichever key picks it
            return self.trusted(node.node, params)
        if isinstance(node, n.Call):
            fun = self.salt_function(node)
            if fun is not None:
                return fun in TRUSTED_FUNCTIONS
            if isinstance(node.node, n.Name) and node.node.name in self.macros:
                return False  # a macro's output is text: printed, it is checked at the call
            return all(self.trusted(c, params) for c in self.operands(node))
        if isinstance(node, n.Filter):
            return all(self.trusted(c, params) for c in self.operands(node))
        if isinstance(node, n.CondExpr):
            # the condition only chooses between the two values
            return all(self.trusted(c, params) for c in (node.expr1, node.expr2) if c is not None)
        if isinstance(node, (n.BinExpr, n.Concat, n.List, n.Tuple, n.Dict, n.Pair, n.Keyword,
                             n.Slice, n.UnaryExpr)):
            return all(self.trusted(c, params) for c in node.iter_child_nodes())
        raise AssertionError(f"{self.path}: no rule for {node!r}")

    @staticmethod
    def operands(node):
        """The values a call or filter combines: its object, arguments and keyword values."""
        out = [node.node] if node.node is not None else []
        out += list(node.args) + [kw.value for kw in node.kwargs]
        out += [x for x in (node.dyn_args, node.dyn_kwargs) if x is not None]
        return out

    @staticmethod
    def salt_function(node):
        """'<module>.<function>' of a ``salt["..."](...)`` call, else None."""
        callee = node.node
        if (isinstance(callee, n.Getitem) and isinstance(callee.node, n.Name)
                and callee.node.name == "salt" and isinstance(callee.arg, n.Const)):
            return callee.arg.value
        return None

    # ---- statements ----
    def walk(self, nodes, params=(), macro=None):
        for node in nodes:
            self.statement(node, params, macro)

    def statement(self, node, params, macro):
        if isinstance(node, n.Output):
            for child in node.nodes:
                self.printed(child, params, macro)
        elif isinstance(node, n.Assign):
            self.assign(node.target, self.trusted(node.node, params))
        elif isinstance(node, n.For):
            self.assign(node.target, self.trusted(node.iter, params))
            self.walk(node.body, params, macro)
            self.walk(node.else_, params, macro)
        elif isinstance(node, n.If):
            self.walk(node.body, params, macro)
            for elif_ in node.elif_:
                self.walk(elif_.body, params, macro)
            self.walk(node.else_, params, macro)
        elif isinstance(node, n.ExprStmt):
            # `do x.append(v)` / `do x.update(v)`: x is only as trusted as what goes in
            call = node.node
            if isinstance(call, n.Call) and isinstance(call.node, n.Getattr) and \
                    isinstance(call.node.node, n.Name):
                target = call.node.node.name
                if not all(self.trusted(a, params) for a in call.args):
                    self.env[target] = False
        elif isinstance(node, n.Import):
            self.env[node.target] = self.trusted(node.template)
        elif isinstance(node, n.FromImport):
            for name in node.names:
                name = name[1] if isinstance(name, tuple) else name
                if name not in self.macros:
                    # from the formula's own map.jinja: as trusted as it is there at its end
                    self.env[name] = self.trusted(node.template) and MAP.get(name, False)
        elif isinstance(node, n.Macro):
            names = {a.name for a in node.args}
            saved = dict(self.env)
            self.raw_params[node.name] = set()
            self.walk(node.body, names, node.name)
            self.env = saved
        elif isinstance(node, (n.Continue, n.Break)):
            pass
        else:
            raise AssertionError(f"{self.path}:{node.lineno}: no rule for {node!r}")

    def assign(self, target, trusted):
        for name in target.find_all(n.Name) if not isinstance(target, n.Name) else [target]:
            self.env[name.name] = trusted

    def printed(self, node, params, macro):
        if isinstance(node, n.TemplateData):
            return
        if isinstance(node, n.Filter) and node.name == "json":
            return  # quoted as data
        if isinstance(node, n.Call) and isinstance(node.node, n.Name) and \
                node.node.name in self.macros:
            # a macro prints its raw parameters: what this call gives them must be trusted
            params_of, raw = self.macros[node.node.name]
            given = dict(zip(params_of, node.args))
            given.update({kw.key: kw.value for kw in node.kwargs})
            if not all(self.trusted(given[p], params) for p in raw if p in given):
                self.raw.append((node.lineno, self.lines[node.lineno - 1]))
            return
        if macro is not None and self.trusted(node, params):
            # trusted only if the parameters it prints are: recorded for the calls
            names = [node] if isinstance(node, n.Name) else node.find_all(n.Name)
            self.raw_params[macro] |= {x.name for x in names} & set(params)
            if not self.trusted(node):
                return
        if not self.trusted(node):
            self.raw.append((node.lineno, self.lines[node.lineno - 1]))


def macros_of(path):
    """{macro name: (its parameters, those it prints raw)} of one file of macros."""
    walker = Walker(path, {})
    tree = environment().parse(path.read_text(encoding="utf-8"))
    walker.walk(tree.body)
    defined = {m.name: [a.name for a in m.args] for m in tree.find_all(n.Macro)}
    return {name: (args, walker.raw_params[name]) for name, args in defined.items()}


MACROS = macros_of(FORMULA / "macros.jinja")
MAP = {}  # the names map.jinja defines, and whether each is trusted: set below




def raw_prints(path, text=None, trusted=()):
    """(line number, line) of every raw print of the template at `path` (or `text`)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    walker = Walker(path, MACROS, trusted)
    if text is not None:
        walker.lines = text.splitlines()
    walker.walk(environment().parse(text).body)
    return walker.raw, walker.env


def jinja_files():
    """Every SLS (but the #!py ones, built as data) and every template of the formula."""
    out = []
    for path in sorted(FORMULA.rglob("*")):
        if path.suffix not in (".sls", ".jinja") or not path.is_file():
            continue
        if path.read_text(encoding="utf-8").startswith("#!py"):
            continue
        out.append(path)
    return out


FILES = jinja_files()
MAP.update(raw_prints(FORMULA / "map.jinja")[1])


def test_the_walk_finds_every_kind_of_file():
    names = {p.relative_to(FORMULA).as_posix() for p in FILES}
    assert {"map.jinja", "macros.jinja", "installer.sls", "loadbalancer.sls",
            "reactor/master.sls", "cluster/absent.sls", "files/default/haproxy.cfg.jinja",
            "files/default/firewall.nft.jinja"} <= names
    assert "orch/init.sls" not in names  # #!py: built as data, no template


def test_map_jinjas_settings_are_trusted_and_only_they():
    assert MAP["mapdata"] is True
    assert (MAP["given"], MAP["default_settings"]) == (False, True)


def test_the_macros_print_only_the_refusals_state_id_raw_and_the_rest_as_data():
    assert MACROS == {"refused": (["sid", "comment"], {"sid"}),
                      "package_options": (["packages", "require"], set())}


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(FORMULA).as_posix() for p in FILES])
def test_no_template_prints_a_value_raw_that_is_not_the_formulas_own(path):
    raw, _ = raw_prints(path, trusted=TEMPLATE_CONTEXT.get(path.name, ()))
    assert raw == []


def test_the_templates_context_is_built_from_trusted_values():
    _, env = raw_prints(FORMULA / "firewall.sls")
    assert env["fw"] is True
    _, env = raw_prints(FORMULA / "loadbalancer.sls")
    assert (env["clusters"], env["lookup"], env["haproxy"]) == (True, True, True)


# master.sls as it was before issue 33: config.get read the pillar and printed it raw
OLD_REACTOR_MASTER = """\
{%- set tplroot = tpldir.split("/")[0] %}

cloudify_ha-reactor-master-config:
  file.managed:
    - name: {{ salt["config.get"]("cloudify_ha:reactor:config_file", "/etc/x.conf") }}
    - source: salt://{{ tplroot }}/reactor/master.conf
"""


@pytest.mark.parametrize("text, line", [
    (OLD_REACTOR_MASTER, 5),
    ('{%- set n = salt["pillar.get"]("cloudify_ha_orch:node") %}\nx-{{ n }}:\n', 2),
    ('x: {{ grains["id"] }}\n', 1),
    ('{%- set a = salt["pillar.get"]("a") %}\n{%- set b = [] %}{%- do b.append(a) %}\n'
     '{%- for x in b %}\n{{ x.y }}\n{%- endfor %}\n', 4),
    ('{%- from "cloudify_ha/macros.jinja" import refused with context %}\n'
     '{{ refused(pillar.x, "c") }}\n', 2),
    ('{%- set t = salt["cmd.run"]("hostname") %}\nx: {{ t ~ "y" }}\n', 2),
    ('{%- set admin = salt["pillar.get"]("cloudify_ha:clusters:c:admin") %}\n'
     'Tenant {{ admin.get("tenant", "default_tenant") }}\n', 2),
])
def test_the_walk_catches_a_raw_print(text, line):
    raw, _ = raw_prints(FORMULA / "reactor" / "master.sls", text=text)
    assert [lineno for lineno, _ in raw] == [line], raw


@pytest.mark.parametrize("text", [
    '- name: {{ salt["config.get"]("a") | json }}\n',
    '{%- from "cloudify_ha/map.jinja" import mapdata with context %}\n{{ mapdata.lookup.x }}\n',
    '{%- from "cloudify_ha/macros.jinja" import refused with context %}\n'
    '{{ refused("cloudify_ha-x", pillar.x) }}\n',
    '{{ salt["hashutil.base64_b64encode"](pillar.a ~ ":" ~ pillar.b) }}\n',
    '{%- for kind in ("a", "b") %}\nx-{{ kind }}:\n{%- endfor %}\n',
])
def test_the_walk_lets_data_and_the_formulas_own_values_through(text):
    assert raw_prints(FORMULA / "reactor" / "master.sls", text=text)[0] == []
