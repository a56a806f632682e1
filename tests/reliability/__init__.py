"""Reliability and security suite (issue 8): faults, load, bad input, hostile output."""
