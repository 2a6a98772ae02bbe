"""The open nvindex-slurm-compatible renderer for clusters without NVIDIA IndeX.

Launcher, render agents, compositor and the web viewer on :8080 arrive with the IndeX issue.
"""
