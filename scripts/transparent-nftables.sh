#!/usr/bin/env bash
# transparent-nftables.sh — send runners' HTTPS (and HTTP) to sessctl's
# transparent listener with nftables, and block QUIC so clients fall back
# to TCP. Run as root on the host that runs sessctl. See docs/transparent.md
# for the threat model.
#
# Usage:
#   transparent-nftables.sh --port 3129 --subnet 10.20.0.0/16 [--subnet ...]
#   transparent-nftables.sh --port 3129 --uid runner --sessctl-user sessctl
#   transparent-nftables.sh --remove
#
#   --port PORT          sessctl's transparent_listen port (required to install)
#   --subnet CIDR        runners routed through this host (gateway mode);
#                        IPv4 or IPv6; repeatable
#   --uid USER           a runner user on this host (local mode); repeatable
#   --sessctl-user USER  sessctl's own user, never redirected (required with --uid)
#   --mark MARK          packets with this fwmark are never redirected
#   --no-http            leave port 80 alone (default: redirect it too, so that
#                        sessctl answers plain HTTP with a clear refusal)
#   --strict             also reject every other connection from the runners
#                        except DNS (port 53): their only way out is sessctl
#   --remove             remove the table this script installed
#   --dry-run            print the ruleset instead of loading it
#
# Idempotent: everything lives in one table, inet sessctl_transparent
# (IPv4 and IPv6), replaced atomically on every run.
set -euo pipefail

table=sessctl_transparent
port= remove= dry= http=1 strict= mark= sessctl_user=
subnets=() uids=()
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "transparent-nftables.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?--port needs a value}; shift 2 ;;
    --subnet) subnets+=("${2:?--subnet needs a value}"); shift 2 ;;
    --uid) uids+=("${2:?--uid needs a value}"); shift 2 ;;
    --sessctl-user) sessctl_user=${2:?--sessctl-user needs a value}; shift 2 ;;
    --mark) mark=${2:?--mark needs a value}; shift 2 ;;
    --no-http) http=; shift ;;
    --strict) strict=1; shift ;;
    --remove) remove=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done
command -v nft >/dev/null || [ -n "$dry" ] || die "nft not found"

exists() { nft list table inet "$table" >/dev/null 2>&1; }

if [ -n "$remove" ]; then
  if [ -n "$dry" ]; then echo "delete table inet $table"; exit 0; fi
  if exists; then nft delete table inet "$table"; fi
  exit 0
fi

[ -n "$port" ] || { usage >&2; die "--port is required"; }
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad --port $port"
[ ${#subnets[@]} -gt 0 ] || [ ${#uids[@]} -gt 0 ] || die "give --subnet or --uid"
s_uid=
if [ ${#uids[@]} -gt 0 ]; then
  [ -n "$sessctl_user" ] || die "--uid needs --sessctl-user, so that sessctl's own connections are never redirected back to it"
fi
if [ -n "$sessctl_user" ]; then
  s_uid=$(id -u "$sessctl_user") || die "no user $sessctl_user"
fi
r_uids=()
for u in "${uids[@]}"; do
  r=$(id -u "$u") || die "no user $u"
  [ "$r" != "$s_uid" ] || die "runner user $u is sessctl's user: the firewall cannot tell them apart"
  r_uids+=("$r")
done
[[ -z "$mark" || "$mark" =~ ^(0x[0-9a-fA-F]+|[0-9]+)$ ]] || die "bad --mark $mark"
for s in "${subnets[@]}"; do
  [[ "$s" =~ ^[0-9a-fA-F.:]+(/[0-9]+)?$ ]] || die "bad --subnet $s"
done

ports=443
[ -z "$http" ] || ports="443, 80"

# saddr prints the nft match for a subnet of either family.
saddr() { case "$1" in *:*) echo "ip6 saddr $1" ;; *) echo "ip saddr $1" ;; esac; }

ruleset() {
  # Create then delete: a no-op that makes "delete table" safe when the
  # table does not exist yet, so that the replacement is one transaction.
  echo "table inet $table {}"
  echo "delete table inet $table"
  echo "table inet $table {"
  echo "  chain prerouting {"
  echo "    type nat hook prerouting priority dstnat; policy accept;"
  [ -z "$mark" ] || echo "    meta mark $mark return"
  for s in "${subnets[@]}"; do
    echo "    $(saddr "$s") tcp dport { $ports } redirect to :$port"
  done
  echo "  }"
  echo "  chain output_nat {"
  echo "    type nat hook output priority -100; policy accept;"
  [ -z "$s_uid" ] || echo "    meta skuid $s_uid return"
  [ -z "$mark" ] || echo "    meta mark $mark return"
  for u in "${r_uids[@]}"; do
    echo "    meta skuid $u tcp dport { $ports } redirect to :$port"
  done
  echo "  }"
  echo "  chain forward {"
  echo "    type filter hook forward priority filter; policy accept;"
  for s in "${subnets[@]}"; do
    echo "    $(saddr "$s") udp dport 443 reject"
    if [ -n "$strict" ]; then
      echo "    $(saddr "$s") meta l4proto { tcp, udp } th dport 53 accept"
      echo "    $(saddr "$s") reject"
    fi
  done
  echo "  }"
  echo "  chain output {"
  echo "    type filter hook output priority filter; policy accept;"
  [ -z "$s_uid" ] || echo "    meta skuid $s_uid accept"
  for u in "${r_uids[@]}"; do
    echo "    meta skuid $u udp dport 443 reject"
    if [ -n "$strict" ]; then
      # Redirected connections leave through lo (redirect in output
      # rewrites the destination to the loopback address).
      echo "    meta skuid $u oifname \"lo\" accept"
      echo "    meta skuid $u meta l4proto { tcp, udp } th dport 53 accept"
      echo "    meta skuid $u reject"
    fi
  done
  echo "  }"
  echo "}"
}

if [ -n "$dry" ]; then
  ruleset
  exit 0
fi
ruleset | nft -f -
echo "transparent-nftables.sh: runners' TCP ${ports} now goes to port ${port}; UDP 443 rejected (table inet $table)"
