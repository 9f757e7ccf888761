"""streamscribe embed: transcripts to passage embeddings in a vector store."""
