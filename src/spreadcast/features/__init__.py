"""Features: engineering, prescreening, scaling statistics, splits and rolling windows."""
