"""Hard input cases: faults seen in warehouse-to-Klaviyo syncs, each with its required outcome."""
