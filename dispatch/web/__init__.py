"""The dispatch console and the worker view: server-rendered pages, the live feed, stats."""
