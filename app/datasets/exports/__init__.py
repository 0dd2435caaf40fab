"""Tokenized exports of dataset versions: pure format writers, and the service around them."""
