#!/usr/bin/env bash
# rsync-gate demo: a real sshd on 127.0.0.1 whose authorized_keys runs
# rsync-gate as the forced command, and the real rsync and ssh clients
# talking to it.
#
# Run as root from anywhere in the repository:   ./examples/demo.sh
# Needs: rsync, openssh-server (sshd), openssh-client (ssh, ssh-keygen),
# and a Rust toolchain (cargo) to build the binary.
#
# Everything lives in a temporary directory (removed on exit, also on error)
# and the sshd it starts listens only on 127.0.0.1, on a random free port,
# with its own host key and configuration; the system's sshd and its
# configuration are not touched.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

section() {
    printf '\n==== %s ====\n' "$*"
}

# Print a command as it would be typed (arguments with spaces or quotes
# single-quoted).
show() {
    local out='$' arg
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=" $arg"
        else
            out+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s\n' "$out"
}

# Show a command, then run it with its stderr folded into stdout so the
# output reads in order.
run() {
    show "$@"
    "$@" 2>&1
}

# Show a command that must fail, run it, and show its exit status.
refused() {
    show "$@"
    local status=0
    "$@" 2>&1 || status=$?
    if [ "$status" -eq 0 ]; then
        echo "demo: UNEXPECTED: that command succeeded" >&2
        exit 1
    fi
    echo "(exit status $status)"
}

# ---------------------------------------------------------------------------
section "0. Prerequisites"
if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run this as root: it starts an sshd and logs in as root" >&2
    echo "      (PermitRootLogin forced-commands-only), as a root backup would." >&2
    exit 1
fi
missing=()
for tool in /usr/bin/rsync /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen; do
    [ -x "$tool" ] || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "demo: missing: ${missing[*]}" >&2
    echo "      install them with:" >&2
    echo "        apt-get update && apt-get install -y rsync openssh-server openssh-client" >&2
    exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "demo: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
echo "rsync:  $(/usr/bin/rsync --version | head -n 1)"
echo "ssh:    $(/usr/bin/ssh -V 2>&1)"

# ---------------------------------------------------------------------------
section "1. Build rsync-gate"
run cargo build --release --locked --manifest-path "$repo/Cargo.toml"
built="${CARGO_TARGET_DIR:-$repo/target}/release/rsync-gate"
[ -x "$built" ] || { echo "demo: $built was not built" >&2; exit 1; }

# ---------------------------------------------------------------------------
section "2. A scratch server: policy, modules, audit log"
# The gate refuses a policy (or audit directory) that anyone but root could
# modify, checking every directory above it: mktemp makes the directory
# 0700, the gate needs it root-owned and not group/other-writable.
demo=$(mktemp -d /tmp/rsync-gate-demo.XXXXXX)
sshd_pid=""
cleanup() {
    local status=$?
    if [ -n "$sshd_pid" ] && kill -0 "$sshd_pid" 2>/dev/null; then
        kill "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
    fi
    rm -rf -- "$demo"
    if [ "$status" -ne 0 ]; then
        echo "demo: FAILED (exit status $status); cleaned up $demo" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 0755 "$demo"
install -d -m 0755 "$demo/bin" "$demo/etc" "$demo/log" "$demo/srv/www/docs" \
    "$demo/srv/up" "$demo/sshd" "$demo/client"
chmod 0700 "$demo/sshd" "$demo/client"
# Installed as an administrator would (root-owned, 0755); authorized-keys
# names the binary it is run as, so the lines it prints point here.
install -m 0755 "$built" "$demo/bin/rsync-gate"
gate="$demo/bin/rsync-gate"
echo "working directory: $demo"

# A sample tree for the read-only module.
printf '<h1>Hello from rsync-gate</h1>\n' >"$demo/srv/www/index.html"
printf 'body { color: #333; }\n' >"$demo/srv/www/style.css"
printf 'Read me first.\n' >"$demo/srv/www/docs/README.txt"
head -c 200000 /dev/urandom >"$demo/srv/www/docs/blob.bin"
ln -s index.html "$demo/srv/www/home.html"

# The client's key pair; its public half goes into the policy.
ssh-keygen -q -t ed25519 -N '' -C demo-client -f "$demo/client/id_ed25519"
pubkey=$(cat "$demo/client/id_ed25519.pub")

cat >"$demo/etc/policy.toml" <<EOF
# rsync-gate demo policy
[gate]
rsync = "/usr/bin/rsync"
audit_log = "$demo/log/audit.jsonl"
lock_dir = "$demo/run"
sandbox = "best-effort"

[modules.www]
path = "$demo/srv/www"
comment = "demo web site (read-only)"

[modules.up]
path = "$demo/srv/up"
comment = "uploads"
read_only = false

[clients.demo]
modules = ["www", "up"]
from = ["127.0.0.1"]
key = "$pubkey"
note = "the demo's client key"
EOF
chmod 0644 "$demo/etc/policy.toml"
run cat "$demo/etc/policy.toml"
run "$gate" check --account root --policy "$demo/etc/policy.toml"

# ---------------------------------------------------------------------------
section "3. authorized_keys, generated from the policy"
"$gate" authorized-keys --policy "$demo/etc/policy.toml" >"$demo/sshd/authorized_keys"
chmod 0600 "$demo/sshd/authorized_keys"
echo "\$ $gate authorized-keys --policy $demo/etc/policy.toml > $demo/sshd/authorized_keys"
cat "$demo/sshd/authorized_keys"

# ---------------------------------------------------------------------------
section "4. Start a private sshd on 127.0.0.1"
[ -d /run/sshd ] || install -d -m 0755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -C demo-host -f "$demo/sshd/host_ed25519"
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    cat >"$demo/sshd/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $demo/sshd/host_ed25519
PidFile $demo/sshd/sshd.pid
AuthorizedKeysFile $demo/sshd/authorized_keys
PermitRootLogin forced-commands-only
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
LogLevel VERBOSE
EOF
    : >"$demo/sshd/sshd.log"
    /usr/sbin/sshd -D -e -f "$demo/sshd/sshd_config" </dev/null >/dev/null 2>"$demo/sshd/sshd.log" &
    sshd_pid=$!
    for _ in $(seq 100); do
        grep -q "Server listening on 127.0.0.1 port $port" "$demo/sshd/sshd.log" && break
        kill -0 "$sshd_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "Server listening on 127.0.0.1 port $port" "$demo/sshd/sshd.log"; then
        break
    fi
    kill "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
    sshd_pid=""
    if [ "$attempt" -eq 10 ]; then
        echo "demo: sshd did not start; its log:" >&2
        cat "$demo/sshd/sshd.log" >&2
        exit 1
    fi
done
echo "sshd (pid $sshd_pid) listening on 127.0.0.1:$port"

# The client side: one ssh_config, so commands read like everyday ones.
cat >"$demo/client/ssh_config" <<EOF
Host demo
    HostName 127.0.0.1
    Port $port
    User root
    IdentityFile $demo/client/id_ed25519
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
EOF
ssh_cmd="ssh -F $demo/client/ssh_config"
echo "client ssh: $ssh_cmd demo"
cd "$demo/client"

# ---------------------------------------------------------------------------
section "5. Pull the read-only module (host:module/path, checked mode)"
run rsync -a --delete -e "$ssh_cmd" demo:www/ ./www-copy/
run diff -r "$demo/srv/www" ./www-copy
echo "diff -r: the copy is identical"

# ---------------------------------------------------------------------------
section "6. Push into the read-only module: refused"
printf 'defaced\n' >index.html
refused rsync -a -e "$ssh_cmd" index.html demo:www/

# ---------------------------------------------------------------------------
section "7. Push into the writable module"
mkdir -p outgoing/reports
printf 'report 1\n' >outgoing/reports/r1.txt
printf 'report 2\n' >outgoing/reports/r2.txt
run rsync -av -e "$ssh_cmd" outgoing/ demo:up/
run find "$demo/srv/up" -type f
echo "but not with --delete (the module has delete = false):"
refused rsync -a --delete -e "$ssh_cmd" outgoing/ demo:up/

# ---------------------------------------------------------------------------
section "8. Daemon over SSH (host::module): listing and a pull"
run rsync -e "$ssh_cmd" demo::
run rsync -a -e "$ssh_cmd" demo::www/ ./www-daemon-copy/
run diff -r "$demo/srv/www" ./www-daemon-copy
echo "diff -r: the copy is identical"
echo "the same rules apply to host::module (here: a push into read-only www):"
refused rsync -a -e "$ssh_cmd" index.html demo::www/

# ---------------------------------------------------------------------------
section "9. Anything that is not rsync: refused"
run $ssh_cmd demo true
echo "(ssh demo true: the connectivity probe succeeds, exit status 0)"
refused $ssh_cmd demo id
refused $ssh_cmd demo 'rsync --server --sender -e.LsfxCIvu . /etc/shadow'

# ---------------------------------------------------------------------------
section "10. What the gate would do: explain"
run "$gate" explain --policy "$demo/etc/policy.toml" --client demo --from 127.0.0.1 \
    -- rsync --server --sender -logDtpre.iLsfxCIvu . www/
refused "$gate" explain --policy "$demo/etc/policy.toml" --client demo --from 127.0.0.1 \
    -- rsync --server -logDtpre.iLsfxCIvu --delete . up/

# ---------------------------------------------------------------------------
section "11. The audit log"
run "$gate" audit --log "$demo/log/audit.jsonl"
run "$gate" audit --log "$demo/log/audit.jsonl" --denied
run "$gate" audit --log "$demo/log/audit.jsonl" --summary
echo "one record as JSON (the first decision):"
"$gate" audit --log "$demo/log/audit.jsonl" --json | head -n 1

section "Done"
echo "Everything above ran through a real sshd; $demo is removed now."
