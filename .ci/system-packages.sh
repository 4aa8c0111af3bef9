#!/usr/bin/env bash
# System packages the test suite uses, installed when missing (Debian's apt; run as root):
# promtool (Debian's `prometheus` package, never started) for the metrics exposition check;
# chromium and its chromedriver for the dashboard's browser tests (headless); openssl to make
# the TLS tests' certificates.
# Shared by `make test` and `.ci/run`, so a fresh machine needs nothing by hand.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
