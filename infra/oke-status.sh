#!/usr/bin/env bash
# TCLOUD_TARGET=oke ./deploy.sh status: checks the deployment on the cluster the current kubeconfig points at.
#   - every Deployment of the tcloud and temporal releases has rolled out (kubectl rollout status)
#   - the API answers /readyz (Temporal and Postgres reachable), through the Kubernetes API's service proxy
#   - TCLOUD_PUBLIC_URL, when set, answers /readyz from outside through the ingress
# Exits non-zero if anything is not ready.
set -uo pipefail

NAMESPACE="${TCLOUD_OKE_NAMESPACE:-tcloud}"
TIMEOUT="${TCLOUD_STATUS_TIMEOUT:-300s}"
failures=0

ok() { printf '  %-34s ok\n' "$1"; }
bad() { printf '  %-34s FAILED %s\n' "$1" "${2:-}"; failures=$((failures + 1)); }

command -v kubectl >/dev/null 2>&1 || { echo "deploy.sh status: kubectl is not installed" >&2; exit 1; }
if ! kubectl version --request-timeout=10s >/dev/null 2>&1; then
  echo "deploy.sh status: cannot reach the cluster (check KUBECONFIG)" >&2
  exit 1
fi

echo "OKE namespace $NAMESPACE"
for release in tcloud temporal; do
  deployments="$(kubectl -n "$NAMESPACE" get deployments -l "app.kubernetes.io/instance=$release" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null)"
  if [ -z "$deployments" ]; then
    bad "release $release" "no deployments"
    continue
  fi
  while IFS= read -r deployment; do
    [ -n "$deployment" ] || continue
    if kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout="$TIMEOUT" >/dev/null 2>&1; then
      ok "deployment/$deployment"
    else
      bad "deployment/$deployment" "not rolled out"
    fi
  done <<< "$deployments"
done

if body="$(kubectl get --raw "/api/v1/namespaces/$NAMESPACE/services/tcloud-api:http/proxy/readyz" 2>&1)"; then
  ok "api /readyz"
else
  bad "api /readyz" "$body"
fi

if [ -n "${TCLOUD_PUBLIC_URL:-}" ]; then
  if curl -fsS --max-time 10 "${TCLOUD_PUBLIC_URL%/}/readyz" >/dev/null; then
    ok "$TCLOUD_PUBLIC_URL/readyz"
  else
    bad "$TCLOUD_PUBLIC_URL/readyz" "unreachable or not ready"
  fi
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
