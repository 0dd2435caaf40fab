"""What a dataset holds, as a corpus: coverage, balance, near-duplicates, contamination."""
