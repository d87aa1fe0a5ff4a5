"""Tests of the channel adapters, one package per channel."""
