# cloudify_ha: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LAB := PYTHONPATH=test $(PY) -m lab
STAMP := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt | sha1sum | cut -c1-12)
# Debian packages the lab runs: the external database, the load balancer, namespaces, firewalls
APT_PACKAGES := postgresql haproxy iproute2 nftables iptables openssl util-linux procps
PYTEST_ARGS ?=

.PHONY: deps apt venv test unit lint demo demo-down bench lock clean spm

deps: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

test: deps
	$(LAB) sweep
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint
	$(LAB) check-clean

unit: venv
	$(PY) -m pytest test/unit $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/yamllint -s pillar.example cloudify_ha/defaults.yaml test/pillar
	$(VENV)/bin/salt-lint $$(find cloudify_ha -name '*.sls')

demo: deps
	$(LAB) sweep
	$(PY) -m pytest -q -s -p no:warnings test/demo_cluster.py

demo-down:
	$(LAB) sweep

bench: deps
	$(LAB) sweep
	LAB_MANAGERS=$(if $(QUICK),3,12) $(PY) -m pytest -q -s -p no:warnings bench $(if $(QUICK),--bench-quick) $(if $(PROFILE),--bench-profile) $(BENCH_ARGS)

lock:
	rm -rf /tmp/cloudify_ha-lock && python3 -m venv /tmp/cloudify_ha-lock
	/tmp/cloudify_ha-lock/bin/pip install -q -r requirements.txt
	( echo "# Every transitive pin, from 'pip freeze' of a working venv: used as constraints so a new"; \
	  echo "# machine builds the same environment. Regenerate with 'make lock'."; \
	  /tmp/cloudify_ha-lock/bin/pip freeze ) > constraints.txt

clean: demo-down
	rm -rf $(VENV)

# an SPM package of the formula (FORMULA, cloudify_ha/, the extension module directories) in build/
spm: venv
	@rm -rf build/spm-conf && mkdir -p build/spm-conf
	@printf 'spm_build_dir: %s\nspm_logfile: %s\nspm_db: %s\nspm_cache_dir: %s\nspm_build_exclude: [.venv, .git, .ci, test, bench, build, __pycache__, "*.pyc"]\n' \
	  $(CURDIR)/build $(CURDIR)/build/spm-conf/spm.log $(CURDIR)/build/spm-conf/packages.db \
	  $(CURDIR)/build/spm-conf/cache > build/spm-conf/spm
	$(VENV)/bin/spm -y -c build/spm-conf build $(CURDIR)
