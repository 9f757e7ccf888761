"""`make test-images` only (pytest does not recurse into this directory by itself): the images
`make images` built, run by a real container engine. The broker and the speech are the
integration suite's own fixtures."""

from tests.integration.conftest import kafka, speech  # noqa: F401  (fixtures, re-exported)
