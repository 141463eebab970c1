#!/usr/bin/env bash
# ./deploy.sh oke [--apply] [--image-tag TAG] [--skip-temporal] [--skip-addons]
#
# Deploys tcloud to Oracle Kubernetes Engine:
#   --apply          first run Terraform in infra/terraform (VCN, OKE, node pool 1-3, backup bucket, budget),
#                    then write the kubeconfig of the new cluster with the OCI CLI
#   (always)         create/refresh the Kubernetes Secrets from the environment; install or upgrade
#                    kube-prometheus-stack, metrics-server, ingress-nginx and cert-manager (unless --skip-addons), the
#                    official Temporal chart with charts/temporal-values.yaml (unless --skip-temporal) and its
#                    search attributes, then charts/tcloud; finally check the rollout with infra/oke-status.sh.
#
# Environment (secrets come from the CI's repository secrets or the operator's shell, never from files here):
#   TCLOUD_OKE_NAMESPACE          Kubernetes namespace (default tcloud)
#   TCLOUD_IMAGE                  image repository (default ghcr.io/tcloud/tcloud)
#   TCLOUD_IMAGE_TAG              image tag (default: the chart's appVersion), or --image-tag
#   TCLOUD_POSTGRES_DSN, TCLOUD_STRIPE_API_KEY, TCLOUD_STRIPE_WEBHOOK_SECRET, TCLOUD_OPERATOR_TOKEN
#                                 -> Secret tcloud-secrets (required unless it already exists)
#   TCLOUD_SMTP_USERNAME, TCLOUD_SMTP_PASSWORD  spend-alert email relay -> Secret tcloud-secrets (optional)
#   TCLOUD_OIDC_CLIENT_SECRET     the customers' Temporal UI's OIDC client secret -> Secret tcloud-secrets; without
#                                 it (and none in the Secret) the customers' UI is not installed
#   TCLOUD_JWT_PRIVATE_KEY        PEM of the API's RS256 signing key -> Secret tcloud-jwt
#   TEMPORAL_POSTGRES_HOST        host:port of Temporal's PostgreSQL (required with Temporal)
#   TEMPORAL_POSTGRES_PASSWORD    -> Secret temporal-postgres (required unless it already exists)
#   GHCR_USERNAME, GHCR_TOKEN     -> image pull Secret ghcr-pull (for a private image)
#   TCLOUD_HOSTNAME               public host of the API and portal (ingress, TLS from Let's Encrypt)
#   TCLOUD_TEMPORAL_HOSTNAME      public host of Temporal's gRPC frontend for tenants (ingress, TLS)
#   TCLOUD_UI_HOSTNAME            public host of the customers' Temporal UI (ingress, TLS; OIDC login via the API)
#   TCLOUD_ACME_EMAIL             contact for Let's Encrypt: creates the ClusterIssuer `letsencrypt`
#   TEMPORAL_CHART_VERSION        version of the official Temporal chart (default below)
#   TCLOUD_TF_AUTO_APPROVE=1      apply Terraform without the interactive confirmation
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAMESPACE="${TCLOUD_OKE_NAMESPACE:-tcloud}"
IMAGE="${TCLOUD_IMAGE:-ghcr.io/tcloud/tcloud}"
IMAGE_TAG="${TCLOUD_IMAGE_TAG:-}"
TEMPORAL_CHART_VERSION="${TEMPORAL_CHART_VERSION:-1.0.0}"
TEMPORAL_REPO="https://go.temporal.io/helm-charts"
PROMETHEUS_STACK_VERSION="${PROMETHEUS_STACK_VERSION:-77.0.0}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.18.2}"
# Metering looks back this far for a series' last value (TCLOUD_USAGE_BASELINE_LOOKBACK, 15d by default).
PROMETHEUS_RETENTION="${PROMETHEUS_RETENTION:-15d}"
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-4.13.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-3.13.0}"
TF_DIR="infra/terraform"

APPLY=0
SKIP_TEMPORAL=0
SKIP_ADDONS=0

log() { printf '==> %s\n' "$*"; }
die() { printf 'deploy.sh oke: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --apply) APPLY=1 ;;
    --image-tag) [ $# -ge 2 ] || die "--image-tag needs a value"; IMAGE_TAG="$2"; shift ;;
    --skip-temporal) SKIP_TEMPORAL=1 ;;
    --skip-addons) SKIP_ADDONS=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (needed for deploy.sh oke)"
  done
}

# Creates or updates a Kubernetes object from a client-side dry run, so re-running is safe.
apply_stdin() { kubectl apply -f - >/dev/null; }

secret_exists() { kubectl -n "$NAMESPACE" get secret "$1" >/dev/null 2>&1; }
secret_has_key() {
  [ -n "$(kubectl -n "$NAMESPACE" get secret "$1" -o "jsonpath={.data.$2}" 2>/dev/null)" ]
}

terraform_apply() {
  need terraform oci
  log "terraform apply in $TF_DIR"
  terraform -chdir="$TF_DIR" init -input=false
  if [ "${TCLOUD_TF_AUTO_APPROVE:-0}" = 1 ]; then
    terraform -chdir="$TF_DIR" apply -input=false -auto-approve
  else
    terraform -chdir="$TF_DIR" apply -input=false
  fi
  local cluster_id region
  cluster_id="$(terraform -chdir="$TF_DIR" output -raw cluster_id)"
  region="$(terraform -chdir="$TF_DIR" output -raw region)"
  log "writing the kubeconfig of cluster $cluster_id"
  mkdir -p "$HOME/.kube"
  oci ce cluster create-kubeconfig --cluster-id "$cluster_id" --region "$region" \
    --token-version 2.0.0 --kube-endpoint PUBLIC_ENDPOINT --file "${KUBECONFIG:-$HOME/.kube/config}" --overwrite
}

# Settings the chart takes from Terraform's outputs (OCI namespace, bucket, region): after --apply, or when a
# local state exists.
terraform_settings() {
  [ "$APPLY" = 1 ] || [ -f "$TF_DIR/terraform.tfstate" ] || return 0
  command -v terraform >/dev/null 2>&1 || return 0
  local ns bucket region
  ns="$(terraform -chdir="$TF_DIR" output -raw objectstorage_namespace 2>/dev/null || true)"
  bucket="$(terraform -chdir="$TF_DIR" output -raw backup_bucket 2>/dev/null || true)"
  region="$(terraform -chdir="$TF_DIR" output -raw region 2>/dev/null || true)"
  [ -z "$ns" ] || TCLOUD_HELM_ARGS+=(--set-string "config.oci_namespace=$ns")
  [ -z "$bucket" ] || TCLOUD_HELM_ARGS+=(--set-string "config.oci_bucket=$bucket")
  [ -z "$region" ] || TCLOUD_HELM_ARGS+=(--set-string "config.oci_region=$region")
}

ensure_namespace() {
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | apply_stdin
}

# TCLOUD_BACKUP_EXTRA_DSNS for Temporal's two databases (user `temporal`, as in charts/temporal-values.yaml).
temporal_dsns() {
  python3 - "$TEMPORAL_POSTGRES_HOST" "$TEMPORAL_POSTGRES_PASSWORD" <<'PY'
import json, sys, urllib.parse
host, password = sys.argv[1], urllib.parse.quote(sys.argv[2], safe="")
print(json.dumps({db: f"postgresql://temporal:{password}@{host}/{db}" for db in ("temporal", "temporal_visibility")}))
PY
}

ensure_secrets() {
  if [ -n "${TCLOUD_POSTGRES_DSN:-}" ]; then
    : "${TCLOUD_STRIPE_API_KEY:?is required with TCLOUD_POSTGRES_DSN}"
    : "${TCLOUD_STRIPE_WEBHOOK_SECRET:?is required with TCLOUD_POSTGRES_DSN}"
    : "${TCLOUD_OPERATOR_TOKEN:?is required with TCLOUD_POSTGRES_DSN}"
    local extra=()
    if [ -n "${TCLOUD_SMTP_USERNAME:-}" ] && [ -n "${TCLOUD_SMTP_PASSWORD:-}" ]; then
      # Spend-alert email: the SMTP relay's credentials (OCI Email Delivery's SMTP user and password).
      extra+=(--from-literal=TCLOUD_SMTP_USERNAME="$TCLOUD_SMTP_USERNAME"
              --from-literal=TCLOUD_SMTP_PASSWORD="$TCLOUD_SMTP_PASSWORD")
    fi
    if [ -n "${TCLOUD_OIDC_CLIENT_SECRET:-}" ]; then
      # Read by the API (the OpenID provider) and by the customers' Temporal UI (its client).
      extra+=(--from-literal=TCLOUD_OIDC_CLIENT_SECRET="$TCLOUD_OIDC_CLIENT_SECRET")
    fi
    if [ -n "${TEMPORAL_POSTGRES_HOST:-}" ] && [ -n "${TEMPORAL_POSTGRES_PASSWORD:-}" ]; then
      # The daily backup dumps Temporal's persistence and visibility databases beside the platform's.
      extra+=(--from-literal=TCLOUD_BACKUP_EXTRA_DSNS="$(temporal_dsns)")
    fi
    log "secret tcloud-secrets"
    kubectl -n "$NAMESPACE" create secret generic tcloud-secrets \
      --from-literal=TCLOUD_POSTGRES_DSN="$TCLOUD_POSTGRES_DSN" \
      --from-literal=TCLOUD_STRIPE_API_KEY="$TCLOUD_STRIPE_API_KEY" \
      --from-literal=TCLOUD_STRIPE_WEBHOOK_SECRET="$TCLOUD_STRIPE_WEBHOOK_SECRET" \
      --from-literal=TCLOUD_OPERATOR_TOKEN="$TCLOUD_OPERATOR_TOKEN" \
      "${extra[@]}" --dry-run=client -o yaml | apply_stdin
  elif ! secret_exists tcloud-secrets; then
    die "Secret tcloud-secrets is missing: set TCLOUD_POSTGRES_DSN, TCLOUD_STRIPE_API_KEY, TCLOUD_STRIPE_WEBHOOK_SECRET and TCLOUD_OPERATOR_TOKEN"
  fi

  if [ -n "${TCLOUD_JWT_PRIVATE_KEY:-}" ]; then
    log "secret tcloud-jwt"
    kubectl -n "$NAMESPACE" create secret generic tcloud-jwt \
      --from-literal=private.pem="$TCLOUD_JWT_PRIVATE_KEY" --dry-run=client -o yaml | apply_stdin
  elif ! secret_exists tcloud-jwt; then
    die "Secret tcloud-jwt is missing: set TCLOUD_JWT_PRIVATE_KEY to the API's RS256 private key (PEM)"
  fi

  if [ "$SKIP_TEMPORAL" = 0 ]; then
    if [ -n "${TEMPORAL_POSTGRES_PASSWORD:-}" ]; then
      log "secret temporal-postgres"
      kubectl -n "$NAMESPACE" create secret generic temporal-postgres \
        --from-literal=password="$TEMPORAL_POSTGRES_PASSWORD" --dry-run=client -o yaml | apply_stdin
    elif ! secret_exists temporal-postgres; then
      die "Secret temporal-postgres is missing: set TEMPORAL_POSTGRES_PASSWORD"
    fi
  fi

  if [ -n "${GHCR_TOKEN:-}" ]; then
    log "secret ghcr-pull"
    kubectl -n "$NAMESPACE" create secret docker-registry ghcr-pull --docker-server=ghcr.io \
      --docker-username="${GHCR_USERNAME:?is required with GHCR_TOKEN}" --docker-password="$GHCR_TOKEN" \
      --dry-run=client -o yaml | apply_stdin
  fi
}

have_servicemonitor_crd() { kubectl get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1; }

install_addons() {
  log "kube-prometheus-stack $PROMETHEUS_STACK_VERSION (Prometheus scrapes Temporal, the worker and the API)"
  helm upgrade --install kube-prometheus-stack kube-prometheus-stack \
    --repo https://prometheus-community.github.io/helm-charts --version "$PROMETHEUS_STACK_VERSION" \
    --namespace monitoring --create-namespace \
    --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
    --set-string "prometheus.prometheusSpec.retention=$PROMETHEUS_RETENTION" \
    --set grafana.sidecar.dashboards.enabled=true --set grafana.sidecar.dashboards.searchNamespace=ALL \
    --wait --timeout 15m
  log "metrics-server $METRICS_SERVER_VERSION (CPU metrics for the HorizontalPodAutoscalers)"
  helm upgrade --install metrics-server metrics-server \
    --repo https://kubernetes-sigs.github.io/metrics-server/ --version "$METRICS_SERVER_VERSION" \
    --namespace kube-system --wait --timeout 10m
  log "ingress-nginx $INGRESS_NGINX_VERSION"
  helm upgrade --install ingress-nginx ingress-nginx \
    --repo https://kubernetes.github.io/ingress-nginx --version "$INGRESS_NGINX_VERSION" \
    --namespace ingress-nginx --create-namespace \
    --set-string 'controller.service.annotations.service\.beta\.kubernetes\.io/oci-load-balancer-shape=flexible' \
    --set-string 'controller.service.annotations.service\.beta\.kubernetes\.io/oci-load-balancer-shape-flex-min=10' \
    --set-string 'controller.service.annotations.service\.beta\.kubernetes\.io/oci-load-balancer-shape-flex-max=10' \
    --wait --timeout 10m
  log "cert-manager $CERT_MANAGER_VERSION"
  helm upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io \
    --version "$CERT_MANAGER_VERSION" --namespace cert-manager --create-namespace --set crds.enabled=true \
    --wait --timeout 10m
  if [ -n "${TCLOUD_ACME_EMAIL:-}" ]; then
    log "ClusterIssuer letsencrypt"
    apply_stdin <<YAML
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: letsencrypt
spec:
  acme:
    server: https://acme-v02.api.letsencrypt.org/directory
    email: $TCLOUD_ACME_EMAIL
    privateKeySecretRef:
      name: letsencrypt-account
    solvers:
      - http01:
          ingress:
            ingressClassName: nginx
YAML
  fi
}

install_temporal() {
  : "${TEMPORAL_POSTGRES_HOST:?is required to install Temporal (host:port of its PostgreSQL)}"
  local args=(-f charts/temporal-values.yaml
    --set-string "server.config.persistence.datastores.default.sql.connectAddr=$TEMPORAL_POSTGRES_HOST"
    --set-string "server.config.persistence.datastores.visibility.sql.connectAddr=$TEMPORAL_POSTGRES_HOST")
  have_servicemonitor_crd || args+=(--set server.metrics.serviceMonitor.enabled=false)
  if [ -n "${TCLOUD_TEMPORAL_HOSTNAME:-}" ]; then
    args+=(--set-string "server.frontend.ingress.hosts[0]=$TCLOUD_TEMPORAL_HOSTNAME"
      --set-string "server.frontend.ingress.tls[0].hosts[0]=$TCLOUD_TEMPORAL_HOSTNAME"
      --set-string "server.frontend.ingress.tls[0].secretName=temporal-frontend-tls")
  fi
  log "Temporal chart $TEMPORAL_CHART_VERSION"
  helm upgrade --install temporal temporal --repo "$TEMPORAL_REPO" --version "$TEMPORAL_CHART_VERSION" \
    --namespace "$NAMESPACE" "${args[@]}" --wait --timeout 20m
  register_search_attributes
}

# The search attributes listed in charts/temporal-values.yaml (admintools env TCLOUD_SEARCH_ATTRIBUTES),
# created on tcloud-system through the internal frontend, then checked in the server's list.
register_search_attributes() {
  log "search attributes on tcloud-system"
  # shellcheck disable=SC2016  # expanded inside the admin tools pod, not here
  kubectl -n "$NAMESPACE" exec deploy/temporal-admintools -- sh -ec '
    addr=temporal-internal-frontend:7236
    for sa in $(echo "$TCLOUD_SEARCH_ATTRIBUTES" | tr , " "); do
      name=${sa%%=*}; type=${sa#*=}
      if ! temporal operator search-attribute list --address "$addr" -n tcloud-system | grep -q "$name"; then
        temporal operator search-attribute create --address "$addr" -n tcloud-system --name "$name" --type "$type"
      fi
    done
    for sa in $(echo "$TCLOUD_SEARCH_ATTRIBUTES" | tr , " "); do
      temporal operator search-attribute list --address "$addr" -n tcloud-system | grep -q "${sa%%=*}"
    done'
}

install_tcloud() {
  local args=(-f charts/tcloud/values.yaml -f charts/tcloud/values-production.yaml
    --set-string "image.repository=$IMAGE")
  [ -z "$IMAGE_TAG" ] || args+=(--set-string "image.tag=$IMAGE_TAG")
  [ -n "${GHCR_TOKEN:-}" ] || secret_exists ghcr-pull || args+=(--set 'imagePullSecrets=null')
  have_servicemonitor_crd || args+=(--set serviceMonitor.enabled=false)
  if [ -n "${TCLOUD_HOSTNAME:-}" ]; then
    args+=(--set-string "api.ingress.host=$TCLOUD_HOSTNAME"
      --set-string "api.ingress.tls[0].hosts[0]=$TCLOUD_HOSTNAME" --set-string "api.ingress.tls[0].secretName=tcloud-tls"
      --set-string "config.oidc_issuer=https://$TCLOUD_HOSTNAME")
  fi
  [ -z "${TCLOUD_UI_HOSTNAME:-}" ] || args+=(--set-string "config.customer_ui_url=https://$TCLOUD_UI_HOSTNAME")
  if [ -z "${TCLOUD_OIDC_CLIENT_SECRET:-}" ] && ! secret_has_key tcloud-secrets TCLOUD_OIDC_CLIENT_SECRET; then
    log "the customers' Temporal UI is not installed: set TCLOUD_OIDC_CLIENT_SECRET"
    args+=(--set customerUi.enabled=false)
  fi
  log "tcloud chart (image $IMAGE:${IMAGE_TAG:-appVersion})"
  helm upgrade --install tcloud charts/tcloud --namespace "$NAMESPACE" \
    "${args[@]}" "${TCLOUD_HELM_ARGS[@]}" --wait --atomic --timeout 10m
}

TCLOUD_HELM_ARGS=()
[ "$APPLY" = 0 ] || terraform_apply
need kubectl helm
kubectl version --request-timeout=10s >/dev/null 2>&1 || die "cannot reach the cluster: set KUBECONFIG (or run with --apply to create it)"
terraform_settings
ensure_namespace
ensure_secrets
[ "$SKIP_ADDONS" = 1 ] || install_addons
[ "$SKIP_TEMPORAL" = 1 ] || install_temporal
install_tcloud
TCLOUD_OKE_NAMESPACE="$NAMESPACE" exec bash infra/oke-status.sh
