#!/usr/bin/env bash
# Creates mesh-guard's serving certificate for clusters without cert-manager.
#
# - a private CA (Secret mesh-guard-ca: ca.crt, ca.key), reused when it exists and is valid;
# - a serving certificate for mesh-guard.mesh-guard.svc signed by it (Secret mesh-guard-tls:
#   tls.crt, tls.key, ca.crt), which the Deployment mounts;
# - the CA in the caBundle of the MutatingWebhookConfiguration 0-mesh-guard.
#
# Idempotent: when the serving certificate is valid for more than RENEW_DAYS (30) days, verifies
# against the CA and that CA is in caBundle, it changes nothing. A valid CA is kept, so
# re-running it to renew the serving certificate never changes caBundle. To replace the CA, use
# rotate.sh.
#
# --dry-run prints the manifests (two Secrets, then the caBundle patch) instead of applying
# them and never contacts the cluster, so it always generates a new CA and certificate.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<EOF
Usage: $0 [--dry-run] [--force] [--namespace NS] [--service NAME] [--webhook-config NAME]
          [--cert-days N] [--ca-days N]
  --dry-run  print the Secret and caBundle manifests instead of applying them (no cluster access)
  --force    issue a new serving certificate even if the current one is fine
Run after \`kubectl apply -k deploy/base\` (the namespace and the webhook configuration must exist).
EOF
}

FORCE=false
parse_common "$@"
for a in ${REST[@]+"${REST[@]}"}; do
  case "$a" in
    --force) FORCE=true ;;
    *) usage >&2; die "unknown argument: $a" ;;
  esac
done

valid_for_days() { # CERT DAYS
  openssl x509 -in "$1" -noout -checkend $(($2 * 86400)) >/dev/null 2>&1
}

if [ "$DRY_RUN" = true ]; then
  gen_ca "$WORK/ca"
  gen_leaf "$WORK/leaf" "$WORK/ca"
  cp "$WORK/ca/ca.crt" "$WORK/bundle.pem"
  echo "# mesh-guard certificates (certs-scripts/create.sh --dry-run). Apply the Secrets with"
  echo "# \`kubectl apply --server-side -f\`, and the last document with"
  echo "# \`kubectl patch mutatingwebhookconfiguration $WEBHOOK_CONFIG --type=strategic --patch-file\`."
  echo "# Serving certificate SHA-256 fingerprint: $(fingerprint "$WORK/leaf/tls.crt")"
  echo "---"
  emit_ca_secret "$WORK/ca"
  echo "---"
  emit_tls_secret "$WORK/leaf" "$WORK/ca"
  echo "---"
  emit_bundle_patch "$WORK/bundle.pem"
  exit 0
fi

kubectl get namespace "$NAMESPACE" >/dev/null || die "namespace $NAMESPACE not found: run kubectl apply -k deploy/base first"
kubectl get mutatingwebhookconfiguration "$WEBHOOK_CONFIG" >/dev/null ||
  die "MutatingWebhookConfiguration $WEBHOOK_CONFIG not found: run kubectl apply -k deploy/base first"

mkdir -p "$WORK/ca" "$WORK/cur"
read_bundle "$WORK/bundle.pem"

# 1. The CA: reuse a valid one.
if read_secret_key "$CA_SECRET" ca.crt "$WORK/ca/ca.crt" && read_secret_key "$CA_SECRET" ca.key "$WORK/ca/ca.key" &&
  valid_for_days "$WORK/ca/ca.crt" $((RENEW_DAYS + 1)); then
  say "using the existing CA in Secret $NAMESPACE/$CA_SECRET"
  new_ca=false
else
  say "creating a new CA (Secret $NAMESPACE/$CA_SECRET)"
  gen_ca "$WORK/ca"
  new_ca=true
fi

# 2. The serving certificate: keep it if it is valid, signed by the CA and not expiring soon.
need_leaf=true
if [ "$FORCE" != true ] && [ "$new_ca" = false ] && read_secret_key "$TLS_SECRET" tls.crt "$WORK/cur/tls.crt" &&
  valid_for_days "$WORK/cur/tls.crt" "$RENEW_DAYS" &&
  openssl verify -CAfile "$WORK/ca/ca.crt" "$WORK/cur/tls.crt" >/dev/null 2>&1; then
  need_leaf=false
  say "the serving certificate in Secret $NAMESPACE/$TLS_SECRET is valid; keeping it"
fi

# 3. caBundle first (so the API server trusts the CA before any pod serves a certificate from
#    it), keeping whatever else is there: removing CAs is rotate.sh's job.
before=$(cat "$WORK/bundle.pem" 2>/dev/null || true)
bundle_add "$WORK/bundle.pem" "$WORK/ca/ca.crt"
if [ "$before" != "$(cat "$WORK/bundle.pem")" ]; then
  say "adding the CA to the caBundle of $WEBHOOK_CONFIG"
  patch_bundle "$WORK/bundle.pem"
else
  say "caBundle of $WEBHOOK_CONFIG already trusts the CA"
fi

if [ "$new_ca" = true ]; then emit_ca_secret "$WORK/ca" | apply_manifest; fi
if [ "$need_leaf" = true ]; then
  say "issuing a serving certificate for $(dns_names | head -n1), valid $CERT_DAYS days"
  gen_leaf "$WORK/leaf" "$WORK/ca"
  emit_tls_secret "$WORK/leaf" "$WORK/ca" | apply_manifest
  say "done: the pods pick up the new certificate without a restart (within about a minute)"
else
  say "done: nothing to change"
fi
