"""pytest plugin for greenrt's lab (placeholder while the plugin is written)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: run the test under greenrt's lab hub")
