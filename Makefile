# cloudify_ha: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LAB := PYTHONPATH=test $(PY) -m lab
# Debian packages the lab runs: the external database, the load balancer, namespaces, firewalls.
# Installed with their services held back (policy-rc.d; disabled where systemd runs): the lab
# starts its own daemons inside its hosts, and a firewalld on the machine itself would close
# the lab's bridge to the salt-master
APT_PACKAGES := postgresql haproxy iproute2 nftables iptables firewalld openssl util-linux procps
# gpg: the backups' encryption (the managers' gnupg2 on EL7), and the tests' throwaway keys
APT_PACKAGES += gnupg
# and the stand-ins for 4.6's prerequisite rpms (cloudify_ha/defaults.yaml, os_family Debian):
# the lab's hosts see the machine's /usr and dpkg database and have no network, so the formula's
# pkg.installed finds them there, and the emulated installer checks them as 4.6 does
APT_PACKAGES += sudo logrotate apt python3 python3-setuptools init-system-helpers sed tar \
	sysvinit-utils openssh-server
# a lab host boots as a Debian host whose init is SysV (test/lab/hosts.py): Salt's service
# module there (debian_service) enables a service with `insserv <name> && update-rc.d`
APT_PACKAGES += insserv
PYTEST_ARGS ?=
# The Salts the formula supports beside the newest: 3006.8 and 3007.1 are the last built for
# EL7, where Cloudify 4.6 runs (onedir Python 3.10); 3006.29 the newest 3006 that installs. Each
# gets a venv under Python 3.10, found by version (PATH, then pyenv), from
# requirements/salt-<v>.txt.
SALT_VENVS := 3006.8 3006.29 3007.1
PY310 = $(shell for p in $$(command -v python3.10) $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 2>/dev/null); do $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; done)
# The real Cloudify CLI 4.6 (pure Python 2.7), which every `cfy` in the lab runs, as the 4.6 RPMs
# ship it under /opt/cfy: Python 2.7 found by version (PATH, then pyenv), the pinned set installed
# into $(CFY46)/lib; $(CFY46)/python names the interpreter for the lab.
PY27 = $(shell for p in $$(command -v python2.7) $$(ls -d $$(pyenv root 2>/dev/null)/versions/2.7.*/bin/python2.7 2>/dev/null); do $$p -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null && { echo $$p; break; }; done)
CFY46 := .cfy-4.6
# the layers that need no lab, run on every Salt
NO_LAB_LAYERS := test/unit test/functional test/render
# The lab's modules run in two pytest processes side by side, each with its own lab (own bridge,
# subnet and run id: test/lab/core.py): a lab mostly waits on its daemons (a run uses about 0.6
# of a core), so two share 2 cores at close to twice the speed. This group is the first; the
# second is every other module of test/integration (a new module lands there). Balanced by the
# modules' durations (`--durations` of each group prints the slowest).
LAB_GROUP := test/integration/test_orch.py test/integration/emulator \
	test/integration/test_pillar_mistakes.py test/integration/test_db_certificate.py \
	test/integration/test_safety.py

# Every environment (the venv, the Salt venvs, the real cfy) is built once per machine, in
# $(ENV_CACHE)/<name>-<digest of its pins and its interpreter's version>, and the checkout's
# .venv, .venv-<v> and .cfy-4.6 are links to it: a fresh clone on this machine reuses them, and a
# change to a pin (or a new interpreter) builds a new one. Built under a lock, in place (a venv
# cannot move), and marked complete last: an interrupted build is started again.
ENV_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cloudify_ha
digest = $(shell cat $(1) | sha1sum | cut -c1-12)
pyver = $(shell $(1) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
VENV_ENV = $(ENV_CACHE)/venv-$(call digest,requirements.txt constraints.txt)-py$(call pyver,python3)
salt_pins = requirements/onedir-$(1).txt requirements/salt-$(1).txt requirements/constraints-$(1).txt
salt_env = $(ENV_CACHE)/venv-$(1)-$(call digest,$(call salt_pins,$(1)))-py$(call pyver,$(PY310))
CFY46_ENV = $(ENV_CACHE)/cfy-4.6-$(call digest,requirements/cfy-4.6.txt)-py$(call pyver,$(PY27))
# cached_env(link, environment dir, build commands run in it, as $$ENVDIR): build it unless complete,
# then point the link at it (a real directory left by an older checkout is replaced)
cached_env = mkdir -p $(ENV_CACHE) && flock $(ENV_CACHE)/.lock sh -ec 'ENVDIR=$(2); \
	  if [ ! -e "$$ENVDIR/.complete" ]; then rm -rf "$$ENVDIR"; $(3); touch "$$ENVDIR/.complete"; fi' && \
	  { [ -L $(1) ] || rm -rf $(1); } && ln -sfn $(2) $(1)

.PHONY: deps apt venv venvs cfy test unit lint demo demo-down bench lock lock-salts clean clean-envs spm

deps: apt venv venvs cfy

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing (their services are not started here)"; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1; \
	  fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; rc=$$?; \
	  [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; \
	  if [ $$rc = 0 ] && [ -d /run/systemd/system ]; then systemctl disable -q firewalld ssh || true; fi; \
	  exit $$rc; \
	fi

venv:
	@$(call cached_env,$(VENV),$(VENV_ENV),\
	  echo "building $$ENVDIR"; python3 -m venv "$$ENVDIR"; \
	  "$$ENVDIR/bin/pip" install -q --disable-pip-version-check -r requirements.txt -c constraints.txt)

# a Salt venv's pins: what its onedir ships, the direct pins (which -r the first), every transitive
# pin, under Python 3.10
venvs:
	@test -n "$(PY310)" || { echo "Python 3.10 is missing (Salt $(SALT_VENVS)'s onedir Python): install it (pyenv install 3.10) or put python3.10 on PATH" >&2; exit 1; }
	@$(foreach v,$(SALT_VENVS),$(call cached_env,.venv-$(v),$(call salt_env,$(v)),\
	  echo "building $$ENVDIR"; $(PY310) -m venv "$$ENVDIR"; \
	  "$$ENVDIR/bin/pip" install -q --disable-pip-version-check -r requirements/salt-$(v).txt -c requirements/constraints-$(v).txt) && ) true

cfy:
	@test -n "$(PY27)" || { echo "Python 2.7 is missing (the lab runs the real cfy 4.6 CLI, which is Python 2.7 only): install it (pyenv install 2.7.18) or put python2.7 on PATH" >&2; exit 1; }
	@$(call cached_env,$(CFY46),$(CFY46_ENV),\
	  echo "building $$ENVDIR"; mkdir -p "$$ENVDIR"; \
	  $(PY27) -m pip install -q --disable-pip-version-check --no-warn-script-location --no-deps --target "$$ENVDIR/lib" -r requirements/cfy-4.6.txt; \
	  $(PY27) -c "import sys; print(sys.executable)" > "$$ENVDIR/python"; \
	  PYTHONPATH="$$ENVDIR/lib" $(PY27) -s "$$ENVDIR/lib/bin/cfy" --version | grep -qx "Cloudify CLI 4.6.0" || { echo "$$ENVDIR: cfy --version is not Cloudify CLI 4.6.0" >&2; exit 1; })

# The layers without a lab on every Salt side by side (each is one CPU-bound process: 2 cores
# run three in about the time of two), each one's output shown whole after; then the lab.
test: deps
	$(LAB) sweep
	@logs=$$(mktemp -d); pids=; \
	for v in $(SALT_VENVS) 3008; do \
	  py=.venv-$$v/bin/python; [ $$v != 3008 ] || py=$(PY); \
	  $$py -m pytest -p no:warnings $(NO_LAB_LAYERS) $(PYTEST_ARGS) > $$logs/$$v.log 2>&1 & pids="$$pids $$!"; \
	done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; \
	for v in $(SALT_VENVS) 3008; do \
	  echo "== unit, functional and render layers on Salt $$v"; cat $$logs/$$v.log; done; \
	rm -rf $$logs; exit $$rc
	@echo "== the lab on Salt 3008 (a 3008 master; managers' minions on 3006.8 and 3007.1 in test_old_salt_managers), in two groups side by side"
	@logs=$$(mktemp -d); \
	$(PY) -m pytest --durations=15 $(LAB_GROUP) $(PYTEST_ARGS) > $$logs/1.log 2>&1 & p1=$$!; \
	$(PY) -m pytest --durations=15 test/integration $(foreach f,$(LAB_GROUP),--ignore=$(f)) \
	  $(PYTEST_ARGS) > $$logs/2.log 2>&1 & p2=$$!; \
	rc=0; wait $$p1 || rc=1; wait $$p2 || rc=1; \
	echo "== the lab, group 1: $(LAB_GROUP)"; cat $$logs/1.log; \
	echo "== the lab, group 2: the rest of test/integration"; cat $$logs/2.log; \
	rm -rf $$logs; exit $$rc
	$(MAKE) --no-print-directory lint
	$(LAB) check-clean

unit: venv
	$(PY) -m pytest test/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/yamllint -s pillar.example cloudify_ha/defaults.yaml test/pillar kitchen.yml test/kitchen/pillar.sls
	$(VENV)/bin/salt-lint $$(find cloudify_ha -name '*.sls')

demo: deps
	$(LAB) sweep
	$(PY) -m pytest -q -s -p no:warnings test/demo_cluster.py

demo-down:
	$(LAB) sweep

bench: deps
	$(LAB) sweep
	LAB_MANAGERS=$(if $(QUICK),3,12) $(PY) -m pytest -q -s -p no:warnings bench $(if $(QUICK),--bench-quick) $(if $(PROFILE),--bench-profile) $(BENCH_ARGS)

lock: lock-salts
	rm -rf /tmp/cloudify_ha-lock && python3 -m venv /tmp/cloudify_ha-lock
	/tmp/cloudify_ha-lock/bin/pip install -q -r requirements.txt
	( echo "# Every transitive pin, from 'pip freeze' of a working venv: used as constraints so a new"; \
	  echo "# machine builds the same environment. Regenerate with 'make lock'."; \
	  /tmp/cloudify_ha-lock/bin/pip freeze ) > constraints.txt

# requirements/constraints-<v>.txt for every Salt of SALT_VENVS (one: `make lock-salts
# SALT_VENVS=3007.1`): `pip freeze` of a fresh Python 3.10 venv built from
# requirements/salt-<v>.txt alone (its onedir pins are exact requirements: nothing can move them)
lock-salts:
	@test -n "$(PY310)" || { echo "Python 3.10 is missing: install it (pyenv install 3.10) or put python3.10 on PATH" >&2; exit 1; }
	@set -e; for v in $(SALT_VENVS); do \
	  d=/tmp/cloudify_ha-lock-$$v; rm -rf $$d; $(PY310) -m venv $$d; \
	  echo "locking Salt $$v"; $$d/bin/pip install -q --disable-pip-version-check -r requirements/salt-$$v.txt; \
	  ( echo "# Every transitive pin of .venv-$$v, from 'pip freeze' of a fresh venv built from"; \
	    echo "# requirements/salt-$$v.txt: the constraints of 'make venvs'. Regenerate with 'make lock-salts'."; \
	    $$d/bin/pip freeze ) > requirements/constraints-$$v.txt; \
	  rm -rf $$d; \
	done

# the checkout's links to the environments; `make clean-envs` removes the environments too
clean: demo-down
	rm -rf $(VENV) $(foreach v,$(SALT_VENVS),.venv-$(v)) $(CFY46)

clean-envs: clean
	rm -rf $(ENV_CACHE)

# an SPM package of the formula (FORMULA, cloudify_ha/, the extension module directories) in build/
spm: venv
	@rm -rf build/spm-conf && mkdir -p build/spm-conf
	@printf 'spm_build_dir: %s\nspm_logfile: %s\nspm_db: %s\nspm_cache_dir: %s\nspm_build_exclude: [.venv, .git, .ci, test, bench, build, __pycache__, "*.pyc"]\n' \
	  $(CURDIR)/build $(CURDIR)/build/spm-conf/spm.log $(CURDIR)/build/spm-conf/packages.db \
	  $(CURDIR)/build/spm-conf/cache > build/spm-conf/spm
	$(VENV)/bin/spm -y -c build/spm-conf build $(CURDIR)
