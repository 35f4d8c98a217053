"""OpenAI's audio endpoints: ``/v1/audio/transcriptions``, ``/v1/audio/translations``,
``/v1/audio/speech``, and ``/v1/audio/voices`` (ours: the voices a request may name)."""
