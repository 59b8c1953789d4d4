#!/usr/bin/env bash
# ci-token.sh — exchange this GitHub Actions job's OIDC token for a sessctl
# session token, and print it (for OPENAI_API_KEY).
#
# CI OIDC tokens live about five minutes; an agent job runs longer. sessctl
# verifies the job's token and returns a session token bound to the same
# claims (repository, workflow, run, sha, actor, ...), valid for
# session_token_ttl (default 6h).
#
# Needs: `permissions: id-token: write` in the workflow, HTTPS_PROXY pointing
# at sessctl, and sessctl's CA trusted (SSL_CERT_FILE or --cacert below).
#
# Usage: OPENAI_API_KEY=$(scripts/ci-token.sh [--audience sessctl] [--cacert FILE])
set -euo pipefail

audience=sessctl
cacert=${SSL_CERT_FILE:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --audience) audience=$2; shift 2 ;;
    --cacert) cacert=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "ci-token.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

: "${ACTIONS_ID_TOKEN_REQUEST_URL:?not in a GitHub Actions job with id-token: write permission}"
: "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:?not in a GitHub Actions job with id-token: write permission}"
: "${HTTPS_PROXY:?set HTTPS_PROXY to sessctl, e.g. http://sessctl.internal.example:3128}"

# The job's OIDC token, from GitHub's token service (not through sessctl).
oidc=$(curl -fsS --noproxy '*' \
  -H "Authorization: bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}" \
  "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=${audience}" |
  sed -n 's/.*"value"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
[ -n "$oidc" ] || { echo "ci-token.sh: no OIDC token in GitHub's answer" >&2; exit 1; }

args=(-fsS --proxy "$HTTPS_PROXY" -X POST -H "Authorization: Bearer ${oidc}")
[ -n "$cacert" ] && args+=(--cacert "$cacert")
answer=$(curl "${args[@]}" https://sessctl.internal/sessctl/v1/token)
token=$(printf '%s' "$answer" | sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "ci-token.sh: sessctl refused the exchange: $answer" >&2; exit 1; }
printf '%s\n' "$token"
