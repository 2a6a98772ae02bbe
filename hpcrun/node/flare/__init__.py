"""The FLARE participant task: what a Slurm task runs to be a FLARE server or site.

It points the participant's startup kit at where things really are (the server's node and
ports, chosen when its job starts; storage inside the run directory instead of FLARE's
shared /tmp/nvflare), publishes the server's address for the sites, and runs FLARE's own
server or client program as a child it takes down whole when the task ends. Shipped as a
zipapp (`flare_task.pyz`) run by the node's Python, the one that has nvflare: it imports
nothing from hpcrun.
"""
