"""Text to speech: turning notice text into what a loudspeaker should say.

``tts.normalize`` rewrites plain text into speakable Mandarin (amounts, dates,
times, phone numbers, units) for engines that take no SSML; ``tts.privacy``
finds resident ID, bank card and mobile numbers that must never be read out.
Import the submodules directly: this package imports nothing on purpose, so
importing one part never drags in another (or an engine) by accident.
"""
