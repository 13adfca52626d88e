"""Sample-selection trainer: FINE, F-Coteaching, Co-teaching, Co-teaching+ and standard training."""
