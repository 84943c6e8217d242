#!/usr/bin/env bash
# What pam_breakglass.so adds to a login, measured two ways (needs root, Debian 12 with
# openssh-server, libpam0g-dev, libpam-wrapper, cc). Every PAM stack here is loaded through
# pam_wrapper from a service directory in the bench's temp dir: nothing is written into
# /etc/pam.d.
#
#  1. libpam only: open_session + close_session through real libpam (a small C driver,
#     test-support/fixtures/pam_harness.c, looping in one process) with
#        pam_loginuid + pam_breakglass (a valid breakglass certificate in SSH_AUTH_INFO_0)
#     vs pam_loginuid + pam_permit. The module's round includes verifying the certificate,
#     two durable spool records (one fsync each), two syslog lines and starting the guard,
#     which registers the session in a sessions= directory on tmpfs (as /run is in
#     production); once more with the spool on tmpfs, which shows what the fsyncs cost.
#     Batches alternate (permit, [base,] module, tmpfs; three each); each batch starts once
#     the guards of the one before have exited; the median batch is reported, the best in
#     brackets.
#  2. Full login: `ssh -i key -o CertificateFile=cert user@127.0.0.1 true` against one sshd
#     (a copy named for its own PAM service, under pam_wrapper), its PAM session stack with
#     and without the module (alternating runs).
#
# Usage: pam/benches/bench-pam.sh [PAM_ROUNDS] [SSH_LOGINS]      (defaults 200 and 30)
#   BASE=DIR pam/benches/bench-pam.sh ...   also measures, alternately in the same batches, a
#   baseline build: DIR holds its libpam_breakglass.so and breakglass-guard (copies of
#   another tree's target/release/, e.g. main's before a change).
#   SLOTS=N pam/benches/bench-pam.sh ...    this tree's module with spool_slots=N (default
#   1024; 0: one file per record, as before); the BASE build gets no spool_slots= unless
#   BASE_SLOTS=N is set (a BASE that knows the option: main since the slots). Nothing
#   ships during the bench, so before each batch the slot files are zeroed in place (what
#   breakglass host ship does to a delivered slot, off the login path); every batch's
#   records fit (2 per round).
#   RT=1 pam/benches/bench-pam.sh ...       runs the libpam batches (the harness and the
#   guards it starts) under SCHED_FIFO (`chrt -f 10`): on a machine shared with builds this
#   shields them from the others' CPU load (not from their disk load). Off by default.
set -euo pipefail
ROUNDS=${1:-200}
LOGINS=${2:-30}
BASE=${BASE:-}
RT=${RT:-}
SLOTS=${SLOTS:-1024}
BASE_SLOTS=${BASE_SLOTS:-}
BASE_SPOOL=files; [ -n "$BASE_SLOTS" ] && BASE_SPOOL=spool_slots=$BASE_SLOTS
CHRT=()
[ -n "$RT" ] && CHRT=(chrt -f 10)
[ "$(id -u)" -eq 0 ] || { echo "bench-pam: needs root (useradd, pam_loginuid, sshd)" >&2; exit 1; }
PAM_WRAPPER_SO=/usr/lib/x86_64-linux-gnu/libpam_wrapper.so
[ -e "$PAM_WRAPPER_SO" ] || { echo "bench-pam: needs $PAM_WRAPPER_SO (apt-get install libpam-wrapper; scripts/install-deps)" >&2; exit 1; }
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}

echo "== building pam-breakglass (release, package alone)"
cargo build --release --locked -q -p pam-breakglass
# the guard statically linked against musl, as scripts/build-debs packages it
# (.cargo/config.toml says why)
cargo build-static-guard >/dev/null 2>&1 || cargo build-static-guard
MODULE=$(realpath "$TARGET/release/libpam_breakglass.so")
GUARD=$(realpath "$TARGET/x86_64-unknown-linux-musl/release/breakglass-guard")

# Short paths: pam_wrapper copies service lines through a fixed-size buffer.
W=$(mktemp -d /tmp/bgb.XXXX)
mkdir "$W/pam.d"
# Everything started with wrap runs its PAM stacks from $W/pam.d.
# It execs, so use it only where bash runs it in a subshell of its own (`wrap CMD &`, a
# pipeline): $! is then the pid of CMD itself, which the cleanup kills.
wrap() { LD_PRELOAD=$PAM_WRAPPER_SO PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$W/pam.d" exec "$@"; }
USER_NAME="bgbench$$"
SVC="sshd-bgbench-$$"
SSHD_PID=""
SHM=/dev/shm/bgbench-$$
cleanup() {
  [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
  # the session guards exit by themselves once the processes they watch are gone
  rm -rf "$SHM"
  userdel -r -f "$USER_NAME" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

# Short names for the module and the guard too (the guard is found through the link).
ln -s "$MODULE" "$W/m.so"; MODULE=$W/m.so
ln -s "$GUARD" "$W/g"; GUARD=$W/g
if [ -n "$BASE" ]; then
  for f in libpam_breakglass.so breakglass-guard; do
    [ -x "$BASE/$f" ] || [ -f "$BASE/$f" ] || { echo "bench-pam: BASE=$BASE has no $f" >&2; exit 1; }
  done
  ln -s "$(realpath "$BASE/libpam_breakglass.so")" "$W/bm.so"
  ln -s "$(realpath "$BASE/breakglass-guard")" "$W/bg"
fi
# tmpfs, like /run in production: the guards' sessions= registry, and the second spool
mkdir -m 700 "$SHM"
cc -O2 -o "$W/harness" test-support/fixtures/pam_harness.c -lpam
ssh-keygen -q -t ed25519 -N '' -f "$W/ca"
ssh-keygen -q -t ed25519 -N '' -f "$W/user"
useradd -m -s /bin/bash "$USER_NAME"
sign() { # principal
  rm -f "$W/user-cert.pub"
  ssh-keygen -q -s "$W/ca" -I "breakglass/g-00000000000000be/bench@example.com" -n "$1" -z 190 -V -1m:+1h \
    -O clear -O permit-pty -O extension:grant-id@breakglass.dev=g-00000000000000be \
    -O extension:hosts@breakglass.dev=db-7 -O extension:tier@breakglass.dev=low "$W/user.pub"
}

# ---- 1. libpam open+close ---------------------------------------------------------------
sign root
printf 'publickey %s\n' "$(cut -d' ' -f1,2 "$W/user-cert.pub")" > "$W/auth_info"
python3 - "$W" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1] + "/log")
while True: s.recv(65536)
PY
SINK=$!
sleep 0.2
LOGINUID=/lib/x86_64-linux-gnu/security/pam_loginuid.so
PERMIT=/lib/x86_64-linux-gnu/security/pam_permit.so
printf 'session required %s\nsession required %s\n' "$LOGINUID" "$PERMIT" > "$W/pam.d/permit"
stack() { # service module guard spool [more options]
  printf 'session required %s\nsession required %s ca_keys=%s host=db-7 spool=%s guard=%s syslog=%s sessions=%s%s\n' \
    "$LOGINUID" "$2" "$W/ca.pub" "$4" "$3" "$W/log" "$SHM/run" "${5:+ $5}" > "$W/pam.d/$1"
}
stack module "$MODULE" "$GUARD" "$W/s" "spool_slots=$SLOTS"
# the same module with its spool on tmpfs: what is left without disk fsyncs
stack tmpfs "$MODULE" "$GUARD" "$SHM/s" "spool_slots=$SLOTS"
if [ -n "$BASE" ]; then
  stack base "$W/bm.so" "$W/bg" "$W/sb" "${BASE_SLOTS:+spool_slots=$BASE_SLOTS}"
  stack basetmpfs "$W/bm.so" "$W/bg" "$SHM/sb" "${BASE_SLOTS:+spool_slots=$BASE_SLOTS}"
fi
# Every round's guard watches the harness until it exits, then looks for leftovers of its
# session and exits: the next batch starts once they are gone (bounded wait).
guards_gone() {
  for _ in $(seq 200); do pgrep -f "^$W/b?g --session" >/dev/null || return 0; sleep 0.05; done
  echo "bench-pam: guards of the previous batch still run after 10 s" >&2
}
# What the shipper does to delivered slots, done here before a batch of the kind that uses
# them: zero them in place (the blocks stay allocated and written).
free_slots() { # kind
  local f
  case $1 in
    module) f=$W/s/records.slots ;; tmpfs) f=$SHM/s/records.slots ;;
    base) f=$W/sb/records.slots ;; basetmpfs) f=$SHM/sb/records.slots ;; *) return 0 ;;
  esac
  [ -f "$f" ] && dd if=/dev/zero of="$f" bs=4096 count=$(( $(stat -c %s "$f") / 4096 )) conv=notrunc,fdatasync status=none
  return 0
}
# Session records the module wrote into DIR (files and slots) for EVENT.
records() { # dir event
  { ls "$1" | grep -c -- "-$2.json" || true; } | head -1
  [ -f "$1/records.slots" ] && { grep -ao "\"event\":\"$2\"" "$1/records.slots" | wc -l; } || echo 0
}
count_records() { records "$@" | awk '{s+=$1} END {print s}'; }
run_harness() { # permit|base|module|tmpfs
  guards_gone
  free_slots "$1"
  wrap "${CHRT[@]}" "$W/harness" "$1" root --env-file "$W/auth_info" --repeat "$ROUNDS" 2>/dev/null | sed -n 's/ns_per_round=//p'
}
best() { sort -n | head -1; }
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
KINDS="permit ${BASE:+base }module ${BASE:+basetmpfs }tmpfs"
# the harness exits non-zero unless every open and close of its rounds succeeded
failed() { echo "bench-pam: a $1 batch did not open and close every session" >&2; exit 1; }
for k in $KINDS; do run_harness "$k" >/dev/null || failed "$k"; : > "$W/ns-$k"; done   # warm-up
for _ in 1 2 3; do
  for k in $KINDS; do run_harness "$k" >> "$W/ns-$k" || failed "$k"; done
done
guards_gone
kill $SINK 2>/dev/null || true
# Session ids are unique per process and millisecond: rounds faster than 1 ms may share one
# (and one record file), so this counts records only to see that the module wrote them.
[ "$(count_records "$W/s" open)" -ge "$ROUNDS" ] || { echo "bench-pam: the module did not open sessions" >&2; exit 1; }
[ "$SLOTS" = 0 ] || [ -f "$W/s/records.slots" ] || { echo "bench-pam: the module made no slot file" >&2; exit 1; }
[ "$(ls "$SHM/run" | grep -c -- '\.registration$' || true)" -eq 0 ] || { echo "bench-pam: guards left registrations behind" >&2; exit 1; }

# ---- 2. full ssh logins ----------------------------------------------------------------
sign "$USER_NAME"
mkdir -p /run/sshd
cp /usr/sbin/sshd "$W/$SVC"
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey"
ssh-keygen -q -k -f "$W/empty.krl"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/hostkey
PidFile $W/sshd.pid
UsePAM yes
TrustedUserCAKeys $W/ca.pub
RevokedKeys $W/empty.krl
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
PrintLastLog no
MaxStartups 100
CFG
wrap "$W/$SVC" -D -f "$W/sshd_config" -E "$W/sshd.log" >/dev/null 2>&1 &
SSHD_PID=$!
python3 - "$W" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1] + "/log2")
while True: s.recv(65536)
PY
SINK=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
# pam_wrapper wants absolute module paths; each connection's sshd reads the file anew.
SEC=/lib/x86_64-linux-gnu/security
pam_without() { printf 'account required %s/pam_unix.so\nsession required %s\nsession required %s/pam_unix.so\n' "$SEC" "$LOGINUID" "$SEC" > "$W/pam.d/$SVC"; }
pam_with() {
  printf 'account required %s/pam_unix.so\nsession required %s\nsession required %s ca_keys=%s host=db-7 spool=%s guard=%s syslog=%s sessions=%s spool_slots=%s\nsession required %s/pam_unix.so\n' \
    "$SEC" "$LOGINUID" "$MODULE" "$W/ca.pub" "$W/s2" "$GUARD" "$W/log2" "$SHM/run2" "$SLOTS" "$SEC" > "$W/pam.d/$SVC"
}
login() {
  ssh -F /dev/null -p "$PORT" -i "$W/user" -o CertificateFile="$W/user-cert.pub" -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR \
    "$USER_NAME@127.0.0.1" true
}
time_login() { local t0 t1; t0=$(date +%s%N); login; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 )); }
pam_with; login; pam_without; login   # warm-up
: > "$W/with"; : > "$W/without"
for _ in $(seq "$LOGINS"); do
  pam_without; time_login >> "$W/without"
  pam_with; time_login >> "$W/with"
done
kill $SINK 2>/dev/null || true
[ "$(count_records "$W/s2" open)" -ge "$LOGINS" ] || { echo "bench-pam: the module did not open ssh sessions" >&2; exit 1; }

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mean() { awk '{s+=$1} END {printf "%.0f", s/NR}' "$1"; }
MED_WITH=$(median "$W/with"); MED_WITHOUT=$(median "$W/without")
echo
echo "== libpam open_session+close_session ($ROUNDS rounds in one process; median of 3 alternating batches, best in brackets; spool_slots=$SLOTS${BASE:+, BASE $BASE_SPOOL}; ${RT:+SCHED_FIFO; }load average: $(cut -d' ' -f1-3 /proc/loadavg))"
row() { # label kind
  awk -v l="$1" -v m="$(med < "$W/ns-$2")" -v b="$(best < "$W/ns-$2")" -v pm="$(med < "$W/ns-permit")" -v pb="$(best < "$W/ns-permit")" 'BEGIN {
    if (l ~ /permit/) printf "  %-32s: %8.3f ms/round  [%.3f]\n", l, m/1e6, b/1e6
    else printf "  %-32s: %8.3f ms/round  [%.3f]   added vs permit %+.3f ms  [%+.3f]\n", l, m/1e6, b/1e6, (m-pm)/1e6, (b-pb)/1e6 }'
}
row "pam_loginuid + pam_permit" permit
[ -n "$BASE" ] && row "pam_breakglass, BASE build" base
row "pam_loginuid + pam_breakglass" module
[ -n "$BASE" ] && row "BASE, spool on tmpfs (no fsync)" basetmpfs
row "same, spool on tmpfs (no fsync)" tmpfs
echo "== full ssh login, certificate, same sshd ($LOGINS logins each, median; mean in brackets)"
awk -v a="$MED_WITHOUT" -v b="$MED_WITH" -v ma="$(mean "$W/without")" -v mb="$(mean "$W/with")" 'BEGIN {
  printf "  without module                 : %8.1f ms  [%.1f]\n", a/1e3, ma/1e3
  printf "  with pam_breakglass            : %8.1f ms  [%.1f]\n", b/1e3, mb/1e3
  printf "  ratio with/without             : %8.3fx  (+%.1f ms)\n", b/a, (b-a)/1e3 }'
