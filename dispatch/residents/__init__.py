"""Residents in the loop: reports from residents and other systems, their tiers, merging into
open cases, photo cleaning, limits and phone privacy. ``intake.submit_report`` is the one way a
report enters; docs/residents.md describes the rules."""
