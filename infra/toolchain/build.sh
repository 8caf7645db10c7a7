#!/usr/bin/env bash
# Builds the Pulumi engine tcoder's infra checks run, from the Go module proxy, into a cache keyed
# by what it is built from; a second run finds it there and builds nothing.
#
#   pulumi                         the CLI, at the version of @pulumi/pulumi in package-lock.json
#   pulumi-language-nodejs         the Node.js language host: v3.68.0, the newest the proxy serves
#                                  (later ones are a module of their own that it does not), with
#                                  nodejs-host/protocol_backport.go for the newer engine's messages
#   pulumi-resource-pulumi-nodejs  the dynamic-provider launcher, from the same SDK module as the CLI
#   pulumi-resource-<provider>     cloudflare, upstash, command: tried; each one that cannot be built
#                                  is named in providers.txt with the reason (the proxy's answer)
#
# Prints progress on stderr and the bin directory on stdout. Nothing here downloads at run time:
# scripts that use the bin set PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION and take plugins from PATH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { printf '[toolchain] %s\n' "$*" >&2; }

if ! command -v go >/dev/null; then
  echo "[toolchain] go is not installed: the Pulumi engine is built from Go modules (Go >= 1.21)" >&2
  exit 1
fi

# GOTOOLCHAIN (which fetches the Go the modules ask for from the proxy) came with Go 1.21.
case $(go env GOVERSION) in
  go1.1[0-9]* | go1.20* | go1.[0-9].* | go1.[0-9])
    echo "[toolchain] $(go env GOVERSION) is too old: Go >= 1.21 is needed (Debian 12: apt-get install -t bookworm-backports golang-go)" >&2
    exit 1
    ;;
esac

lock_version() {
  node -e 'const l=require(process.argv[1]);const p=l.packages["node_modules/"+process.argv[2]];if(!p){process.exit(1)}console.log(p.version)' \
    "$root/package-lock.json" "$1"
}
cli_version=$(lock_version @pulumi/pulumi)
host_version=3.68.0
declare -A provider_module=(
  [cloudflare]="github.com/pulumi/pulumi-cloudflare/provider/v6"
  [upstash]="github.com/upstash/pulumi-upstash/provider"
  [command]="github.com/pulumi/pulumi-command/provider"
)
declare -A provider_sdk=([cloudflare]=@pulumi/cloudflare [upstash]=@upstash/pulumi [command]=@pulumi/command)

go_version=$(go env GOVERSION)
recipe=$(cat "$0" "$here/nodejs-host/protocol_backport.go" | sha256sum | cut -c1-12)
key="pulumi-v${cli_version}_nodejs-v${host_version}_${go_version}_${recipe}"
cache=${TCODER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tcoder}/pulumi-toolchain/$key
bin=$cache/bin

if [ -f "$cache/complete" ]; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
started=$SECONDS

step() {
  local name=$1
  shift
  local t0=$SECONDS
  log "building $name"
  "$@"
  log "built $name in $((SECONDS - t0)) s"
}

module_dir() { go mod download -json "$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);if(j.Error){console.error(j.Error);process.exit(1)}console.log(j.Dir)})'; }

build_cli() {
  mkdir -p "$work/cli" && cd "$work/cli"
  go mod init tcoder.local/pulumi-cli >/dev/null 2>&1
  # pkg/go.mod's own replace (Windows clipboard fix) does not apply outside its module.
  go mod edit -replace github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e
  go get "github.com/pulumi/pulumi/pkg/v3@v$cli_version" "github.com/pulumi/pulumi/sdk/v3@v$cli_version" 2>&1 | grep -Ev '^go: (downloading|added|upgraded|finding)' >&2 || true
  go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$cli_version" \
    -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  # The dynamic-provider launcher ships in the SDK module beside the Node.js SDK it starts.
  local sdk
  sdk=$(module_dir "github.com/pulumi/pulumi/sdk/v3@v$cli_version")
  install -m 0755 "$sdk/nodejs/dist/pulumi-resource-pulumi-nodejs" "$bin/"
}

build_nodejs_host() {
  mkdir -p "$work/host" && cd "$work/host"
  go mod init tcoder.local/pulumi-language-nodejs >/dev/null 2>&1
  go get "github.com/pulumi/pulumi/sdk/v3@v$host_version" 2>&1 | grep -Ev '^go: (downloading|added|upgraded|finding)' >&2 || true
  local sdk
  sdk=$(module_dir "github.com/pulumi/pulumi/sdk/v3@v$host_version")
  find "$sdk/nodejs/cmd/pulumi-language-nodejs" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} . \;
  chmod u+w ./*.go
  sed -i -e 's/^func (host \*nodeLanguageHost) Run(/func (host *nodeLanguageHost) runWithFlags(/' \
    -e 's/^func (host \*nodeLanguageHost) RunPlugin(/func (host *nodeLanguageHost) runPluginUnsupported(/' main.go
  grep -q 'runWithFlags(' main.go && grep -q 'runPluginUnsupported(' main.go || {
    echo "[toolchain] the v$host_version host no longer has the Run/RunPlugin methods the backport replaces" >&2
    exit 1
  }
  cp "$here/nodejs-host/protocol_backport.go" .
  go mod tidy >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$bin/pulumi-language-nodejs" .
}

# A provider's module at its SDK's version: none is built yet, so each gets a line in providers.txt
# (name, served|unavailable, module@version, reason) that infra:check quotes.
try_provider() {
  local name=$1 module=${provider_module[$1]} version
  version=$(lock_version "${provider_sdk[$1]}")
  local answer
  # The proxy's own answer: a fallback to `direct` would only add git's "could not resolve host".
  if answer=$(GOPROXY=$(go env GOPROXY | sed 's/,direct$//') go mod download -json "$module@v$version" 2>&1) && ! grep -q '"Error"' <<<"$answer"; then
    printf '%s\tserved\t%s@v%s\t%s\n' "$name" "$module" "$version" \
      "the proxy serves it, but tcoder has no recipe to build it yet" >>"$cache/providers.txt"
    log "provider $name: $module@v$version is served, but tcoder has no recipe for it yet"
  else
    local reason
    reason=$(grep -o '"Error": *"[^"]*' <<<"$answer" | sed -e 's/"Error": *"//' -e 's/\\n\\t/ /g' | head -n 1)
    [ -n "$reason" ] || reason=$(tail -n 1 <<<"$answer")
    reason=${reason#"$module@v$version: "}
    printf '%s\tunavailable\t%s@v%s\t%s\n' "$name" "$module" "$version" "$reason" >>"$cache/providers.txt"
    log "provider $name: cannot be built here: $module@v$version: $reason"
  fi
}

: >"$cache/providers.txt"
step "pulumi v$cli_version (CLI)" build_cli
step "pulumi-language-nodejs v$host_version (+ protocol backport)" build_nodejs_host
for provider in cloudflare upstash command; do try_provider "$provider"; done

"$bin/pulumi" version >/dev/null
date -u +%FT%TZ >"$cache/complete"
log "toolchain ready in $((SECONDS - started)) s: $bin"
echo "$bin"
