"""Shared mechanisms every IONFLUX service uses: settings, storage, vault, bus, errors, observability."""
