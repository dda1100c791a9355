"""The run folder and what reads it: ownership and locks, trial tables, choices, baselines, report.

It reads trial records; it never trains and never drives a search.
"""
