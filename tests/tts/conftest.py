"""Speech fixtures (defined in tests/support/speech.py, shared with tests/broadcast)."""

from tests.support.speech import clock, edge_like_mp3, edge_server, kit, speech_programs

__all__ = ["clock", "edge_like_mp3", "edge_server", "kit", "speech_programs"]
