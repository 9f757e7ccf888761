"""The `streamscribe` command line: run the pipeline, submit media, query the index."""
