#!/usr/bin/env bash
# transparent-iptables.sh — send runners' HTTPS (and HTTP) to sessctl's
# transparent listener with iptables, and block QUIC so clients fall back
# to TCP. Run as root on the host that runs sessctl. See docs/transparent.md
# for the threat model.
#
# Usage:
#   transparent-iptables.sh --port 3129 --subnet 10.20.0.0/16 [--subnet ...]
#   transparent-iptables.sh --port 3129 --uid runner --sessctl-user sessctl
#   transparent-iptables.sh --remove
#
#   --port PORT          sessctl's transparent_listen port (required to install)
#   --subnet CIDR        runners routed through this host (gateway mode);
#                        IPv6 CIDRs go to ip6tables; repeatable
#   --uid USER           a runner user on this host (local mode); repeatable
#   --sessctl-user USER  sessctl's own user, never redirected (required with --uid)
#   --mark MARK          packets with this fwmark are never redirected
#   --no-http            leave port 80 alone (default: redirect it too, so that
#                        sessctl answers plain HTTP with a clear refusal)
#   --strict             also reject every other connection from the runners
#                        except DNS (port 53): their only way out is sessctl
#   --ipv4-only          do not touch ip6tables in --uid mode (runners must
#                        then have no IPv6 route out)
#   --remove             remove every rule this script installed
#   --dry-run            print the commands instead of running them
#
# Idempotent: the rules live in chains of their own (SESSCTL_*), rebuilt on
# every run; running it twice leaves one copy.
set -euo pipefail

port= remove= dry= http=1 strict= v4only= mark= sessctl_user=
subnets=() uids=()
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "transparent-iptables.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --subnet) subnets+=("${2:?--subnet needs a value}"); shift 2 ;;
    --uid) uids+=("${2:?--uid needs a value}"); shift 2 ;;
    --sessctl-user) sessctl_user=${2:?--sessctl-user needs a value}; shift 2 ;;
    --mark) mark=${2:?--mark needs a value}; shift 2 ;;
    --no-http) http=; shift ;;
    --strict) strict=1; shift ;;
    --ipv4-only) v4only=1; shift ;;
    --remove) remove=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done

run() {
  if [ -n "$dry" ]; then echo "$*"; else "$@"; fi
}

# The chains this script owns, and where they hook in: table:chain:hook.
chains=(nat:SESSCTL_PRE:PREROUTING nat:SESSCTL_OUT:OUTPUT filter:SESSCTL_FWD:FORWARD filter:SESSCTL_LOCAL:OUTPUT)

# unhook_and_drop removes this script's chains from one family's tables.
unhook_and_drop() {
  local ipt=$1 spec table chain hook
  command -v "$ipt" >/dev/null || return 0
  for spec in "${chains[@]}"; do
    IFS=: read -r table chain hook <<<"$spec"
    while "$ipt" -w -t "$table" -C "$hook" -j "$chain" 2>/dev/null; do
      run "$ipt" -w -t "$table" -D "$hook" -j "$chain"
      [ -z "$dry" ] || break
    done
    if "$ipt" -w -t "$table" -n -L "$chain" >/dev/null 2>&1; then
      run "$ipt" -w -t "$table" -F "$chain"
      run "$ipt" -w -t "$table" -X "$chain"
    fi
  done
}

# fresh_chain creates (or empties) a chain and hooks it in first position.
fresh_chain() {
  local ipt=$1 table=$2 chain=$3 hook=$4
  if "$ipt" -w -t "$table" -n -L "$chain" >/dev/null 2>&1; then
    run "$ipt" -w -t "$table" -F "$chain"
  else
    run "$ipt" -w -t "$table" -N "$chain"
  fi
  "$ipt" -w -t "$table" -C "$hook" -j "$chain" 2>/dev/null ||
    run "$ipt" -w -t "$table" -I "$hook" 1 -j "$chain"
}

if [ -n "$remove" ]; then
  unhook_and_drop iptables
  unhook_and_drop ip6tables
  exit 0
fi

[ -n "$port" ] || { usage >&2; die "--port is required"; }
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad --port $port"
[ ${#subnets[@]} -gt 0 ] || [ ${#uids[@]} -gt 0 ] || die "give --subnet or --uid"
if [ ${#uids[@]} -gt 0 ]; then
  [ -n "$sessctl_user" ] || die "--uid needs --sessctl-user, so that sessctl's own connections are never redirected back to it"
  s_uid=$(id -u "$sessctl_user") || die "no user $sessctl_user"
  for u in "${uids[@]}"; do
    r_uid=$(id -u "$u") || die "no user $u"
    [ "$r_uid" != "$s_uid" ] || die "runner user $u is sessctl's user: the firewall cannot tell them apart"
  done
fi
command -v iptables >/dev/null || die "iptables not found"

ports=443
[ -z "$http" ] || ports=443,80

# install_family installs the rules for one address family.
#   $1: iptables or ip6tables; $2...: the subnets of this family
install_family() {
  local ipt=$1; shift
  local fam_subnets=("$@") s u
  fresh_chain "$ipt" nat SESSCTL_PRE PREROUTING
  fresh_chain "$ipt" nat SESSCTL_OUT OUTPUT
  fresh_chain "$ipt" filter SESSCTL_FWD FORWARD
  fresh_chain "$ipt" filter SESSCTL_LOCAL OUTPUT
  # Never redirect sessctl's own traffic (no loops), nor marked packets.
  if [ -n "$sessctl_user" ]; then
    run "$ipt" -w -t nat -A SESSCTL_OUT -m owner --uid-owner "$sessctl_user" -j RETURN
    run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$sessctl_user" -j RETURN
  fi
  if [ -n "$mark" ]; then
    run "$ipt" -w -t nat -A SESSCTL_PRE -m mark --mark "$mark" -j RETURN
    run "$ipt" -w -t nat -A SESSCTL_OUT -m mark --mark "$mark" -j RETURN
  fi
  # Gateway mode: runners' forwarded traffic.
  for s in "${fam_subnets[@]}"; do
    run "$ipt" -w -t nat -A SESSCTL_PRE -s "$s" -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports "$port"
    run "$ipt" -w -t filter -A SESSCTL_FWD -s "$s" -p udp --dport 443 -j REJECT
    if [ -n "$strict" ]; then
      run "$ipt" -w -t filter -A SESSCTL_FWD -s "$s" -p udp --dport 53 -j RETURN
      run "$ipt" -w -t filter -A SESSCTL_FWD -s "$s" -p tcp --dport 53 -j RETURN
      run "$ipt" -w -t filter -A SESSCTL_FWD -s "$s" -j REJECT
    fi
  done
  # Local mode: runner users on this host.
  for u in "${uids[@]}"; do
    run "$ipt" -w -t nat -A SESSCTL_OUT -m owner --uid-owner "$u" -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports "$port"
    run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$u" -p udp --dport 443 -j REJECT
    if [ -n "$strict" ]; then
      # Redirected connections leave through lo (REDIRECT in OUTPUT
      # rewrites the destination to the loopback address).
      run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$u" -o lo -j RETURN
      run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$u" -p udp --dport 53 -j RETURN
      run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$u" -p tcp --dport 53 -j RETURN
      run "$ipt" -w -t filter -A SESSCTL_LOCAL -m owner --uid-owner "$u" -j REJECT
    fi
  done
}

v4=() v6=()
for s in "${subnets[@]}"; do
  case "$s" in *:*) v6+=("$s") ;; *) v4+=("$s") ;; esac
done
if [ ${#v4[@]} -gt 0 ] || [ ${#uids[@]} -gt 0 ]; then
  install_family iptables "${v4[@]}"
fi
if [ ${#v6[@]} -gt 0 ] || { [ ${#uids[@]} -gt 0 ] && [ -z "$v4only" ]; }; then
  command -v ip6tables >/dev/null || die "ip6tables not found (use --ipv4-only if runners have no IPv6 route)"
  install_family ip6tables "${v6[@]}"
fi
[ -n "$dry" ] || echo "transparent-iptables.sh: runners' TCP ${ports} now goes to port ${port}; UDP 443 rejected"
