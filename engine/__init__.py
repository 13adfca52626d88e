"""The run machinery above the algorithm library (``fine``) and the data (``data_loader``): flags, run directories,
logging, checkpoints, the loop skeleton the trainers share, reports and ``engine.detect``."""
