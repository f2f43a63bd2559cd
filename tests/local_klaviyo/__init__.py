"""Tests of the local Klaviyo server, run with the real klaviyo-api SDK over HTTP."""
