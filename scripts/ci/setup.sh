#!/usr/bin/env bash
# setup.sh — what the sessctl GitHub Action (action.yml) runs: send this
# job's AI API traffic through sessctl, with a per-job identity.
#
#  1. the CA: installed into the runner's trust store (trust-ca.sh, via sudo
#     unless root) and written, with the system roots, to a bundle that
#     SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE point at;
#     NODE_EXTRA_CA_CERTS points at the CA alone (Node adds it to its roots);
#  2. HTTPS_PROXY/https_proxy and NO_PROXY/no_proxy;
#  3. with `permissions: id-token: write`, the job's OIDC token exchanged
#     through the proxy for a sessctl session token (ci-token.sh), masked in
#     the log, and exported as OPENAI_API_KEY, CODEX_API_KEY and
#     ANTHROPIC_API_KEY;
#  4. this scripts directory on PATH (ci-token.sh, trust-ca.sh for later
#     steps).
# Variables go to $GITHUB_ENV, the PATH entry to $GITHUB_PATH, the bundle's
# path to $GITHUB_OUTPUT (ca-bundle): later steps of the job see them.
#
# Inputs, as the action passes them (environment):
#   INPUT_PROXY       sessctl's explicit proxy, http://host:port (required)
#   INPUT_CA          the CA: a PEM file's path, or the PEM text (required)
#   INPUT_AUDIENCE    aud of the OIDC token sessctl expects (default sessctl)
#   INPUT_NO_PROXY    hosts that bypass the proxy (default: loopback and
#                     GitHub's own hosts, so that checkout, caches and
#                     artifacts keep working)
#   INPUT_INSTALL_CA  true: install into the system trust store (default);
#                     false: leave it alone (the bundle is still written)
#   INPUT_TOKEN       true: exchange the OIDC token (default); false: set no
#                     key (the job brings its own runner token)
# and GitHub's: GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT, RUNNER_TEMP,
# ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd) # scripts/
fail() { echo "::error title=sessctl::$*"; exit 1; }

proxy=${INPUT_PROXY:-}
ca_in=${INPUT_CA:-}
audience=${INPUT_AUDIENCE:-sessctl}
no_proxy_in=${INPUT_NO_PROXY:-localhost,127.0.0.1,::1,github.com,.github.com,.githubusercontent.com,.blob.core.windows.net}
install_ca=${INPUT_INSTALL_CA:-true}
want_token=${INPUT_TOKEN:-true}

: "${GITHUB_ENV:?not in a GitHub Actions job (GITHUB_ENV is not set)}"
: "${GITHUB_PATH:?not in a GitHub Actions job (GITHUB_PATH is not set)}"
tmp=${RUNNER_TEMP:-${TMPDIR:-/tmp}}

# Every value goes into $GITHUB_ENV as NAME=value on one line: refuse
# anything that could add a line (or a variable) of its own.
[ -n "$proxy" ] || fail "input proxy is required, e.g. http://sessctl.internal.example:3128"
proxy_re='^https?://[][A-Za-z0-9._~%@:-]+/?$'
hosts_re='^[][A-Za-z0-9._,:*/-]*$'
[[ "$proxy" =~ $proxy_re ]] || fail "input proxy must be http://host:port, not '${proxy//$'\n'/ }'"
[[ "$no_proxy_in" =~ $hosts_re ]] || fail "input no-proxy must be a comma-separated host list"
[[ "$audience" =~ ^[A-Za-z0-9._:/-]+$ ]] || fail "input audience may hold letters, digits and . _ : / - only"
case "$install_ca" in true | false) ;; *) fail "input install-ca must be true or false" ;; esac
case "$want_token" in true | false) ;; *) fail "input token must be true or false" ;; esac
case ",$no_proxy_in," in
  *,api.openai.com,* | *,.openai.com,* | *,openai.com,* | *,\*,*)
    fail "input no-proxy must not let api.openai.com bypass sessctl" ;;
esac
[ -n "$ca_in" ] || fail "input ca is required: sessctl's CA certificate (a PEM file's path, or the PEM text)"

# The CA, at a path of its own for the rest of the job.
ca="$tmp/sessctl-ca.pem"
bundle="$tmp/sessctl-ca-bundle.pem"
if [[ "$ca_in" == *"-----BEGIN CERTIFICATE-----"* ]]; then
  printf '%s\n' "$ca_in" >"$ca"
else
  [ -r "$ca_in" ] || fail "input ca: cannot read $ca_in (give a PEM file's path or the PEM text)"
  cp -- "$ca_in" "$ca"
fi
chmod 0644 "$ca"
grep -q -- "-----BEGIN CERTIFICATE-----" "$ca" || fail "input ca holds no PEM certificate"

# trust-ca.sh prints shell variables on stdout: they are set here instead.
if $install_ca; then
  "$here/trust-ca.sh" --bundle "$bundle" "$ca" >/dev/null ||
    fail "could not install the CA (see above); set install-ca: false to leave the trust store alone"
else
  "$here/trust-ca.sh" --print-only --bundle "$bundle" "$ca" >/dev/null 2>"$tmp/sessctl-trust.log" ||
    { cat "$tmp/sessctl-trust.log" >&2; fail "could not write the CA bundle (see above)"; }
fi

{
  echo "HTTPS_PROXY=$proxy"
  echo "https_proxy=$proxy"
  echo "NO_PROXY=$no_proxy_in"
  echo "no_proxy=$no_proxy_in"
  echo "SSL_CERT_FILE=$bundle"
  echo "REQUESTS_CA_BUNDLE=$bundle"
  echo "CURL_CA_BUNDLE=$bundle"
  echo "NODE_EXTRA_CA_CERTS=$ca"
} >>"$GITHUB_ENV"
echo "$here" >>"$GITHUB_PATH"
[ -z "${GITHUB_OUTPUT:-}" ] || echo "ca-bundle=$bundle" >>"$GITHUB_OUTPUT"
echo "sessctl: proxy $proxy; CA bundle $bundle"

if ! $want_token; then
  echo "sessctl: token: false, no API key set"
  exit 0
fi
if [ -z "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] || [ -z "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ]; then
  fail "no OIDC token for this job: add 'permissions: id-token: write' to the workflow or job (or set token: false and bring a runner token)"
fi
token=$(HTTPS_PROXY=$proxy "$here/ci-token.sh" --audience "$audience" --cacert "$ca") ||
  fail "sessctl did not exchange this job's OIDC token (see above): is the issuer in sessctl's oidc list, with audience $audience?"
[[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || fail "sessctl answered with a malformed session token"
echo "::add-mask::$token"
{
  echo "OPENAI_API_KEY=$token"
  echo "CODEX_API_KEY=$token"
  echo "ANTHROPIC_API_KEY=$token"
} >>"$GITHUB_ENV"
echo "sessctl: session token exported as OPENAI_API_KEY, CODEX_API_KEY and ANTHROPIC_API_KEY (masked)"
