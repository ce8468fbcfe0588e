"""Every call the formula makes into Salt, found by reading its code (no import, no render).

- Python (the extension modules and the ``#!py`` SLS): ``__salt__["<fun>"]`` (or
  ``__salt__.<mod>.<fun>``) and ``__utils__[...]``, and everything reached from an imported
  ``salt`` package (``salt.utils.files.fopen``, ``from salt.exceptions import X``), including an
  attribute of what such a call returns, read on the spot or through a name bound to it
  anywhere in the file (``with salt.client.get_local_client(...) as local: local.cmd(...)``).
- Jinja (the SLS and templates): ``salt["<fun>"]`` (or ``salt.<mod>.<fun>``), parsed by Jinja.

Each call is an `Api` (what is called) and a `Shape` (how: the number of positional arguments
and the keyword names, or a plain reference, or an attribute read on it). The formula's own
execution modules (``cloudify_ha*``) are not Salt's and are left out; its ``_utils`` reached
through Salt's ``__utils__`` are kept: that mapping is Salt's.
"""

import ast
import collections
import pathlib

import jinja2
import jinja2.nodes

REPO = pathlib.Path(__file__).resolve().parents[2]
PY_DIRS = ("_modules", "_states", "_runners", "_beacons", "_grains", "_utils", "_output")
OWN = "cloudify_ha"  # the formula's own execution modules: cloudify_ha, cloudify_ha_lb, ...

# where the code runs decides which loader its __salt__ is: a runner's is the runners
RUNNER_DIRS = ("_runners",)

Api = collections.namedtuple("Api", "kind name")  # kind: module, runner, utils, python
# how: call, ref (read), attr (an attribute read); guard: the keyword a feature test of the
# formula's (`if _takes(__salt__["<fun>"], "<keyword>"):`) checks around the call
Shape = collections.namedtuple("Shape", "how nargs keywords spread guard")
FEATURE_TEST = "_takes"


def call_shape(nargs, keywords, spread=False, guard=None):
    return Shape("call", nargs, tuple(sorted(keywords)), spread, guard)


REF = Shape("ref", 0, (), False, None)


def attr(name):
    return Shape("attr", 0, (name,), False, None)


def py_sources():
    """(path, source, kind of its __salt__) of every Python file the formula runs under Salt."""
    for name in PY_DIRS:
        for path in sorted((REPO / name).glob("*.py")):
            yield path, path.read_text(), "runner" if name in RUNNER_DIRS else "module"
    for path in sorted((REPO / "cloudify_ha").rglob("*.sls")):
        text = path.read_text()
        if text.startswith("#!py"):
            # rendered on the master by the py renderer: the master minion's modules
            yield path, text, "module"


def jinja_sources():
    for path in sorted((REPO / "cloudify_ha").rglob("*")):
        if path.suffix in (".sls", ".jinja"):
            text = path.read_text()
            if not text.startswith("#!py"):
                yield path, text


class _PyCalls(ast.NodeVisitor):
    def __init__(self, where, salt_kind):
        self.where, self.salt_kind = where, salt_kind
        self.found = []  # (Api, Shape, "path:line")
        self.imported = {}  # local name -> dotted salt name
        self.bound = {}  # local name -> dotted name + "()" (an object a salt call returned)
        self.guards = []  # (Api, keyword) of the feature tests around the node visited

    # --- what a name or an expression stands for
    def dotted(self, node):
        """The Api an expression names, or None when it is not Salt's."""
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
                node.value.id in ("__salt__", "__utils__"):
            key = node.slice
            name = key.value if isinstance(key, ast.Constant) else ast.unparse(key)
            if node.value.id == "__utils__":
                return Api("utils", name)
            return None if str(name).startswith(OWN) else Api(self.salt_kind, name)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                isinstance(node.value.value, ast.Name) and node.value.value.id == "__salt__":
            name = f"{node.value.attr}.{node.attr}"
            return None if name.startswith(OWN) else Api(self.salt_kind, name)
        if isinstance(node, ast.Name):
            if node.id in self.imported:
                return Api("python", self.imported[node.id])
            if node.id in self.bound:
                return Api("python", self.bound[node.id])
            return None
        # salt.a.b, then what calling it returns (an object of Salt's: "salt.a.b()") and one
        # attribute of that object; what that attribute gives is plain data, no longer Salt's
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            if base is not None and base.kind == "python" and \
                    ("()" not in base.name or base.name.endswith("()")):
                return Api("python", f"{base.name}.{node.attr}")
            return None
        if isinstance(node, ast.Call):
            base = self.dotted(node.func)
            if base is not None and base.kind == "python" and "()" not in base.name:
                return Api("python", f"{base.name}()")
        return None

    def add(self, api, shape, node):
        self.found.append((api, shape, f"{self.where}:{node.lineno}"))

    # --- imports and names bound to what Salt returned
    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == "salt" or alias.name.startswith("salt."):
                if alias.asname:  # import salt.utils.files as files
                    self.imported[alias.asname] = alias.name
                else:  # import salt.utils.files: binds `salt`
                    self.imported["salt"] = "salt"

    def visit_ImportFrom(self, node):
        if node.module and (node.module == "salt" or node.module.startswith("salt.")):
            for alias in node.names:
                self.imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                self.add(Api("python", f"{node.module}.{alias.name}"), REF, node)

    def _bind(self, target, value):
        if isinstance(target, ast.Name):
            api = self.dotted(value) if isinstance(value, ast.Call) else None
            if api is not None and api.kind == "python":
                self.bound[target.id] = api.name
            else:  # the name now holds something else (with os.fdopen(...) as fh)
                self.bound.pop(target.id, None)

    def visit_Assign(self, node):
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        for stmt in node.body:
            self.visit(stmt)

    # --- feature tests
    def visit_If(self, node):
        self.visit(node.test)
        guard = self._feature_test(node.test)
        if guard is not None:
            self.guards.append(guard)
        for stmt in node.body:
            self.visit(stmt)
        if guard is not None:
            self.guards.pop()
        for stmt in node.orelse:
            self.visit(stmt)

    def _feature_test(self, test):
        """(Api, keyword) of `_takes(__salt__["<fun>"], "<keyword>")`, else None."""
        if isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and \
                test.func.id == FEATURE_TEST and len(test.args) == 2 and \
                isinstance(test.args[1], ast.Constant):
            api = self.dotted(test.args[0])
            if api is not None:
                return api, test.args[1].value
        return None

    # --- the uses
    def visit_Call(self, node):
        api = self.dotted(node.func)
        if api is not None:
            spread = any(k.arg is None for k in node.keywords) or any(
                isinstance(a, ast.Starred) for a in node.args)
            keywords = [k.arg for k in node.keywords if k.arg]
            guard = next((kw for g_api, kw in self.guards if g_api == api and kw in keywords),
                         None)
            self.add(api, call_shape(len([a for a in node.args if not isinstance(a, ast.Starred)]),
                                     keywords, spread, guard), node)
            self._visit_inner(node.func)
        else:
            self.visit(node.func)
        for arg in node.args:
            self.visit(arg)
        for keyword in node.keywords:
            self.visit(keyword.value)

    def _visit_inner(self, func):
        """The parts of a called expression that are calls themselves (a(...).b(...))."""
        while isinstance(func, (ast.Attribute, ast.Subscript)):
            func = func.value
            if isinstance(func, ast.Call):
                self.visit(func)
                return

    def visit_Attribute(self, node):
        api = self.dotted(node)
        if api is not None:
            self.add(api, REF, node)
            return
        if isinstance(node.value, ast.Call):
            self.visit(node.value)
            return
        base = self.dotted(node.value)
        if base is not None and base.kind in ("module", "runner", "utils"):
            self.add(base, attr(node.attr), node)  # e.g. __utils__[...].__globals__
            return
        self.generic_visit(node)

    def visit_Subscript(self, node):
        api = self.dotted(node)
        if api is not None and api.kind != "python":
            self.add(api, REF, node)  # read, not called here
            return
        self.generic_visit(node)


def calls_in_python(source, where, salt_kind="module"):
    """[(Api, Shape, "where:line")] of one Python source."""
    visitor = _PyCalls(where, salt_kind)
    visitor.visit(ast.parse(source, str(where)))
    return visitor.found


def jinja_env():
    import salt.utils.jinja  # pylint: disable=import-outside-toplevel

    return jinja2.Environment(extensions=[salt.utils.jinja.SerializerExtension,
                                          "jinja2.ext.do", "jinja2.ext.loopcontrols"])


def _salt_item(node):
    """The function name of ``salt["<fun>"]`` or ``salt.<mod>.<fun>``, or None."""
    if isinstance(node, jinja2.nodes.Getitem) and isinstance(node.node, jinja2.nodes.Name) \
            and node.node.name == "salt" and isinstance(node.arg, jinja2.nodes.Const):
        return str(node.arg.value)
    if isinstance(node, jinja2.nodes.Getattr) and isinstance(node.node, jinja2.nodes.Getattr) \
            and isinstance(node.node.node, jinja2.nodes.Name) and node.node.node.name == "salt":
        return f"{node.node.attr}.{node.attr}"
    return None


def calls_in_jinja(env, source, where):
    """[(Api, Shape, "where:line")] of one Jinja source."""
    tree = env.parse(source)
    found, called = [], set()
    for call in tree.find_all(jinja2.nodes.Call):
        name = _salt_item(call.node)
        if name is None:
            continue
        called.add(id(call.node))
        if not name.startswith(OWN):
            found.append((Api("module", name), call_shape(
                len(call.args), [k.key for k in call.kwargs],
                call.dyn_args is not None or call.dyn_kwargs is not None), f"{where}:{call.lineno}"))
    for item in tree.find_all((jinja2.nodes.Getitem, jinja2.nodes.Getattr)):
        name = _salt_item(item)
        if name is not None and id(item) not in called and not name.startswith(OWN):
            found.append((Api("module", name), REF, f"{where}:{item.lineno}"))
    return found


def formula_calls():
    """{(Api, Shape): ["path:line", ...]} of every call into Salt the formula makes."""
    out = collections.defaultdict(list)
    env = jinja_env()
    found = [call for path, source, kind in py_sources()
             for call in calls_in_python(source, path.relative_to(REPO), kind)]
    found += [call for path, source in jinja_sources()
              for call in calls_in_jinja(env, source, path.relative_to(REPO))]
    for api, shape, where in found:
        out[(api, shape)].append(str(where))
    return dict(out)
