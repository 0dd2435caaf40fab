"""Training mixtures: exports and a team's corpus planned into framework configs."""
