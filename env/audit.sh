#!/usr/bin/env bash
# Known vulnerabilities in the pinned dependencies (env/requirements.lock), by pip-audit.
# Fails on a finding. Skips, saying why, when the vulnerability data cannot be reached: pip-audit
# looks every package up on PyPI's JSON API (or OSV), and a build machine that reaches only a
# PyPI mirror's simple index gets "not found on PyPI" for each one, which audits nothing. A scan
# that audited nothing is reported as skipped, never as clean. See docs/security.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PIP_AUDIT_VERSION=2.10.1
report=$(mktemp)
trap 'rm -f "$report"' EXIT
UV_SYSTEM_CERTS=1 timeout 180 .venv/bin/python -m uv tool run --quiet \
  --from "pip-audit==$PIP_AUDIT_VERSION" pip-audit -r env/requirements.lock --no-deps \
  --disable-pip --progress-spinner off --timeout 15 -f json -o "$report" 2>/dev/null
status=$?
if [ ! -s "$report" ]; then
  echo "env/audit.sh: skipped: pip-audit could not run (exit $status; no PyPI or no network)" >&2
  exit 0
fi
.venv/bin/python - "$report" <<'PY'
import json, sys

dependencies = json.load(open(sys.argv[1]))["dependencies"]
audited = [d for d in dependencies if "skip_reason" not in d]
found = [(d["name"], d["version"], v["id"]) for d in audited for v in d.get("vulns", [])]
if not audited:
    print(f"env/audit.sh: skipped: none of {len(dependencies)} pinned packages could be looked "
          "up (the vulnerability data is unreachable from here)", file=sys.stderr)
    sys.exit(0)
for name, version, vuln in found:
    print(f"env/audit.sh: {name} {version}: {vuln}", file=sys.stderr)
skipped = len(dependencies) - len(audited)
print(f"env/audit.sh: {len(audited)} packages audited, {skipped} not found, "
      f"{len(found)} known vulnerabilities", file=sys.stderr)
sys.exit(1 if found else 0)
PY
