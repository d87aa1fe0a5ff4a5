"""Tests of the Twilio channel adapter (channels/twilio)."""
