"""FINE: filtering noisy instances via the principal eigenvectors of penultimate-layer features."""
