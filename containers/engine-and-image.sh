#!/usr/bin/env bash
# A Docker engine and a DynamoDB Local image, made on this machine without any registry.
#
#   containers/engine-and-image.sh JAR [IMAGE]
#
# 1. If no Docker engine answers and we are root on Debian/Ubuntu: install docker.io (if
#    dockerd is missing) and start dockerd in the background (log: /var/log/dockerd-local.log).
# 2. If IMAGE is not in the engine yet: build it with `docker import` from a small root file
#    system holding this machine's JRE, the shared libraries it loads (as ldd names them) and
#    the DynamoDB Local jar with its native libraries. It runs like amazon/dynamodb-local:
#    entrypoint `java`, working directory /home/dynamodblocal, so the same command line works.
#
# Idempotent: with an engine up and the image present, it only checks and exits (under 1 s).
# Exit 0 and print the image name when an engine and the image are ready; exit 1 with the
# reason on stderr otherwise (the test suite then says why its testcontainers tests skip).
set -euo pipefail

JAR=${1:?usage: engine-and-image.sh JAR [IMAGE]}
IMAGE=${2:-comic-vine-store/dynamodb-local:local}
LOG=/var/log/dockerd-local.log

say() { echo "[docker-image] $*" >&2; }
fail() { say "$*"; exit 1; }

engine_answers() { timeout 5 docker info >/dev/null 2>&1; }

if ! engine_answers; then
    [ "$(id -u)" = 0 ] || fail "no Docker engine answers, and only root may start one here"
    if ! command -v dockerd >/dev/null 2>&1; then
        command -v apt-get >/dev/null 2>&1 || fail "no Docker engine, and no apt-get to install one"
        say "installing docker.io"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q docker.io >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q docker.io >/dev/null 2>&1; } \
            || fail "apt-get could not install docker.io"
    fi
    command -v docker >/dev/null 2>&1 || fail "dockerd is installed but the docker client is not"
    say "starting dockerd (log: $LOG)"
    setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        engine_answers && break
        sleep 0.5
    done
    engine_answers || fail "dockerd did not answer within 30 s; log tail: $(tail -n 5 "$LOG" 2>/dev/null)"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi

[ -f "$JAR" ] || fail "no DynamoDB Local jar at $JAR"
JAVA=$(command -v java) || fail "no java to copy into the image"
JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$JAVA")")")
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
say "building $IMAGE from $JAVA_HOME and $(dirname "$JAR")"

# The JRE as the machine has it, links followed (Debian links its conf to /etc/java-*).
mkdir -p "$ROOT$JAVA_HOME" "$ROOT/usr/bin" "$ROOT/home/dynamodblocal" "$ROOT/tmp"
# A dangling link (Debian's lib/src.zip without the source package) is skipped.
cp -rL "$JAVA_HOME/." "$ROOT$JAVA_HOME/" 2>/dev/null || true
[ -x "$ROOT$JAVA_HOME/bin/java" ] && [ -f "$ROOT$JAVA_HOME/conf/security/java.security" ] \
    || fail "could not copy the JRE at $JAVA_HOME"
ln -s "$JAVA_HOME/bin/java" "$ROOT/usr/bin/java"

# Every shared library the JVM, its own libraries and the jar's native ones load, with the
# dynamic loader itself.
DDB_DIR=$(dirname "$JAR")
cp -a "$DDB_DIR/." "$ROOT/home/dynamodblocal/"
# (ldd fails on files that are not dynamic executables: those simply name nothing.)
{ find "$JAVA_HOME" "$DDB_DIR" -type f \( -name '*.so' -o -path '*/bin/*' \) -print0 \
    | xargs -0 ldd 2>/dev/null || true; } \
    | { grep -oE '(/[^ ]+\.so[^ ]*)' || true; } \
    | sort -u \
    | while read -r lib; do
        [ -e "$lib" ] || continue
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
# Name resolution and a user the JVM can look up.
mkdir -p "$ROOT/etc"
printf 'root:x:0:0:root:/root:/bin/false\n' >"$ROOT/etc/passwd"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' >"$ROOT/etc/hosts"
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
    /lib/aarch64-linux-gnu/libnss_files.so.2 /lib/aarch64-linux-gnu/libnss_dns.so.2; do
    if [ -e "$lib" ]; then
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    fi
done

tar -C "$ROOT" -c . | docker import \
    --change 'ENTRYPOINT ["java"]' \
    --change 'WORKDIR /home/dynamodblocal' \
    --change "ENV JAVA_HOME=$JAVA_HOME PATH=/usr/bin:$JAVA_HOME/bin" \
    - "$IMAGE" >/dev/null
say "built $IMAGE"
echo "$IMAGE"
