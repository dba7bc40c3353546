"""spreadcast: a staged pipeline forecasting cross-asset spread returns at several horizons."""
