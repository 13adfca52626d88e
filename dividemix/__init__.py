"""DivideMix and F-DivideMix: two networks, co-divided splits (loss GMM or FINE) and MixMatch."""
