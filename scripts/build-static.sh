#!/usr/bin/env bash
# Builds ggufy as one statically linked Linux executable (musl libc, static-pie): it needs no
# shared library at all, so it runs on any Linux of the same CPU architecture — a bare Debian,
# Alpine, distroless, scratch. Prints the binary's path on the last line.
#
#   scripts/build-static.sh            # on x86-64 or aarch64 Linux; extra args go to cargo build
#
# Needs rustup (adds the musl target) and a musl C compiler for ring, the TLS crypto library the
# hub download uses (Debian/Ubuntu: musl-tools, installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

target="$(uname -m)-unknown-linux-musl"
rustup target add "$target" >/dev/null
if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
  else
    echo "error: musl-gcc not found; install musl-tools (Debian/Ubuntu) or musl-dev (Alpine)" >&2
    exit 1
  fi
fi
cc_var="CC_${target//-/_}"
export "$cc_var=${!cc_var:-musl-gcc}"

cargo build --release --locked --target "$target" -p ggufy "$@" >&2
bin="target/$target/release/ggufy"
# Refuse to hand out something that is not actually static.
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "error: $bin links shared libraries:" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "$bin"
