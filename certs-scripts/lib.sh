# shellcheck shell=bash
# Shared helpers for create.sh and rotate.sh (sourced, not run). Needs bash, openssl (1.1.1+
# or 3.x) and, unless --dry-run, kubectl.

NAMESPACE=${NAMESPACE:-mesh-guard}
SERVICE=${SERVICE:-mesh-guard}
WEBHOOK_CONFIG=${WEBHOOK_CONFIG:-0-mesh-guard}
WEBHOOK_NAME=${WEBHOOK_NAME:-pods.mesh-guard.io}
TLS_SECRET=${TLS_SECRET:-mesh-guard-tls}
CA_SECRET=${CA_SECRET:-mesh-guard-ca}
POD_SELECTOR=${POD_SELECTOR:-app.kubernetes.io/name=mesh-guard}
CA_DAYS=${CA_DAYS:-3650}
CERT_DAYS=${CERT_DAYS:-365}
# create.sh renews the serving certificate when it expires within this many days.
RENEW_DAYS=${RENEW_DAYS:-30}
DRY_RUN=false

die() {
  echo "error: $*" >&2
  exit 1
}
say() { echo "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required"
}

# Parses the options common to both scripts; sets REST to the remaining arguments.
parse_common() {
  REST=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=true ;;
      --namespace) NAMESPACE=${2:?--namespace needs a value}; shift ;;
      --service) SERVICE=${2:?--service needs a value}; shift ;;
      --webhook-config) WEBHOOK_CONFIG=${2:?--webhook-config needs a value}; shift ;;
      --cert-days) CERT_DAYS=${2:?--cert-days needs a value}; shift ;;
      --ca-days) CA_DAYS=${2:?--ca-days needs a value}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) REST+=("$1") ;;
    esac
    shift
  done
  need openssl
  if [ "$DRY_RUN" != true ]; then need kubectl; fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mesh-guard-certs.XXXXXX")
  chmod 700 "$WORK"
  trap 'rm -rf "$WORK"' EXIT
}

dns_names() {
  printf '%s\n' "$SERVICE.$NAMESPACE.svc" "$SERVICE.$NAMESPACE.svc.cluster.local" "$SERVICE.$NAMESPACE" "$SERVICE"
}

b64() { openssl base64 -A <"$1"; }
b64d() { openssl base64 -d -A; }

# gen_ca DIR: DIR/ca.key, DIR/ca.crt (self-signed ECDSA P-256 CA).
gen_ca() {
  local dir=$1
  mkdir -p "$dir"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  cat >"$dir/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = mesh-guard-ca $(date -u +%Y%m%dT%H%M%SZ)
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -sha256 -key "$dir/ca.key" -days "$CA_DAYS" -config "$dir/ca.cnf" -out "$dir/ca.crt" 2>/dev/null ||
    die "openssl could not create the CA"
}

# gen_leaf DIR CA_DIR: DIR/tls.key, DIR/tls.crt signed by CA_DIR/ca.{crt,key}.
gen_leaf() {
  local dir=$1 ca=$2 i=0 san=""
  mkdir -p "$dir"
  while read -r name; do
    i=$((i + 1))
    san="${san}DNS.$i = $name"$'\n'
  done < <(dns_names)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/tls.key" 2>/dev/null
  cat >"$dir/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $SERVICE.$NAMESPACE.svc
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
$san
EOF
  openssl req -new -sha256 -key "$dir/tls.key" -config "$dir/leaf.cnf" -out "$dir/tls.csr" 2>/dev/null ||
    die "openssl could not create the CSR"
  openssl x509 -req -sha256 -in "$dir/tls.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -CAserial "$dir/ca.srl" -days "$CERT_DAYS" -extfile "$dir/leaf.cnf" -extensions v3_leaf -out "$dir/tls.crt" 2>/dev/null ||
    die "openssl could not sign the serving certificate"
  openssl verify -CAfile "$ca/ca.crt" "$dir/tls.crt" >/dev/null || die "the new certificate does not verify against its CA"
}

fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//'; }

# Manifests ------------------------------------------------------------------------------------

emit_ca_secret() { # CA_DIR
  cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $CA_SECRET
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/name: mesh-guard
    app.kubernetes.io/part-of: mesh-guard
type: Opaque
data:
  ca.crt: $(b64 "$1/ca.crt")
  ca.key: $(b64 "$1/ca.key")
EOF
}

emit_tls_secret() { # LEAF_DIR CA_DIR
  cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $TLS_SECRET
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/name: mesh-guard
    app.kubernetes.io/part-of: mesh-guard
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$1/tls.crt")
  tls.key: $(b64 "$1/tls.key")
  ca.crt: $(b64 "$2/ca.crt")
EOF
}

# A strategic-merge patch (webhooks merge by name): `kubectl patch --type=strategic`, or a
# kustomize patch.
emit_bundle_patch() { # BUNDLE_FILE
  cat <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: $WEBHOOK_CONFIG
webhooks:
  - name: $WEBHOOK_NAME
    clientConfig:
      caBundle: $(b64 "$1")
EOF
}

# Cluster access -------------------------------------------------------------------------------

# Server-side apply: unlike client-side apply it stores no last-applied annotation, which
# would otherwise hold a second copy of the private keys.
apply_manifest() { kubectl apply --server-side --force-conflicts --field-manager=mesh-guard-certs -f - >&2; }

patch_bundle() { # BUNDLE_FILE
  emit_bundle_patch "$1" >"$WORK/bundle-patch.yaml"
  kubectl patch mutatingwebhookconfiguration "$WEBHOOK_CONFIG" --type=strategic --patch-file "$WORK/bundle-patch.yaml" >&2
}

# Writes the current caBundle (PEM) to FILE; empty if none.
read_bundle() { # FILE
  kubectl get mutatingwebhookconfiguration "$WEBHOOK_CONFIG" \
    -o "jsonpath={.webhooks[?(@.name==\"$WEBHOOK_NAME\")].clientConfig.caBundle}" | b64d >"$1" 2>/dev/null || true
}

# Writes key KEY of Secret NAME to FILE; returns 1 if absent.
read_secret_key() { # NAME KEY FILE
  local v
  v=$(kubectl -n "$NAMESPACE" get secret "$1" -o "jsonpath={.data.${2//./\\.}}" 2>/dev/null) || return 1
  [ -n "$v" ] || return 1
  printf '%s' "$v" | b64d >"$3"
}

# Splits a PEM bundle into DIR/cert-N.pem files; prints their paths.
split_bundle() { # BUNDLE DIR
  mkdir -p "$2"
  awk -v dir="$2" '/-----BEGIN CERTIFICATE-----/{n++; f=dir "/cert-" n ".pem"} f{print > f} /-----END CERTIFICATE-----/{f=""}' "$1"
  ls "$2"/cert-*.pem 2>/dev/null || true
}

# Appends CERT to BUNDLE unless a certificate with the same fingerprint is already there.
bundle_add() { # BUNDLE CERT
  local fp c
  fp=$(fingerprint "$2")
  for c in $(split_bundle "$1" "$WORK/split-$$-$RANDOM"); do
    [ "$(fingerprint "$c")" = "$fp" ] && return 0
  done
  cat "$2" >>"$1"
}

# Prints the SHA-256 fingerprint of the certificate each ready mesh-guard pod serves, one line
# per pod ("pod fingerprint"), via kubectl port-forward.
served_fingerprints() {
  local pod port pf log
  for pod in $(kubectl -n "$NAMESPACE" get pods -l "$POD_SELECTOR" --field-selector=status.phase=Running -o name); do
    log="$WORK/pf.log"
    kubectl -n "$NAMESPACE" port-forward "$pod" :8443 >"$log" 2>&1 &
    pf=$!
    port=""
    for _ in $(seq 1 50); do
      port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
      [ -n "$port" ] && break
      sleep 0.2
    done
    if [ -n "$port" ]; then
      printf '%s %s\n' "$pod" "$(openssl s_client -connect "127.0.0.1:$port" -servername "$SERVICE.$NAMESPACE.svc" </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//')"
    else
      printf '%s %s\n' "$pod" "unreachable"
    fi
    kill "$pf" 2>/dev/null || true
    wait "$pf" 2>/dev/null || true
  done
}

# Waits until every running pod serves the certificate with fingerprint FP.
wait_served() { # FP TIMEOUT_SECONDS
  local deadline=$((SECONDS + $2)) out pending
  while :; do
    out=$(served_fingerprints)
    pending=$(printf '%s\n' "$out" | awk -v fp="$1" 'NF && $2 != fp' | wc -l)
    if [ -n "$out" ] && [ "$pending" -eq 0 ]; then
      say "all pods serve the new certificate"
      return 0
    fi
    [ $SECONDS -ge $deadline ] && {
      say "still not served by: $(printf '%s\n' "$out" | awk -v fp="$1" 'NF && $2 != fp {print $1}' | tr '\n' ' ')"
      return 1
    }
    say "waiting for the pods to serve the new certificate (kubelet syncs Secrets within about a minute)..."
    sleep 10
  done
}
