#!/usr/bin/env bash
# Install the pinned agent CLIs driven by tests/agents (Claude Code and Codex CLI) into a
# cache folder outside the repository, and print where their native binaries are:
#
#     CLAUDE_BIN=/root/.cache/tokenway-agents/claude-code-2.1.332/node_modules/...
#     CODEX_BIN=/root/.cache/tokenway-agents/codex-0.171.0/node_modules/...
#
# (stdout is just those two lines, so `eval "$(bash tools/install_agents.sh)"` works;
# npm output and progress go to stderr).
#
#     TOKENWAY_AGENTS_DIR   cache folder (default: $HOME/.cache/tokenway-agents)
#
# Idempotent: a package whose binary is present and reports the pinned version is not
# installed again. Each package is installed into a scratch folder next to its final
# place and renamed into place only after its binary answered --version, so an
# interrupted run never leaves a half install that looks valid. Needs node and npm
# (the npm registry must be reachable on the first run); writes nothing in the repo.
#
# npm quirks handled here:
# * Both packages ship their real program as a platform-specific optional dependency
#   (@anthropic-ai/claude-code-linux-x64, @openai/codex-linux-x64). `--include=optional`
#   keeps it even when the environment sets omit=optional.
# * Claude Code's postinstall only hard-links the native binary over bin/claude.exe;
#   without it node_modules/.bin/claude is a stub that prints "claude native binary not
#   installed". Scripts are skipped here (`--ignore-scripts`, so npm's allowScripts
#   policy cannot change the outcome) and the native binary is used directly.
# * Codex's node_modules/.bin/codex is a node launcher for
#   @openai/codex-linux-x64/vendor/<triple>/bin/codex; the native binary is used directly.
# * Claude Code declares node>=22: on Node 20 npm prints EBADENGINE. Node is not used at
#   run time, so that warning is harmless and hidden (--loglevel=error, engine-strict off).
set -euo pipefail

CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0

DIR="${TOKENWAY_AGENTS_DIR:-$HOME/.cache/tokenway-agents}"

log() { printf 'install_agents: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm not found on PATH (install Node.js 20+ with npm)"
command -v node >/dev/null 2>&1 || die "node not found on PATH"

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64)  NPM_ARCH=x64;   TRIPLE=x86_64-unknown-linux-musl ;;
    Linux-aarch64) NPM_ARCH=arm64; TRIPLE=aarch64-unknown-linux-musl ;;
    *) die "unsupported platform $(uname -s)-$(uname -m) (Linux x86_64 or aarch64 only)" ;;
esac
# Claude Code publishes separate builds for musl-based systems (Alpine).
CC_PLATFORM="linux-$NPM_ARCH"
if ls /lib/ld-musl-* >/dev/null 2>&1; then
    CC_PLATFORM="linux-$NPM_ARCH-musl"
fi

CC_HOME="$DIR/claude-code-$CLAUDE_CODE_VERSION"
CX_HOME="$DIR/codex-$CODEX_VERSION"
CLAUDE_BIN="$CC_HOME/node_modules/@anthropic-ai/claude-code-$CC_PLATFORM/claude"
CODEX_BIN="$CX_HOME/node_modules/@openai/codex-linux-$NPM_ARCH/vendor/$TRIPLE/bin/codex"

# Refuse a cache folder inside a git work tree: node_modules (~800 MB) must never land
# in the repository. Checked on the nearest existing folder, before creating anything.
existing="$DIR"
while [ ! -d "$existing" ]; do existing="$(dirname "$existing")"; done
if command -v git >/dev/null 2>&1 \
        && git -C "$existing" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    die "TOKENWAY_AGENTS_DIR=$DIR is inside a git work tree; choose a folder outside the repository"
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"

# One installer at a time per cache folder; scratch folders of an interrupted earlier
# run are dropped.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.lock"
    flock 9
fi
rm -rf "$DIR"/.installing.*

# version_ok BINARY VERSION: the binary runs and its --version output names VERSION.
version_ok() {
    local bin="$1" want="$2" out
    [ -x "$bin" ] || return 1
    out="$(HOME="$DIR/.version-check-home" CODEX_HOME="$DIR/.version-check-home/.codex" \
        timeout 30 "$bin" --version </dev/null 2>/dev/null)" || return 1
    case "$out" in
        *"$want"*) return 0 ;;
        *) return 1 ;;
    esac
}

# install_pkg SPEC FINAL_DIR BIN_RELATIVE_TO_FINAL VERSION
install_pkg() {
    local spec="$1" final="$2" bin_rel="$3" version="$4" tmp start
    if version_ok "$final/$bin_rel" "$version"; then
        log "$spec already installed in $final"
        return 0
    fi
    start=$(date +%s)
    tmp="$(mktemp -d "$DIR/.installing.XXXXXX")"
    chmod 755 "$tmp"
    log "installing $spec into $final (about 400 MB, once) ..."
    printf '{"name":"tokenway-agents-cache","private":true,"version":"0.0.0"}\n' >"$tmp/package.json"
    if ! (cd "$tmp" && npm install "$spec" \
            --ignore-scripts --include=optional --no-save --no-audit --no-fund \
            --no-package-lock --engine-strict=false --loglevel=error --no-update-notifier \
            >&2); then
        rm -rf "$tmp"
        die "npm install $spec failed"
    fi
    if ! version_ok "$tmp/$bin_rel" "$version"; then
        log "the installed binary $tmp/$bin_rel is missing or does not report $version"
        rm -rf "$tmp"
        die "install of $spec is unusable"
    fi
    rm -rf "$final"
    mv "$tmp" "$final"
    log "installed $spec in $(( $(date +%s) - start )) s ($(du -sh "$final" | cut -f1))"
}

install_pkg "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "$CC_HOME" \
    "${CLAUDE_BIN#"$CC_HOME/"}" "$CLAUDE_CODE_VERSION"
install_pkg "@openai/codex@$CODEX_VERSION" "$CX_HOME" \
    "${CODEX_BIN#"$CX_HOME/"}" "$CODEX_VERSION"
rm -rf "$DIR/.version-check-home"

printf 'CLAUDE_BIN=%s\n' "$CLAUDE_BIN"
printf 'CODEX_BIN=%s\n' "$CODEX_BIN"
