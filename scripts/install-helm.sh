#!/usr/bin/env bash
# Build the real helm binary from its Go module into .brokers/bin/ (gitignored).
#
# No package registry reachable here ships helm, but the Go module proxy serves
# its source, so CI builds it once (cold: about 150 s on 2 cores, most of it
# compiling); later runs find the binary and return at once.
# Usage: scripts/install-helm.sh            (prints the binary's path)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# The Kubernetes minor of the k8s.io/client-go that HELM_VERSION requires
# (v0.36.x for v3.21.4); helm's Makefile injects it the same way.
K8S_MINOR="${K8S_MINOR:-36}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${ROOT}/.brokers/bin"
HELM="${BIN_DIR}/helm"
STAMP="${BIN_DIR}/helm.stamp"

# Without these flags `helm version` shows a placeholder and helm assumes
# Kubernetes 1.20, which fails any chart that declares a newer kubeVersion.
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in pkg/lint/rules pkg/chartutil; do
  LDFLAGS+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${K8S_MINOR}"
done

# The stamp records how the binary was built, so a build of another version
# or with other flags is rebuilt rather than trusted.
if [[ -x "${HELM}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${LDFLAGS}" ]]; then
  echo "${HELM}"
  exit 0
fi

# Go's tarball install puts it in /usr/local/go, which a non-login shell may not have on PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:${PATH}"
fi
command -v go >/dev/null || { echo "install-helm.sh: go is not on PATH" >&2; exit 1; }
mkdir -p "${BIN_DIR}"
echo "install-helm.sh: building helm ${HELM_VERSION} from its Go module" >&2
start=${SECONDS}
GOBIN="${BIN_DIR}" CGO_ENABLED=0 GOFLAGS=-mod=mod \
  go install -trimpath -ldflags "${LDFLAGS}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
echo "install-helm.sh: built in $((SECONDS - start)) s" >&2

built="$("${HELM}" version --template '{{.Version}}')"
if [[ "${built}" != "${HELM_VERSION}" ]]; then
  echo "install-helm.sh: built helm reports ${built}, expected ${HELM_VERSION}" >&2
  exit 1
fi
printf '%s' "${LDFLAGS}" > "${STAMP}"
echo "${HELM}"
