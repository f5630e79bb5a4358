"""The offline tier: tools run over the repository's files."""
