#!/usr/bin/env bash
# Rotates mesh-guard's CA and serving certificate without a moment in which the API server
# distrusts the certificate a pod serves:
#
#   1. caBundle := current bundle + new CA        (API server trusts old and new)
#   2. Secret mesh-guard-ca  := new CA
#      Secret mesh-guard-tls := new serving certificate signed by the new CA
#   3. wait until every running mesh-guard pod serves the new certificate (kubelet syncs the
#      Secret, the server reloads it without a restart; checked with kubectl port-forward)
#   4. caBundle := new CA only
#
# If step 3 times out, the script stops with both CAs trusted (a safe state) and says so;
# run `rotate.sh --finish` later to do step 4 once the pods serve the new certificate.
#
# --dry-run prints the manifests of steps 1, 2 and 4 in that order and does not apply them.
# It reads the current caBundle from --current-bundle FILE (PEM), or else from the cluster.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
Usage: $0 [--dry-run] [--current-bundle FILE] [--timeout SECONDS] [--finish]
          [--namespace NS] [--service NAME] [--webhook-config NAME] [--cert-days N] [--ca-days N]
  --dry-run              print the manifests instead of applying them
  --current-bundle FILE  the caBundle to extend (PEM); default: read it from the cluster
  --timeout SECONDS      how long to wait for the pods to serve the new certificate (default 300)
  --finish               only step 4: drop old CAs once every pod serves a certificate from the current CA
EOF
}

TIMEOUT=300
CURRENT_BUNDLE=""
FINISH=false
parse_common "$@"
set -- ${REST[@]+"${REST[@]}"}
while [ $# -gt 0 ]; do
  case "$1" in
    --current-bundle) CURRENT_BUNDLE=${2:?--current-bundle needs a file}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
    --finish) FINISH=true ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if [ "$FINISH" = true ]; then
  [ "$DRY_RUN" = true ] && die "--finish cannot be combined with --dry-run"
  mkdir -p "$WORK/ca"
  read_secret_key "$CA_SECRET" ca.crt "$WORK/ca/ca.crt" || die "Secret $NAMESPACE/$CA_SECRET has no ca.crt"
  read_secret_key "$TLS_SECRET" tls.crt "$WORK/tls.crt" || die "Secret $NAMESPACE/$TLS_SECRET has no tls.crt"
  openssl verify -CAfile "$WORK/ca/ca.crt" "$WORK/tls.crt" >/dev/null || die "the serving certificate is not signed by the current CA"
  wait_served "$(fingerprint "$WORK/tls.crt")" "$TIMEOUT" || die "not every pod serves the current certificate yet; caBundle left unchanged"
  patch_bundle "$WORK/ca/ca.crt"
  say "done: caBundle now trusts only the current CA"
  exit 0
fi

# The bundle to extend.
if [ -n "$CURRENT_BUNDLE" ]; then
  cp "$CURRENT_BUNDLE" "$WORK/bundle.pem"
else
  need kubectl
  read_bundle "$WORK/bundle.pem"
fi
[ -s "$WORK/bundle.pem" ] || say "warning: the current caBundle is empty; nothing to keep trusting"

gen_ca "$WORK/ca"
gen_leaf "$WORK/leaf" "$WORK/ca"
bundle_add "$WORK/bundle.pem" "$WORK/ca/ca.crt"
NEW_FP=$(fingerprint "$WORK/leaf/tls.crt")

if [ "$DRY_RUN" = true ]; then
  echo "# mesh-guard CA rotation (certs-scripts/rotate.sh --dry-run). Apply in this order:"
  echo "# 1. the caBundle patch (old and new CA):"
  echo "#    kubectl patch mutatingwebhookconfiguration $WEBHOOK_CONFIG --type=strategic --patch-file"
  echo "# 2. the two Secrets: kubectl apply --server-side -f"
  echo "# 3. wait until every pod serves the certificate with SHA-256 fingerprint"
  echo "#    $NEW_FP"
  echo "# 4. the last caBundle patch (new CA only)."
  echo "---"
  emit_bundle_patch "$WORK/bundle.pem"
  echo "---"
  emit_ca_secret "$WORK/ca"
  echo "---"
  emit_tls_secret "$WORK/leaf" "$WORK/ca"
  echo "---"
  emit_bundle_patch "$WORK/ca/ca.crt"
  exit 0
fi

say "1/4 caBundle: trusting the current and the new CA"
patch_bundle "$WORK/bundle.pem"
say "2/4 Secrets: new CA and serving certificate (fingerprint $NEW_FP)"
emit_ca_secret "$WORK/ca" | apply_manifest
emit_tls_secret "$WORK/leaf" "$WORK/ca" | apply_manifest
say "3/4 waiting up to ${TIMEOUT}s for every pod to serve it"
if ! wait_served "$NEW_FP" "$TIMEOUT"; then
  say "stopped with both CAs in caBundle (safe). When the pods serve the new certificate, run: $0 --finish"
  exit 2
fi
say "4/4 caBundle: trusting only the new CA"
patch_bundle "$WORK/ca/ca.crt"
say "done"
