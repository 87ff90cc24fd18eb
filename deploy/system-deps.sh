#!/usr/bin/env bash
# The Debian packages the test suite and the demo need beyond Python (`make deps` runs this).
#
#   deploy/system-deps.sh          install what is missing when run as root, else name it and fail
#   deploy/system-deps.sh --check  only name what is missing (exit 1), install nothing
#
# Exit 0: everything is there (or was just installed). Exit 1: something is missing; one line on
# stderr names the packages and the apt-get command that installs them.
set -euo pipefail
# Debian installs mosquitto in /usr/sbin, which a normal user's PATH may lack.
export PATH="$PATH:/usr/sbin"

check_only=false
case "${1:-}" in
  "") ;;
  --check) check_only=true ;;
  *) echo "system-deps: unknown argument '$1' (usage: system-deps.sh [--check])" >&2; exit 2 ;;
esac

# command -> the Debian package that provides it
declare -A packages=(
  [mosquitto]=mosquitto
  [mosquitto_passwd]=mosquitto
  [mosquitto_ctrl]=mosquitto
  [docker-compose]=docker-compose
  [openssl]=openssl
  [prlimit]=util-linux
  [chromium]=chromium
  [fc-list]=fontconfig
  [pdftoppm]=poppler-utils  # the analysis report's PDF test rasterises its pages
  [pdftotext]=poppler-utils
)
missing=()
for command in $(printf '%s\n' "${!packages[@]}" | sort); do
  command -v "$command" >/dev/null || missing+=("${packages[$command]}")
done
# Chinese glyphs, so the browser tests' screenshots of the (Simplified Chinese) pages are legible.
if ! command -v fc-list >/dev/null || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  missing+=(fonts-wqy-microhei)
fi
if ((${#missing[@]} == 0)); then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if $check_only || [[ "$(id -u)" != 0 ]]; then
  echo "system-deps: missing Debian packages: ${missing[*]} (as root: apt-get install --no-install-recommends ${missing[*]})" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# No recommends: docker-compose would pull in a docker engine we never run.
apt-get install -y -q --no-install-recommends "${missing[@]}"
