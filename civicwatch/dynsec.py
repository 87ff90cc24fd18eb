"""Mosquitto's dynamic-security config, generated from the site registry.

Mosquitto 2.0's ``acl_file`` checks publishes and deliveries but not subscriptions, so a
gateway could join ingest's ``$share`` group. The dynamic-security plugin checks
subscriptions too. Every client gets a role listing exactly its topics; everything else,
subscriptions included, is denied:

- ``ingest`` reads all civicwatch topics (also through any ``$share`` group) and writes acks,
  verification requests and department notifications;
- each gateway (username = gateway id) writes its own status and its own cameras' status,
  violations and verification answers, and reads its own acks, verification requests and
  rule document, and its own site's signed plates (nobody but ingest writes those);
- each department's systems (username = department id) read that department's cases.

    civicwatch broker-users --config site.yaml --passwords mqtt-passwords \\
        --out /mosquitto/data/dynamic-security.json [--password-env ingest=INGEST_MQTT_PASSWORD]

``--passwords`` holds ``username:password`` lines; a user missing there (and from
``--password-env``) gets a random password, appended to that file (mode 0600).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from civicwatch.config import load_config
from contracts.announce import announce_topic
from contracts.sites import SiteRegistry
from contracts.topics import (
    ROOT,
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    rules_topic,
    site_plates_topic,
    verify_result_topic,
    verify_topic,
    violation_topic,
)
from dispatch.config import Department

INGEST_USER = "ingest"
# What mosquitto_ctrl uses: PBKDF2-SHA512, 101 rounds, 12 bytes of salt.
_ITERATIONS = 101
_SALT_BYTES = 12


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def _sends(*topics: str) -> list[dict[str, Any]]:
    return [_acl("publishClientSend", topic) for topic in topics]


def _reads(*topics: str) -> list[dict[str, Any]]:
    """Subscribe to exactly these filters and receive what they deliver."""
    acls = []
    for topic in topics:
        acls += [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
    return acls


def roles(registry: SiteRegistry, department_topic: str) -> dict[str, list[dict[str, Any]]]:
    """Username -> the ACL entries of that user's own role."""
    table: dict[str, list[dict[str, Any]]] = {
        INGEST_USER: [
            _acl("subscribePattern", f"{ROOT}/#"),
            # Scale-out workers subscribe as $share/GROUP/civicwatch/v1/...; only ingest may.
            _acl("subscribePattern", f"$share/+/{ROOT}/#"),
            _acl("publishClientReceive", f"{ROOT}/#"),
            *_sends(
                ack_topic("+", "+"),
                verify_topic("+", "+", "+"),
                rules_topic("+", "+"),
                site_plates_topic("+"),
                department_topic.format(department="+"),
            ),
        ]
    }
    for department in Department:
        table[department.value] = _reads(department_topic.format(department=department.value))
    for site in registry.sites:
        for gateway in site.gateways:
            if gateway.id in table:
                raise ValueError(f"gateway id {gateway.id!r} is already an MQTT user's name")
            cameras = [camera.id for camera in gateway.cameras]
            table[gateway.id] = [
                *_sends(gateway_status_topic(site.id, gateway.id)),
                *_sends(*(camera_status_topic(site.id, gateway.id, c) for c in cameras)),
                *_sends(*(violation_topic(site.id, gateway.id, c) for c in cameras)),
                *_sends(*(verify_result_topic(site.id, gateway.id, c) for c in cameras)),
                *_sends(announce_topic(site.id, gateway.id)),  # the warning stage's
                *_reads(ack_topic(site.id, gateway.id)),
                *_reads(*(verify_topic(site.id, gateway.id, c) for c in cameras)),
                *_reads(rules_topic(site.id, gateway.id)),
                *_reads(site_plates_topic(site.id)),  # its site's, no other's
            ]
    return table


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The client fields mosquitto_ctrl writes for a password."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def dynsec_config(
    registry: SiteRegistry, passwords: Mapping[str, str], department_topic: str
) -> dict[str, Any]:
    """The plugin's JSON document: one client and one role per user, nothing allowed by default."""
    table = roles(registry, department_topic)
    missing = sorted(set(table) - set(passwords))
    if missing:
        raise ValueError(f"no password for {', '.join(missing)}")
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": user,
                "textName": f"civicwatch {user}",
                "roles": [{"rolename": f"civicwatch-{user}"}],
                **hash_password(passwords[user]),
            }
            for user in table
        ],
        "groups": [],
        "roles": [{"rolename": f"civicwatch-{user}", "acls": acls} for user, acls in table.items()],
    }


def read_passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    passwords = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{path}:{number}: expected username:password")
        passwords[user] = password
    return passwords


def add_missing_passwords(path: Path, users: Sequence[str]) -> dict[str, str]:
    """The passwords in ``path``, after appending a random one for each user it lacks."""
    passwords = read_passwords(path)
    new = {user: secrets.token_urlsafe(24) for user in users if user not in passwords}
    if new:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)  # it now holds secrets that were never shown to anyone
        with os.fdopen(descriptor, "a", encoding="utf-8") as file:
            file.writelines(f"{user}:{password}\n" for user, password in new.items())
    return passwords | new


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the civicwatch YAML config")
    parser.add_argument(
        "--passwords", type=Path, required=True, help="username:password lines (random if absent)"
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument(
        "--password-env",
        action="append",
        default=[],
        metavar="USER=VARIABLE",
        help="take USER's password from this environment variable (it wins over --passwords)",
    )


def passwords_from_env(pairs: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """``USER=VARIABLE`` pairs -> USER's password, read from the environment variable."""
    passwords = {}
    for pair in pairs:
        user, sep, variable = pair.partition("=")
        if not sep or not user or not variable:
            raise ValueError(f"--password-env {pair!r}: expected USER=VARIABLE")
        if not environ.get(variable):
            raise ValueError(f"--password-env {pair}: ${variable} is not set")
        passwords[user] = environ[variable]
    return passwords


def write_dynsec(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """Write the plugin's file as ``add_arguments`` describes; the users it holds.

    Raises ConfigError for the config, ValueError or OSError for the other inputs."""
    config = load_config(args.config)
    topic = config.server.notifications.mqtt.topic_template
    users = list(roles(config, topic))
    given = passwords_from_env(args.password_env, environ)
    unknown = sorted(set(given) - set(users))
    if unknown:
        raise ValueError(f"--password-env: {', '.join(unknown)} is not a user of this config")
    stored = [user for user in users if user not in given]
    passwords = add_missing_passwords(args.passwords, stored) | given
    document = dynsec_config(config, passwords, topic)
    # The plugin's file holds only hashes, but its roles map the deployment: owner-only too.
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
    return users
