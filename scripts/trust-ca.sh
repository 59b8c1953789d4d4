#!/usr/bin/env bash
# trust-ca.sh — make a runner trust sessctl's CA (or step-ca's root).
#
# Installs the PEM certificate(s) of CA_FILE into the system trust store
# (Debian/Ubuntu and Alpine: update-ca-certificates; RHEL/Fedora/CentOS:
# update-ca-trust), then prints, on standard output, the environment
# variables that make Node, Python, Go and curl use it, and the keytool
# line for Java. Messages go to standard error, so:
#
#   eval "$(scripts/trust-ca.sh ca.pem)"
#
# CA_FILE is what 'sessctl ca export' prints (current CA, plus the next one
# during a rotation), or step-ca's root (DIR/root.crt after 'ca enroll').
#
# Usage: trust-ca.sh [options] CA_FILE
#   --print-only      install nothing: print the commands that would run and
#                     the variables (which then assume the CA is installed)
#   --bundle FILE     also write FILE = system bundle + CA_FILE, and point the
#                     variables at it (needs no root; works with --print-only)
#   --name NAME       file name in the trust store (default: sessctl)
#   --github-env      also append the variables to $GITHUB_ENV (GitHub Actions)
#   -h, --help        this text
#
# Installing needs root (or sudo). Re-running with the same --name replaces
# the previously installed certificates, which is what a CA rotation needs.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "trust-ca.sh: $*" >&2; exit 2; }
say() { echo "trust-ca.sh: $*" >&2; }

print_only=false
bundle_out=
name=sessctl
github_env=false
ca_file=
while [ $# -gt 0 ]; do
  case "$1" in
    --print-only) print_only=true; shift ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a file"; bundle_out=$2; shift 2 ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; name=$2; shift 2 ;;
    --github-env) github_env=true; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$ca_file" ] || die "more than one CA file given"; ca_file=$1; shift ;;
  esac
done
if [ $# -gt 0 ]; then
  [ -z "$ca_file" ] && [ $# -eq 1 ] || die "more than one CA file given"
  ca_file=$1
fi
[ -n "$ca_file" ] || { usage >&2; exit 2; }
[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--name must be letters, digits, '.', '_' or '-'"
[ -r "$ca_file" ] || die "cannot read $ca_file"
ca_file=$(cd "$(dirname "$ca_file")" && pwd)/$(basename "$ca_file")

# Split CA_FILE into one file per certificate: the trust stores hash and
# link certificates one file at a time.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" '
  /-----BEGIN CERTIFICATE-----/ { n++; out = sprintf("%s/%d.pem", dir, n); inside = 1 }
  inside { print > out }
  /-----END CERTIFICATE-----/ { inside = 0; close(out) }
' "$ca_file"
certs=("$work"/*.pem)
[ -e "${certs[0]}" ] || die "$ca_file holds no PEM certificate"
if command -v openssl >/dev/null 2>&1; then
  for c in "${certs[@]}"; do
    openssl x509 -in "$c" -noout 2>/dev/null || die "$ca_file: certificate $(basename "$c" .pem) does not parse"
    openssl x509 -in "$c" -noout -text 2>/dev/null | grep -q 'CA:TRUE' ||
      die "$ca_file: certificate $(basename "$c" .pem) is not a CA certificate (basic constraints CA:TRUE missing)"
    say "certificate $(basename "$c" .pem): $(openssl x509 -in "$c" -noout -subject -enddate 2>/dev/null | tr '\n' ' ')"
  done
fi

# Which trust store this system has.
os_id=unknown
if [ -r /etc/os-release ]; then
  os_id=$(. /etc/os-release && echo "${ID:-unknown}${ID_LIKE:+ ($ID_LIKE)}")
fi
if command -v update-ca-certificates >/dev/null 2>&1 || [ -d /usr/local/share/ca-certificates ]; then
  family=debian # Debian, Ubuntu, Alpine (package ca-certificates)
  store_dir=/usr/local/share/ca-certificates
  ext=crt
  system_bundle=/etc/ssl/certs/ca-certificates.crt
  update=(update-ca-certificates)
elif command -v update-ca-trust >/dev/null 2>&1 || [ -d /etc/pki/ca-trust/source/anchors ]; then
  family=rhel # RHEL, CentOS, Fedora, Rocky, Alma, Amazon Linux
  store_dir=/etc/pki/ca-trust/source/anchors
  ext=pem
  system_bundle=/etc/pki/tls/certs/ca-bundle.crt
  update=(update-ca-trust extract)
else
  family=none
  store_dir=
  system_bundle=
  update=()
fi
say "system: $os_id; trust store: ${family/none/not found}"

run() {
  if $print_only; then
    local shown=() a
    for a in "$@"; do
      case "$a" in
        "$work"/*.pem) shown+=("<certificate $(basename "$a" .pem) of $ca_file>") ;;
        *) shown+=("$(printf '%q' "$a")") ;;
      esac
    done
    echo "  ${shown[*]}" >&2
  elif [ "$(id -u)" -eq 0 ]; then
    "$@" >&2 # standard output carries only the variables
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@" >&2
  else
    die "installing needs root: run as root, or use --print-only or --bundle"
  fi
}

if [ "$family" = none ]; then
  $print_only || [ -n "$bundle_out" ] ||
    die "no supported trust store (update-ca-certificates or update-ca-trust); install ca-certificates, or use --bundle"
  say "no supported trust store: installing nothing"
else
  if $print_only; then
    say "would run:"
  else
    command -v "${update[0]}" >/dev/null 2>&1 ||
      die "${update[0]} not found: install the ca-certificates package (apk add ca-certificates / apt-get install ca-certificates / dnf install ca-certificates)"
  fi
  # Replace what an earlier run with the same name installed.
  run find "$store_dir" -maxdepth 1 -name "$name-*.$ext" -type f -delete
  i=0
  for c in "${certs[@]}"; do
    i=$((i + 1))
    run install -m 0644 -D "$c" "$store_dir/$name-$i.$ext"
  done
  run "${update[@]}"
  if ! $print_only && [ -r "$system_bundle" ]; then
    body=$(sed -n '2p' "${certs[0]}")
    grep -qF -- "$body" "$system_bundle" || die "the CA is not in $system_bundle after ${update[*]}; check its output"
    say "installed ${#certs[@]} certificate(s) into $store_dir ($system_bundle updated)"
  fi
fi

bundle=$system_bundle
if [ -n "$bundle_out" ]; then
  if [ -n "$system_bundle" ] && [ -r "$system_bundle" ]; then
    { cat "$system_bundle"; echo; cat "${certs[@]}"; } >"$bundle_out.tmp"
  else
    cat "${certs[@]}" >"$bundle_out.tmp"
  fi
  chmod 0644 "$bundle_out.tmp"
  mv "$bundle_out.tmp" "$bundle_out"
  bundle=$(cd "$(dirname "$bundle_out")" && pwd)/$(basename "$bundle_out")
  say "wrote $bundle (system bundle + CA)"
fi
[ -n "$bundle" ] || bundle=$ca_file

vars=(
  "NODE_EXTRA_CA_CERTS=$ca_file"
  "REQUESTS_CA_BUNDLE=$bundle"
  "SSL_CERT_FILE=$bundle"
  "CURL_CA_BUNDLE=$bundle"
)
cat <<EOF
# Node.js: adds the CA to its built-in roots
export NODE_EXTRA_CA_CERTS=$ca_file
# Python requests (replaces certifi's bundle, so point at the full bundle)
export REQUESTS_CA_BUNDLE=$bundle
# Python ssl, httpx and the openai SDK; Go (crypto/x509 reads SSL_CERT_FILE on
# Unix, and the system store without it); Ruby; OpenSSL-based tools
export SSL_CERT_FILE=$bundle
# curl
export CURL_CA_BUNDLE=$bundle
# Java (run once per JDK; the default store password is changeit):
#   keytool -importcert -noprompt -trustcacerts -alias $name -file $ca_file -cacerts -storepass changeit
EOF
if $github_env; then
  [ -n "${GITHUB_ENV:-}" ] || die "--github-env: GITHUB_ENV is not set (not in GitHub Actions)"
  printf '%s\n' "${vars[@]}" >>"$GITHUB_ENV"
  say "appended ${#vars[@]} variables to \$GITHUB_ENV"
fi
