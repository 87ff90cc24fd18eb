#!/usr/bin/env bash
# Mosquitto's dynamic-security config from the site registry (see civicwatch/dynsec.py):
#
#   deploy/mosquitto/make-dynsec.sh --config site.yaml --passwords mqtt-passwords --out dynamic-security.json
#
# The same as `civicwatch broker-users`, for a checkout without the command on PATH: run it with
# the Python that has civicwatch installed (PYTHON=.venv/bin/python). Users missing from the
# passwords file get a random password appended to it; keep that file secret.
set -euo pipefail
exec "${PYTHON:-python3}" -m civicwatch.cli broker-users "$@"
