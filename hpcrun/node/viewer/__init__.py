"""The open nvindex-slurm-compatible renderer, for clusters without NVIDIA IndeX.

`launcher` takes nvindex-slurm's command line (`options`: what it parses to, shared with
the viewer and the agents) and gives each Slurm task its role: rank 0
serves the viewer (`server`, `frames`, `rpc`: HTTP, websocket, JSON-RPC, the page in
`static/`) and every rank runs a render `agent`. Agents find the viewer through a
`rendezvous` file and speak `protocol` to it; each ray-casts its bricks (`bricks`,
`kernel`) for the view (`camera`, `colormaps`), and the viewer composites the partial
images in visibility order (`compositor`).
"""
