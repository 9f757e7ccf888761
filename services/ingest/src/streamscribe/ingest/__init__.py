"""streamscribe ingest: media URL or local file in, short Ogg/Opus audio chunks out."""
