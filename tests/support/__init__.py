"""What the tests share: helpers by job (``http``, ``waiting``, ``processes``, ``brokers``...)
imported by the tests, and the fixtures in ``plugin``, which ``tests/conftest.py`` loads as
a pytest plugin. Nothing here is imported from a conftest."""
