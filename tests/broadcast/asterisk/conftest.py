"""The hotline's real-Asterisk fixtures (session sandbox instance, per-test service with its AMI link), reused."""

from tests.hotline.asterisk.conftest import _clean_instance, asterisk_instance, hotline, media, settings

__all__ = ["_clean_instance", "asterisk_instance", "hotline", "media", "settings"]
