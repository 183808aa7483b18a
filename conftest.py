"""Project-wide pytest set-up: the plugin's own tests drive inner sessions with pytester."""

pytest_plugins = ["pytester"]
