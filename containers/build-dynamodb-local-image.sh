#!/usr/bin/env bash
# Build a local stand-in for the `amazon/dynamodb-local` image without Docker Hub.
#
# Why: `start_local_dynamodb(use_docker=True)` runs the image named by DYNAMODB_LOCAL_IMAGE
# (default `amazon/dynamodb-local`). Where Docker Hub cannot be reached, that image cannot be
# pulled, and no base image (debian, eclipse-temurin, ...) can be pulled either. This script
# needs only a Debian mirror and the DynamoDB Local jar this library already caches:
#
#   1. `debootstrap --variant=minbase bookworm` a root file system from the Debian mirror that
#      apt on this machine already uses (override with DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR);
#   2. install `openjdk-17-jre-headless` in it with apt, then drop caches, docs and man pages;
#   3. copy DynamoDBLocal.jar and DynamoDBLocal_lib/ into /home/dynamodblocal, owned by a
#      `dynamodblocal` user, as in the official image;
#   4. `docker import` the tree with the official image's settings: WORKDIR /home/dynamodblocal,
#      USER dynamodblocal, ENTRYPOINT ["java"], CMD ["-jar", "DynamoDBLocal.jar", "-inMemory"],
#      EXPOSE 8000; then smoke-test it (java -version, DynamoDB Local -version).
#
# Usage (as root, with a running Docker engine, debootstrap and chroot installed):
#
#   containers/build-dynamodb-local-image.sh [TAG]
#   DYNAMODB_LOCAL_IMAGE=TAG python -m comic_vine_dynamodb_store.local run --docker
#
# TAG defaults to comic-vine-store/dynamodb-local:<DynamoDB Local version>. Re-running rebuilds
# and re-tags. Where the jar comes from:
#   DYNAMODB_LOCAL_DIR  a folder holding DynamoDBLocal.jar and DynamoDBLocal_lib/; else
#   PYTHON              an interpreter with this package installed (default: the repo's
#                       .venv/bin/python, else python3 with src/ on PYTHONPATH), which runs
#                       `python -m comic_vine_dynamodb_store.local fetch` (cached jar, or npm).
# Other knobs: DEBIAN_SUITE (default bookworm), KEEP_ROOTFS=1 keeps the build tree for a look.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/.." && pwd)"
SUITE="${DEBIAN_SUITE:-bookworm}"
TAG="${1:-}"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
log() {
    printf '==> %s\n' "$*" >&2
}

case "${TAG}" in
    -h | --help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
esac
[[ $# -le 1 ]] || die "usage: $0 [TAG]"

# ------------------------------------------------------------------ preconditions

[[ "$(id -u)" -eq 0 ]] || die "run as root: debootstrap and chroot need it (sudo $0 ${TAG})"
command -v docker > /dev/null \
    || die "docker not found: install a Docker engine (Debian: apt-get install docker.io)"
command -v debootstrap > /dev/null \
    || die "debootstrap not found: install it (Debian: apt-get install debootstrap)"
command -v chroot > /dev/null || die "chroot not found (Debian: it is in coreutils)"
docker info > /dev/null 2>&1 \
    || die "the Docker engine does not answer \`docker info\`: start it (dockerd, or systemctl start docker)"

# ------------------------------------------------------------------ the DynamoDB Local files

find_dynamodb_local_dir() {
    if [[ -n "${DYNAMODB_LOCAL_DIR:-}" ]]; then
        printf '%s\n' "${DYNAMODB_LOCAL_DIR}"
        return
    fi
    local python="${PYTHON:-}" jar
    if [[ -z "${python}" ]]; then
        if [[ -x "${REPO_DIR}/.venv/bin/python" ]]; then
            python="${REPO_DIR}/.venv/bin/python"
        else
            python="python3"
        fi
    fi
    jar="$(PYTHONPATH="${REPO_DIR}/src${PYTHONPATH:+:${PYTHONPATH}}" \
        "${python}" -m comic_vine_dynamodb_store.local fetch)" \
        || die "could not get the DynamoDB Local jar with ${python}; set DYNAMODB_LOCAL_DIR or PYTHON"
    dirname "${jar}"
}

DDB_DIR="$(find_dynamodb_local_dir)"
[[ -f "${DDB_DIR}/DynamoDBLocal.jar" && -d "${DDB_DIR}/DynamoDBLocal_lib" ]] \
    || die "${DDB_DIR} has no DynamoDBLocal.jar with DynamoDBLocal_lib/ beside it"
log "DynamoDB Local from ${DDB_DIR}"

# ------------------------------------------------------------------ the Debian mirror

# The first URI that apt uses for the main archive / for security updates, from one-line
# (`deb URI suite ...`) and deb822 (`URIs: ...`) source files alike.
apt_uris() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r "${file}" ]] || continue
        sed -nE -e 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([a-z]+:[^[:space:]]+).*/\2/p' \
            -e 's/^[[:space:]]*URIs:[[:space:]]*//p' "${file}" | tr ' ' '\n'
    done | sed '/^$/d; s:/*$::'
}
MIRROR="${DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian$' | head -n 1 || true)}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security$' | head -n 1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
log "Debian ${SUITE} from ${MIRROR} (security: ${SECURITY_MIRROR})"

# ------------------------------------------------------------------ build the root file system

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/dynamodb-local-rootfs.XXXXXX")"
chmod 755 "${ROOTFS}" # it becomes the image's /, and apt's _apt user must reach its cache
cleanup() {
    local status=$?
    # Unmount whatever is still mounted inside the tree before anything is deleted.
    if [[ -d "${ROOTFS}" ]]; then
        local mount_point
        for mount_point in "${ROOTFS}/dev/pts" "${ROOTFS}/proc" "${ROOTFS}/sys"; do
            if mountpoint -q "${mount_point}" 2> /dev/null; then
                umount -l "${mount_point}" || true
            fi
        done
        rm -f "${ROOTFS}.debootstrap.log" "${ROOTFS}.chroot.log"
        if [[ "${KEEP_ROOTFS:-0}" == 1 ]]; then
            log "kept the root file system at ${ROOTFS}"
        else
            rm -rf --one-file-system "${ROOTFS}"
        fi
    fi
    exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=${SECONDS}
log "debootstrap --variant=minbase ${SUITE} (a few minutes)"
debootstrap --variant=minbase "${SUITE}" "${ROOTFS}" "${MIRROR}" > "${ROOTFS}.debootstrap.log" 2>&1 || {
    tail -n 30 "${ROOTFS}.debootstrap.log" >&2
    rm -f "${ROOTFS}.debootstrap.log"
    die "debootstrap failed (log tail above)"
}
rm -f "${ROOTFS}.debootstrap.log"

cat > "${ROOTFS}/etc/apt/sources.list" << EOF
deb ${MIRROR} ${SUITE} main
deb ${MIRROR} ${SUITE}-updates main
deb ${SECURITY_MIRROR} ${SUITE}-security main
EOF
# Keep documentation out of the image for good, not only out of this install.
cat > "${ROOTFS}/etc/dpkg/dpkg.cfg.d/01-nodoc" << 'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
# The Java packages' maintainer scripts want /proc (ca-certificates-java runs java).
mount -t proc proc "${ROOTFS}/proc"

log "apt-get install openjdk-17-jre-headless in the tree"
chroot_log="${ROOTFS}.chroot.log"
chroot "${ROOTFS}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 /bin/bash -euo pipefail -c '
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless > /dev/null
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
            /var/lib/dpkg/*-old /var/log/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
        find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
        find /usr/share/doc -mindepth 1 -type d -empty -delete
        useradd --create-home --home-dir /home/dynamodblocal --shell /usr/sbin/nologin \
            --user-group dynamodblocal
        java -version
    ' > "${chroot_log}" 2>&1 || {
    tail -n 30 "${chroot_log}" >&2
    rm -f "${chroot_log}"
    die "installing Java in the tree failed (log tail above)"
}
rm -f "${chroot_log}"

log "copy DynamoDB Local into /home/dynamodblocal"
home="${ROOTFS}/home/dynamodblocal"
cp -R "${DDB_DIR}/DynamoDBLocal.jar" "${DDB_DIR}/DynamoDBLocal_lib" "${home}/"
for extra in LICENSE.txt README.txt THIRD-PARTY-LICENSES.txt; do
    [[ -f "${DDB_DIR}/${extra}" ]] && cp "${DDB_DIR}/${extra}" "${home}/"
done
owner="$(chroot "${ROOTFS}" id -u dynamodblocal):$(chroot "${ROOTFS}" id -g dynamodblocal)"
chown -R "${owner}" "${home}"

version="$(chroot "${ROOTFS}" /bin/sh -c \
    'cd /home/dynamodblocal && java -jar DynamoDBLocal.jar -version' 2> /dev/null \
    | grep -Eo '^[0-9]+(\.[0-9]+)+' | head -n 1 || true)"
version="${version:-unknown}"
umount "${ROOTFS}/proc"
TAG="${TAG:-comic-vine-store/dynamodb-local:${version}}"

# ------------------------------------------------------------------ import and check

log "docker import as ${TAG} (DynamoDB Local ${version})"
previous_id="$(docker image inspect --format '{{.Id}}' "${TAG}" 2> /dev/null || true)"
tar --numeric-owner -C "${ROOTFS}" -c . | docker import \
    --change 'WORKDIR /home/dynamodblocal' \
    --change 'USER dynamodblocal' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'EXPOSE 8000' \
    --change 'ENTRYPOINT ["java"]' \
    --change 'CMD ["-jar", "DynamoDBLocal.jar", "-inMemory"]' \
    --change "LABEL org.opencontainers.image.title=dynamodb-local org.opencontainers.image.version=${version} org.opencontainers.image.description=\"DynamoDB Local on Debian ${SUITE} + OpenJDK 17, built offline by containers/build-dynamodb-local-image.sh\"" \
    --message "DynamoDB Local ${version} on Debian ${SUITE}, openjdk-17-jre-headless" \
    - "${TAG}" > /dev/null

if [[ -n "${previous_id}" ]]; then # a re-run: drop the image this tag pointed to, if unused
    current_id="$(docker image inspect --format '{{.Id}}' "${TAG}")"
    if [[ "${previous_id}" != "${current_id}" ]]; then
        docker image rm "${previous_id}" > /dev/null 2>&1 || true
    fi
fi

log "smoke test"
java_version="$(docker run --rm "${TAG}" -version 2>&1)" || die "java does not run in ${TAG}"
printf '%s\n' "${java_version%%$'\n'*}" >&2
got="$(docker run --rm "${TAG}" -jar DynamoDBLocal.jar -version 2> /dev/null)" || true
got="${got%%$'\n'*}"
[[ "${got}" == "${version}" ]] || die "the image's DynamoDB Local reports '${got}', expected '${version}'"

size="$(docker image inspect --format '{{.Size}}' "${TAG}")"
log "built ${TAG}: $((size / 1024 / 1024)) MiB in $((SECONDS - started)) s"
log "use it with: DYNAMODB_LOCAL_IMAGE=${TAG}"
printf '%s\n' "${TAG}"
