"""Test helpers: real servers started and stopped by fixtures, and an HTTP client that signs in."""
