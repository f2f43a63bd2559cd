"""Dagster reverse-ETL of warehouse events and profiles into Klaviyo."""

__version__ = "0.1.0"
