#!/usr/bin/env bash
# Makes the toolchain rust-toolchain.toml pins usable on a machine whose
# rustup has it only under another name: a fresh machine has one Rust
# toolchain, "stable", and cannot download another. When that stable is
# the pinned release, it is linked under the pinned name; otherwise this
# says so and exits non-zero (install the pinned release, or change the
# pin). Does nothing when the pinned toolchain is there.
set -euo pipefail

cd "$(dirname "$0")/.."
want=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
[ -n "$want" ] || { echo "toolchain.sh: no channel in rust-toolchain.toml" >&2; exit 1; }

if rustup toolchain list | grep -q "^$want-"; then
  exit 0
fi
# +stable overrides rust-toolchain.toml, which names the missing one.
have=$(rustc +stable --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
  echo "toolchain.sh: rust-toolchain.toml pins $want; this machine's stable is ${have:-missing}" >&2
  echo "toolchain.sh: run 'rustup toolchain install $want' or change the pin" >&2
  exit 1
fi
# rustup refuses custom names that look like releases ("toolchain link"),
# so the link is made in its toolchains folder directly.
home=${RUSTUP_HOME:-$HOME/.rustup}
host=$(rustc +stable -vV | sed -n 's/^host: //p')
sysroot=$(rustc +stable --print sysroot)
ln -sfn "$sysroot" "$home/toolchains/$want-$host"
echo "toolchain.sh: linked the machine's stable ($have) as $want"
rustc --version
