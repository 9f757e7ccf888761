"""`make bench`: memory and speed of the pipeline against the raw libraries, on this machine."""
