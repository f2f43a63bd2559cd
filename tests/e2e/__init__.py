"""End-to-end tests that run the pipeline through dagster-webserver and dagster-daemon."""
