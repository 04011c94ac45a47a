# Sourced by env/test.sh: Debian's `prometheus` package (the server and promtool), for the drift
# rules' unit tests (promtool test rules) and the end-to-end test against a real Prometheus.

# Installs it when promtool or prometheus is missing; as root only.
install_prometheus() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus and promtool missing: install them (apt-get install prometheus)" >&2
    return 1
  fi
  echo "installing prometheus (server and promtool) from Debian's packages" >&2
  # Without recommends: the node exporter and its collectors are not needed. The package's
  # service is not started in a container (no init); the tests start their own server.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    echo "apt-get could not install prometheus" >&2
    return 1
  fi
}
