"""streamscribe transcribe: audio chunks in, timestamped transcripts out."""
