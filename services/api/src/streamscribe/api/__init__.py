"""The pipeline's HTTP API: FastAPI routers on the ledger and the index (status, search,
transcripts, submissions, forgetting), API keys with scopes, OpenAI's transcription endpoint
through the pipeline, and signed callbacks when a run ends."""
