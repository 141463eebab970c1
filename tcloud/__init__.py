"""Shared settings, types and pricing for the tcloud control plane."""
