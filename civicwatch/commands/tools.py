"""`civicwatch check-config`, `schema`, `broker-users` and `loadgen`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from civicwatch import dynsec
from civicwatch.config import load_config
from civicwatch.exit_codes import (
    EXIT_CONFIG,
    EXIT_UNCONFIRMED,
    CliError,
)
from contracts.mqtt import BrokerSettings
from contracts.sites import SiteRegistry
from loadgen.run import LoadOutcome
from loadgen.run import run as run_loadgen


def check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    cameras = [c for s in config.sites for g in s.gateways for c in g.cameras]
    zones = sum(len(c.zones) for c in cameras)
    gateways = sum(len(s.gateways) for s in config.sites)
    print(
        f"{args.config}: ok ({len(config.sites)} sites, {gateways} gateways, "
        f"{len(cameras)} cameras, {zones} zones)"
    )
    return 0


def schema(args: argparse.Namespace) -> int:
    from contracts.schema import json_schemas

    schemas = json_schemas()
    if args.out is None:
        json.dump(schemas, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, schema in schemas.items():
        path = args.out / f"{stem}.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path)
    return 0


def broker_users(args: argparse.Namespace) -> int:
    try:
        users = dynsec.write_dynsec(args, os.environ)
    except (OSError, ValueError) as exc:  # a file or a password: the user's to fix
        raise CliError(str(exc), EXIT_CONFIG) from exc
    print(f"{args.out}: {len(users)} clients ({', '.join(users)})")
    return 0


def loadgen(args: argparse.Namespace) -> int:
    exit_codes = {
        LoadOutcome.COMPLETE: 0,
        LoadOutcome.UNCONFIRMED: EXIT_UNCONFIRMED,
        LoadOutcome.REFUSED: EXIT_CONFIG,
    }
    return exit_codes[run_loadgen(args, _registry_and_broker)]


def _registry_and_broker(path: Path) -> tuple[SiteRegistry, BrokerSettings]:
    config = load_config(path)  # a CivicwatchConfig is the site registry
    return config, config.broker
