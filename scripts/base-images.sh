#!/usr/bin/env bash
# Makes local stand-ins for the public base images where no image registry can be reached, with the same
# shape as the real ones (paths, users, entry points), tagged under $MVREFRESH_BASE_PREFIX (mvrefresh-local):
#   <prefix>/debian:bookworm                    debootstrap --variant=minbase bookworm, imported
#   <prefix>/node:20-bookworm-slim              that, plus this machine's Node 20, npm and CA certificates
#   <prefix>/distroless-nodejs20-debian12:nonroot  /nodejs/bin/node, its libraries, user nonroot (65532),
#                                               no shell, no package manager
#   <prefix>/postgres:15                        Debian's PostgreSQL 15 with an official-image-like entry point
#   <prefix>/prometheus:v2                      Debian's Prometheus, shaped like the official image (entry point
#                                               the binary, user nobody, data in /prometheus): compose.yaml
# Needs root, a running Docker engine, debootstrap, and Debian's package mirror. Images already present are
# kept (MVREFRESH_BASE_REBUILD=1 makes them again).
# Usage: scripts/base-images.sh [--print-build-args | --print-compose-env] (the flags of docker build, the
# variables of compose.yaml that select the stand-ins)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${MVREFRESH_BASE_PREFIX:-mvrefresh-local}
# the Debian archive apt is configured with (deb822 .sources or one-line .list), unless given
apt_mirror() {
  {
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | { grep -v -e security -e '^$' || true; } | head -n 1
}
node_major=20

debian="$prefix/debian:bookworm"
node_image="$prefix/node:${node_major}-bookworm-slim"
distroless="$prefix/distroless-nodejs${node_major}-debian12:nonroot"
postgres="$prefix/postgres:15"
prometheus="$prefix/prometheus:v2"

if [ "${1:-}" = --print-build-args ]; then
  echo "--build-arg BUILD_IMAGE=$node_image --build-arg RUNTIME_IMAGE=$distroless"
  exit 0
fi
if [ "${1:-}" = --print-compose-env ]; then
  echo "MVREFRESH_POSTGRES_IMAGE=$postgres MVREFRESH_PROMETHEUS_IMAGE=$prometheus"
  exit 0
fi

present() { [ -z "${MVREFRESH_BASE_REBUILD:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }
say() { echo "base-images: $*" >&2; }

node_bin=$(command -v node)
if [ "$("$node_bin" -p 'process.versions.node.split(".")[0]')" != "$node_major" ]; then
  say "this machine's node is $("$node_bin" --version); the stand-ins need Node $node_major"
  exit 1
fi
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! present "$debian"; then
  mirror=${MVREFRESH_DEBIAN_MIRROR:-$(apt_mirror)}
  if [ -z "$mirror" ]; then
    say "no Debian archive found in apt's sources: set MVREFRESH_DEBIAN_MIRROR to one"
    exit 1
  fi
  say "debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar --numeric-owner -C "$work/rootfs" -c . | docker import --change 'CMD ["bash"]' - "$debian" >/dev/null
  rm -rf "$work/rootfs"
  say "made $debian"
fi

if ! present "$node_image"; then
  mkdir -p "$work/node"
  cp "$node_bin" "$work/node/node"
  cp -a "$npm_dir" "$work/node/npm"
  # this machine's trust store: npm ci in the build stage reaches the package registry the way the host
  # does (through a TLS-inspecting proxy, where there is one)
  cp "${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" "$work/node/ca-certificates.crt"
  cat >"$work/node/Dockerfile" <<DOCKERFILE
FROM $debian
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version && npm --version
CMD ["node"]
DOCKERFILE
  docker build -q -t "$node_image" "$work/node" >/dev/null
  say "made $node_image"
fi

if ! present "$distroless"; then
  # only what distroless's nodejs image holds: node, the C and C++ runtimes, name resolution, users, /tmp
  fs="$work/distroless"
  cid=$(docker create "$debian")
  mkdir -p "$fs" "$work/debian"
  docker export "$cid" | tar -x -C "$work/debian"
  docker rm "$cid" >/dev/null
  mkdir -p "$fs/nodejs/bin" "$fs/lib/x86_64-linux-gnu" "$fs/lib64" "$fs/usr" "$fs/etc" "$fs/tmp" "$fs/home/nonroot"
  ln -s ../lib "$fs/usr/lib"
  cp "$node_bin" "$fs/nodejs/bin/node"
  for lib in $(ldd "$node_bin" | awk '/=>/ { print $3 }'); do
    cp -L "$work/debian$lib" "$fs/lib/x86_64-linux-gnu/"
  done
  for lib in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
    if [ -e "$work/debian/lib/x86_64-linux-gnu/$lib" ]; then
      cp -L "$work/debian/lib/x86_64-linux-gnu/$lib" "$fs/lib/x86_64-linux-gnu/"
    fi
  done
  cp -L "$work/debian/lib64/ld-linux-x86-64.so.2" "$fs/lib64/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$fs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$fs/etc/group"
  printf 'hosts: files dns\n' >"$fs/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n' >"$fs/etc/hosts"
  cp "$work/debian/etc/os-release" "$fs/etc/os-release"
  chmod 1777 "$fs/tmp"
  chown 65532:65532 "$fs/home/nonroot"
  rm -rf "$work/debian"
  tar --numeric-owner -C "$fs" -c . | docker import \
    --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/nodejs/bin/node"]' - "$distroless" >/dev/null
  docker run --rm "$distroless" -e 'process.exit(0)'
  say "made $distroless"
fi

if ! present "$postgres"; then
  mkdir -p "$work/postgres"
  cp "$root/docker/base/postgres-entrypoint.sh" "$work/postgres/docker-entrypoint.sh"
  cat >"$work/postgres/Dockerfile" <<DOCKERFILE
FROM $debian
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null && \
    pg_dropcluster 15 main && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb && \
    mkdir -p /var/run/postgresql /var/lib/postgresql/data && \
    chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
  docker build -q --network host -t "$postgres" "$work/postgres" >/dev/null
  say "made $postgres"
fi
if ! present "$prometheus"; then
  mkdir -p "$work/prometheus"
  cat >"$work/prometheus/Dockerfile" <<DOCKERFILE
FROM $debian
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb && \
    mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
  docker build -q --network host -t "$prometheus" "$work/prometheus" >/dev/null
  say "made $prometheus"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^$prefix/" >&2
