"""Shared pieces of every streamscribe service."""
