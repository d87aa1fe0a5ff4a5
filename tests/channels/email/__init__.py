"""Tests of the email channel (channels/email)."""
