"""The HTTP surface: ``deps`` (what every route depends on), one router module per resource, and
``app`` (create_app), the only module that imports the routers, so none imports another back."""
