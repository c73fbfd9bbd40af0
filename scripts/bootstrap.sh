# Sourced by scripts/serve and .ci/run: make sure a fresh Debian machine has what signer
# needs (system packages, a .venv with signer and its test tools), then leave VENV pointing
# at it. Idempotent and quick when everything is already there. Quiet unless something
# fails: then the output of the step that failed is shown, and bootstrap returns non-zero.

_apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: need root (or sudo) to apt-get install $*" >&2
        return 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null && _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

_have() {  # a command on PATH, or in /usr/sbin (not on a plain user's PATH)
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]
}

# The Debian packages of commands that are missing: require_packages CMD=PACKAGE ...
require_packages() {
    local missing=() pair
    for pair in "$@"; do
        _have "${pair%%=*}" || missing+=("${pair#*=}")
    done
    if [ ${#missing[@]} -gt 0 ]; then _apt_install "${missing[@]}"; fi
}

bootstrap() {
    local extras="${1:-}" missing=()
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    case "$extras" in  # the test suite renders /docs in a headless browser
        *test*)
            command -v chromium >/dev/null || missing+=(chromium)
            command -v redis-server >/dev/null || missing+=(redis-server)  # real Redis in tests
            command -v wrk >/dev/null || missing+=(wrk)  # for bench/http_service.py
            _have nginx || missing+=(nginx)  # deploy/local's balancer, in tests/deploy
            _have systemd-analyze || missing+=(systemd) ;;  # verifies deploy/systemd's unit
    esac
    if [ ${#missing[@]} -gt 0 ]; then _apt_install "${missing[@]}"; fi

    VENV="${SIGNER_VENV:-$PWD/.venv}"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            _apt_install python3-venv
            python3 -m venv "$VENV"
        fi
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    fi
    local stamp="$VENV/.signer-installed$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        # pip's and the build backend's notices (setuptools' boxed "Editable installation"
        # warning, for one) are kept for a failure, when they may explain it.
        local log
        log="$(mktemp "${TMPDIR:-/tmp}/signer-bootstrap.XXXXXX")"
        echo "bootstrap: installing signer${extras} into $VENV ..." >&2
        if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras" \
                >"$log" 2>&1 \
            || ! "$VENV/bin/python" -c "import signer" >>"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            echo "bootstrap: installing signer into $VENV failed (its output above)" >&2
            return 1
        fi
        rm -f "$log"
        touch "$stamp"
    fi
}
