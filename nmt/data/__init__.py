"""Corpus acquisition: fetchers that turn published datasets into ``<split>.<lang>`` text files."""
